using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KQuant.Quants.K;

/// <summary>Vector256 building blocks of the K-quant dequantizers: widen eight stored bytes to ints, and write
/// y = scale·q - offset eight at a time. Each lane computes exactly ggml's scalar expression (a multiply and a
/// subtract, no FMA), so the floats are bitwise identical to dequantize_row_*.</summary>
internal static unsafe class KDequantize
{
    /// <summary>True where the Vector256 dequantizers run (they widen bytes with AVX2).</summary>
    public static bool UseVector256 => Avx2.IsSupported;

    /// <summary>Eight unsigned bytes at <paramref name="source"/> as ints.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> LoadBytes(byte* source) => Avx2.ConvertToVector256Int32(source);

    /// <summary>Eight signed bytes at <paramref name="source"/> as ints.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> LoadSignedBytes(sbyte* source) => Avx2.ConvertToVector256Int32(source);

    /// <summary>destination[0..8] = scale·q - offset.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreAffine(Vector256<int> q, Vector256<float> scale, Vector256<float> offset, float* destination) =>
        (scale * Vector256.ConvertToSingle(q) - offset).Store(destination);

    /// <summary>destination[0..8] = scale·q.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreScaled(Vector256<int> q, Vector256<float> scale, float* destination) =>
        (scale * Vector256.ConvertToSingle(q)).Store(destination);
}
