using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KQuant.Model.Kernels;

/// <summary>The horizontal reductions of ggml-cpu's x86 kernels, in their order of additions: which pairs are added
/// first decides the last bit of every dot product, so the forward pass reduces exactly as ggml does.</summary>
internal static class Lanes
{
    /// <summary>hsum_float_8 of arch/x86/quants.c (and tinyBLAS's hsum): (upper + lower), then
    /// ((l0 + l2) + (l1 + l3)).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum8(Vector256<float> x) => Sum4(x.GetUpper() + x.GetLower());

    /// <summary>The 4-lane tail of <see cref="Sum8"/>: add movehl, then add_ss with movehdup.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum4(Vector128<float> x)
    {
        var pair = x + Vector128.Create(x[2], x[3], x[2], x[3]);
        return pair.ToScalar() + pair[1];
    }

    /// <summary>GGML_F32x8_REDUCE's last step on one vector: (lower + upper), then two hadds:
    /// ((l0 + l1) + (l2 + l3)).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SumByHadd(Vector256<float> x)
    {
        var t = x.GetLower() + x.GetUpper();
        return (t[0] + t[1]) + (t[2] + t[3]);
    }

    /// <summary>_mm256_madd_epi16(ones, maddubs(a, b)) in plain code: lane i sums the four byte products 4i..4i+3.</summary>
    public static Vector256<int> ProductQuads(ReadOnlySpan<byte> unsignedBytes, ReadOnlySpan<sbyte> signedBytes)
    {
        Span<int> lanes = stackalloc int[8];
        for (var i = 0; i < 32; i++) lanes[i / 4] += unsignedBytes[i] * signedBytes[i];
        return Vector256.Create<int>(lanes);
    }

    public static bool Avx2Fma => Avx2.IsSupported && Fma.IsSupported;
}
