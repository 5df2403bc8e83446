using System.Runtime.Intrinsics;

namespace KQuant.Model.Kernels;

/// <summary>Float dot products for F32, F16 and BF16 weights (F16/BF16 widened to floats first, exactly; the activations
/// already rounded to the weight type's precision), in the order llama.cpp's AVX2 build adds them:
/// <list type="bullet">
/// <item>tinyBLAS (llamafile/sgemm.cpp), when the row length is a multiple of 8, the row count of 4 and the batch has
/// at least two tokens: one 8-lane FMA accumulator per output and hsum;</item>
/// <item>otherwise ggml_vec_dot_f32/_f16/_bf16 (vec.cpp): four accumulators over 32 values at a time, reduced pairwise,
/// then the leftover values one by one.</item>
/// </list></summary>
internal static unsafe class FloatDot
{
    /// <summary>Whether llama.cpp hands a product of this shape to tinyBLAS.</summary>
    public static bool UsesTinyBlas(int columns, int rows, int tokens) => columns % 8 == 0 && rows % 4 == 0 && tokens >= 2;

    /// <summary>tinyBLAS for two weight rows and four activation rows: y[t·yStride + r] = w_r·x_t.</summary>
    public static void Tile2x4(float* w, nint wStride, float* x, nint xStride, int n, float* y, nint yStride)
    {
        float* w0 = w, w1 = w + wStride;
        float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
        Vector256<float> a00 = default, a01 = default, a10 = default, a11 = default;
        Vector256<float> a20 = default, a21 = default, a30 = default, a31 = default;
        for (var i = 0; i < n; i += 8)
        {
            var v0 = Vector256.Load(w0 + i);
            var v1 = Vector256.Load(w1 + i);
            var u = Vector256.Load(x0 + i);
            a00 = Vector256.FusedMultiplyAdd(v0, u, a00);
            a01 = Vector256.FusedMultiplyAdd(v1, u, a01);
            u = Vector256.Load(x1 + i);
            a10 = Vector256.FusedMultiplyAdd(v0, u, a10);
            a11 = Vector256.FusedMultiplyAdd(v1, u, a11);
            u = Vector256.Load(x2 + i);
            a20 = Vector256.FusedMultiplyAdd(v0, u, a20);
            a21 = Vector256.FusedMultiplyAdd(v1, u, a21);
            u = Vector256.Load(x3 + i);
            a30 = Vector256.FusedMultiplyAdd(v0, u, a30);
            a31 = Vector256.FusedMultiplyAdd(v1, u, a31);
        }
        y[0] = Lanes.Sum8(a00);
        y[1] = Lanes.Sum8(a01);
        y[yStride] = Lanes.Sum8(a10);
        y[yStride + 1] = Lanes.Sum8(a11);
        y[2 * yStride] = Lanes.Sum8(a20);
        y[2 * yStride + 1] = Lanes.Sum8(a21);
        y[3 * yStride] = Lanes.Sum8(a30);
        y[3 * yStride + 1] = Lanes.Sum8(a31);
    }

    /// <summary>tinyBLAS for one output (the edges of the tiling).</summary>
    public static float TinyBlas(float* w, float* x, int n)
    {
        var acc = Vector256<float>.Zero;
        for (var i = 0; i < n; i += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(w + i), Vector256.Load(x + i), acc);
        return Lanes.Sum8(acc);
    }

    /// <summary>ggml_vec_dot_f32: a float sum; of the leftovers the C compiler vectorized the multiples of four (products
    /// rounded, then added in order) and fused the rest into FMAs.</summary>
    public static float VecDotF32(float* w, float* x, int n)
    {
        var main = n & ~31;
        var sum = FourAccumulators(w, x, main);
        var leftovers = n - main;
        var i = main;
        for (; i < main + (leftovers & ~3); i++) sum += w[i] * x[i];
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(w[i], x[i], sum);
        return sum;
    }

    /// <summary>ggml_vec_dot_f16: the reduced vectors, then the leftover products added in double.</summary>
    public static float VecDotF16(float* w, float* x, int n)
    {
        var main = n & ~31;
        double sum = FourAccumulators(w, x, main);
        for (var i = main; i < n; i++) sum += w[i] * x[i];
        return (float)sum;
    }

    /// <summary>ggml_vec_dot_bf16 (AVX2): four accumulators of separate products and sums, combined (c1 + c3) + (c2 + c4),
    /// hsum, then the leftover products added in double.</summary>
    public static float VecDotBF16(float* w, float* x, int n)
    {
        var main = n & ~31;
        Vector256<float> c1 = default, c2 = default, c3 = default, c4 = default;
        for (var i = 0; i < main; i += 32)
        {
            c1 = Vector256.Load(w + i) * Vector256.Load(x + i) + c1;
            c2 = Vector256.Load(w + i + 8) * Vector256.Load(x + i + 8) + c2;
            c3 = Vector256.Load(w + i + 16) * Vector256.Load(x + i + 16) + c3;
            c4 = Vector256.Load(w + i + 24) * Vector256.Load(x + i + 24) + c4;
        }
        double sum = Lanes.Sum8((c1 + c3) + (c2 + c4));
        for (var i = main; i < n; i++) sum += w[i] * x[i];
        return (float)sum;
    }

    // GGML_F32_STEP = 32: sum_j += w[i+8j]·x[i+8j], then GGML_F32x8_REDUCE: (s0 + s2) + (s1 + s3), lower + upper, two hadds.
    private static float FourAccumulators(float* w, float* x, int n)
    {
        if (n == 0) return 0;
        Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
        for (var i = 0; i < n; i += 32)
        {
            s0 = Vector256.FusedMultiplyAdd(Vector256.Load(w + i), Vector256.Load(x + i), s0);
            s1 = Vector256.FusedMultiplyAdd(Vector256.Load(w + i + 8), Vector256.Load(x + i + 8), s1);
            s2 = Vector256.FusedMultiplyAdd(Vector256.Load(w + i + 16), Vector256.Load(x + i + 16), s2);
            s3 = Vector256.FusedMultiplyAdd(Vector256.Load(w + i + 24), Vector256.Load(x + i + 24), s3);
        }
        return Lanes.SumByHadd((s0 + s2) + (s1 + s3));
    }
}
