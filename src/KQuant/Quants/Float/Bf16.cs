using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace KQuant.Quants.Float;

/// <summary>bfloat16 conversions as llama.cpp v0.5.0 computes them (ggml_compute_fp32_to_bf16 / ggml_compute_bf16_to_fp32 of
/// ggml-impl.h; GGUF files are written through ggml_fp32_to_bf16_row_ref). Float to bf16 rounds to nearest even on the top
/// 16 bits, subnormals are kept (not flushed) and a NaN keeps its top bits with the quiet bit forced. bf16 to float is a shift.</summary>
public readonly struct Bf16 : IHalfFloatFormat
{
    private const uint AbsMask = 0x7FFFFFFF;
    private const uint PositiveInfinity = 0x7F800000;
    private const uint QuietBit = 0x40; // bit 6 of the bf16 = bit 22 of the float

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FromFloat(float f)
    {
        var bits = BitConverter.SingleToUInt32Bits(f);
        if ((bits & AbsMask) > PositiveInfinity) return (ushort)((bits >> 16) | QuietBit);
        return (ushort)((bits + (0x7FFF + ((bits >> 16) & 1))) >> 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat(ushort h) => BitConverter.UInt32BitsToSingle((uint)h << 16);

    /// <summary><see cref="FromFloat(float)"/> on 8 lanes; each result sits in the low 16 bits of its lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<uint> FromFloat(Vector256<float> f)
    {
        var bits = f.AsUInt32();
        var rounded = (bits + (Vector256.Create(0x7FFFu) + ((bits >> 16) & Vector256<uint>.One))) >> 16;
        var quietNaN = (bits >> 16) | Vector256.Create(QuietBit);
        var isNaN = Vector256.GreaterThan(bits & Vector256.Create(AbsMask), Vector256.Create(PositiveInfinity));
        return Vector256.ConditionalSelect(isNaN, quietNaN, rounded);
    }

    /// <summary><see cref="ToFloat(ushort)"/> on 8 lanes holding bf16 bits in their low 16 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ToFloat(Vector256<uint> h) => (h << 16).AsSingle();
}
