using System.Runtime.Intrinsics.X86;
using KQuant.Gguf;
using KQuant.Quants;
using KQuant.Quants.IQ;
using KQuant.Quants.Legacy;

namespace KQuant.Tests.Quants;

/// <summary>Builds a codec on a chosen code path, so tests check the scalar and the AVX2 path against ggml separately.
/// Float codecs have one path (vector bulk, scalar tail) and come from the registry.</summary>
public static class CodecVariants
{
    /// <summary>The paths this machine can run: always scalar, AVX2 when present.</summary>
    public static IEnumerable<bool> Paths => Avx2.IsSupported ? [false, true] : [false];

    public static IRowCodec Create(GgmlType type, bool vectorized) => type switch
    {
        GgmlType.Q4_0 => new Q40Codec(vectorized),
        GgmlType.Q4_1 => new Q41Codec(vectorized),
        GgmlType.Q5_0 => new Q50Codec(vectorized),
        GgmlType.Q5_1 => new Q51Codec(vectorized),
        GgmlType.Q8_0 => new Q80Codec(vectorized),
        GgmlType.IQ4_NL => new IQ4NLCodec(vectorized),
        GgmlType.IQ4_XS => new IQ4XSCodec(vectorized),
        _ => RowCodecs.Get(type),
    };
}
