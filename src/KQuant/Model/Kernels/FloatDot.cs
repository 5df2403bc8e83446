using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KQuant.Model.Kernels;

/// <summary>Float dot products for F32, F16 and BF16 weights (F16/BF16 rows are widened to floats first, exactly).
/// The tile multiplies two weight rows with four activation rows, so each loaded vector feeds several FMAs.</summary>
internal static unsafe class FloatDot
{
    public static bool Vectorized => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>y[t·yStride + r] = w_r · x_t for r &lt; 2, t &lt; 4; rows are <paramref name="n"/> floats long.</summary>
    public static void Tile2x4(float* w, nint wStride, float* x, nint xStride, int n, float* y, nint yStride)
    {
        if (!Vectorized)
        {
            for (var t = 0; t < 4; t++)
            {
                for (var r = 0; r < 2; r++) y[t * yStride + r] = DotScalar(w + r * wStride, x + t * xStride, n);
            }
            return;
        }
        float* w0 = w, w1 = w + wStride;
        float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
        Vector256<float> a00 = default, a01 = default, a10 = default, a11 = default;
        Vector256<float> a20 = default, a21 = default, a30 = default, a31 = default;
        var i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var v0 = Avx.LoadVector256(w0 + i);
            var v1 = Avx.LoadVector256(w1 + i);
            var u = Avx.LoadVector256(x0 + i);
            a00 = Fma.MultiplyAdd(v0, u, a00);
            a01 = Fma.MultiplyAdd(v1, u, a01);
            u = Avx.LoadVector256(x1 + i);
            a10 = Fma.MultiplyAdd(v0, u, a10);
            a11 = Fma.MultiplyAdd(v1, u, a11);
            u = Avx.LoadVector256(x2 + i);
            a20 = Fma.MultiplyAdd(v0, u, a20);
            a21 = Fma.MultiplyAdd(v1, u, a21);
            u = Avx.LoadVector256(x3 + i);
            a30 = Fma.MultiplyAdd(v0, u, a30);
            a31 = Fma.MultiplyAdd(v1, u, a31);
        }
        y[0] = Vector256.Sum(a00) + TailScalar(w0, x0, i, n);
        y[1] = Vector256.Sum(a01) + TailScalar(w1, x0, i, n);
        y[yStride] = Vector256.Sum(a10) + TailScalar(w0, x1, i, n);
        y[yStride + 1] = Vector256.Sum(a11) + TailScalar(w1, x1, i, n);
        y[2 * yStride] = Vector256.Sum(a20) + TailScalar(w0, x2, i, n);
        y[2 * yStride + 1] = Vector256.Sum(a21) + TailScalar(w1, x2, i, n);
        y[3 * yStride] = Vector256.Sum(a30) + TailScalar(w0, x3, i, n);
        y[3 * yStride + 1] = Vector256.Sum(a31) + TailScalar(w1, x3, i, n);
    }

    /// <summary>One dot product (the edges of a tiling).</summary>
    public static float Dot(float* w, float* x, int n)
    {
        if (!Vectorized) return DotScalar(w, x, n);
        Vector256<float> a0 = default, a1 = default;
        var i = 0;
        for (; i + 16 <= n; i += 16)
        {
            a0 = Fma.MultiplyAdd(Avx.LoadVector256(w + i), Avx.LoadVector256(x + i), a0);
            a1 = Fma.MultiplyAdd(Avx.LoadVector256(w + i + 8), Avx.LoadVector256(x + i + 8), a1);
        }
        for (; i + 8 <= n; i += 8) a0 = Fma.MultiplyAdd(Avx.LoadVector256(w + i), Avx.LoadVector256(x + i), a0);
        return Vector256.Sum(a0 + a1) + TailScalar(w, x, i, n);
    }

    internal static float DotScalar(float* w, float* x, int n) => TailScalar(w, x, 0, n);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float TailScalar(float* w, float* x, int from, int n)
    {
        var sum = 0f;
        for (var i = from; i < n; i++) sum += w[i] * x[i];
        return sum;
    }
}
