using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace KQuant.Quants.Float;

/// <summary>IEEE binary16 ("fp16", ggml_half) conversions computed exactly as libggml-base of llama.cpp v0.5.0 computes them:
/// ggml_compute_fp32_to_fp16 / ggml_compute_fp16_to_fp32 of ggml-impl.h, which are Maratyszcza's FP16 bit tricks rather than
/// F16C instructions. Float to half rounds to nearest even (subnormals included) and overflows to ±Inf; every NaN becomes
/// 0x7E00 with its sign. Half to float is exact and keeps NaN payloads (quieted). Scales in quantized blocks are stored as
/// fp16 bits (<see cref="ushort"/>), so every codec converts through here.</summary>
public readonly struct Fp16 : IHalfFloatFormat
{
    // 2^112 and 2^-110: the product first saturates |f| that overflow binary16 to Inf, then scales so that adding the bias
    // below leaves exactly 10 mantissa bits and the FPU's round-to-nearest-even does the rounding.
    private const float ScaleToInf = (float)(1L << 56) * (1L << 56);
    private const float ScaleToZero = 1f / (1L << 55) / (1L << 55);
    // 2^-112: rebiases a binary16 exponent shifted into binary32 position.
    private const float ExponentScale = 1f / (1L << 56) / (1L << 56);

    private const uint MinBias = 0x71000000;       // exponent floor: below it the result is a binary16 subnormal
    private const uint BiasOffset = 0x07800000;
    private const uint NaNThreshold = 0xFF000000;  // 2*bits above this: the input is NaN
    private const ushort CanonicalNaN = 0x7E00;
    private const uint ExponentOffset = 0xE0u << 23;
    private const uint SubnormalMagic = 126u << 23;
    private const float SubnormalBias = 0.5f;
    private const uint SubnormalCutoff = 1u << 27;

    /// <summary>fp32 to fp16 bits, as ggml_compute_fp32_to_fp16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FromFloat(float f)
    {
        var scaled = MathF.Abs(f) * ScaleToInf * ScaleToZero;
        var w = BitConverter.SingleToUInt32Bits(f);
        var shl1W = w + w;
        var sign = w & 0x80000000;
        var bias = Math.Max(shl1W & 0xFF000000, MinBias);
        var rounded = BitConverter.SingleToUInt32Bits(BitConverter.UInt32BitsToSingle((bias >> 1) + BiasOffset) + scaled);
        var nonSign = ((rounded >> 13) & 0x00007C00) + (rounded & 0x00000FFF);
        return (ushort)((sign >> 16) | (shl1W > NaNThreshold ? CanonicalNaN : nonSign));
    }

    /// <summary>fp16 bits to fp32, as ggml_compute_fp16_to_fp32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat(ushort h)
    {
        var w = (uint)h << 16;
        var sign = w & 0x80000000;
        var twoW = w + w;
        var normalized = BitConverter.UInt32BitsToSingle((twoW >> 4) + ExponentOffset) * ExponentScale;
        var denormalized = BitConverter.UInt32BitsToSingle((twoW >> 17) | SubnormalMagic) - SubnormalBias;
        var magnitude = twoW < SubnormalCutoff ? denormalized : normalized;
        return BitConverter.UInt32BitsToSingle(sign | BitConverter.SingleToUInt32Bits(magnitude));
    }

    /// <summary><see cref="FromFloat(float)"/> on 8 lanes; each result sits in the low 16 bits of its lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<uint> FromFloat(Vector256<float> f)
    {
        var scaled = Vector256.Abs(f) * Vector256.Create(ScaleToInf) * Vector256.Create(ScaleToZero);
        var w = f.AsUInt32();
        var shl1W = w + w;
        var sign = w & Vector256.Create(0x80000000u);
        var bias = Vector256.Max(shl1W & Vector256.Create(0xFF000000u), Vector256.Create(MinBias));
        var rounded = ((bias >> 1) + Vector256.Create(BiasOffset)).AsSingle() + scaled;
        var bits = rounded.AsUInt32();
        var nonSign = ((bits >> 13) & Vector256.Create(0x00007C00u)) + (bits & Vector256.Create(0x00000FFFu));
        var isNaN = Vector256.GreaterThan(shl1W, Vector256.Create(NaNThreshold));
        return (sign >> 16) | Vector256.ConditionalSelect(isNaN, Vector256.Create((uint)CanonicalNaN), nonSign);
    }

    /// <summary><see cref="ToFloat(ushort)"/> on 8 lanes holding fp16 bits in their low 16 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ToFloat(Vector256<uint> h)
    {
        var w = h << 16;
        var sign = w & Vector256.Create(0x80000000u);
        var twoW = w + w;
        var normalized = ((twoW >> 4) + Vector256.Create(ExponentOffset)).AsSingle() * Vector256.Create(ExponentScale);
        var denormalized = ((twoW >> 17) | Vector256.Create(SubnormalMagic)).AsSingle() - Vector256.Create(SubnormalBias);
        var isSubnormal = Vector256.LessThan(twoW, Vector256.Create(SubnormalCutoff));
        return (sign | Vector256.ConditionalSelect(isSubnormal, denormalized.AsUInt32(), normalized.AsUInt32())).AsSingle();
    }
}
