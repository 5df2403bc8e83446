using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace KQuant.Model.Kernels;

/// <summary>Float dot products for F32, F16 and BF16 weights (F16/BF16 widened to floats first, exactly; the activations
/// already rounded to the weight type's precision), in the order llama.cpp's AVX2 build adds them:
/// <list type="bullet">
/// <item>tinyBLAS (llamafile/sgemm.cpp), when the row length is a multiple of 8, the row count of 4 and the batch has
/// at least two tokens: one 8-lane FMA accumulator per output and hsum;</item>
/// <item>otherwise ggml_vec_dot_f32/_f16/_bf16 (vec.cpp): four accumulators over 32 values at a time, reduced pairwise,
/// then the leftover values one by one.</item>
/// </list>
/// The kernels are compiled fully optimized at once (AggressiveOptimization): unoptimized tier-0 code, with every
/// Vector256 call left out of line, took a tenth of a short perplexity run.</summary>
internal static unsafe class FloatDot
{
    /// <summary>Whether llama.cpp hands a product of this shape to tinyBLAS.</summary>
    public static bool UsesTinyBlas(int columns, int rows, int tokens) => columns % 8 == 0 && rows % 4 == 0 && tokens >= 2;

    /// <summary>Columns of one k-block of <see cref="TinyBlasPanel"/>: three activation rows of it (12 KB) stay in L1
    /// while every row of the weight panel passes over them.</summary>
    private const int BlockColumns = 1024;

    /// <summary>tinyBLAS for a panel of weight rows (a multiple of four, <paramref name="n"/> floats apart) and every
    /// token: y[t·yStride + r] = w_r·x_t. Tiles of four rows by three tokens; the k range is cut into blocks, each
    /// output's accumulator kept in <paramref name="accumulators"/> between them, so every output still sees one
    /// 8-lane FMA chain over k in order and then <see cref="Lanes.Sum8"/> (llama.cpp's order). The accumulator buffer
    /// holds <see cref="AccumulatorVectors"/>(rows) vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void TinyBlasPanel(float* w, int rows, float* x, int tokens, int n, float* y, nint yStride,
        Vector256<float>* accumulators)
    {
        var kBlocks = (n + BlockColumns - 1) / BlockColumns;
        var kc = ((n + kBlocks - 1) / kBlocks + 7) & ~7;
        for (var t = 0; t < tokens; t += 3)
        {
            var nt = Math.Min(3, tokens - t);
            for (var k0 = 0; k0 < n; k0 += kc)
            {
                var length = Math.Min(kc, n - k0);
                var first = k0 == 0;
                var last = k0 + length == n;
                for (var r = 0; r < rows; r += 4)
                {
                    var wr = w + (nint)r * n + k0;
                    var xt = x + (nint)t * n + k0;
                    var acc = accumulators + 3 * r;
                    var yt = y + t * yStride + r;
                    if (nt == 3)
                    {
                        Tile4x3(wr, n, xt, n, length, acc, first, last, yt, yStride);
                    }
                    else
                    {
                        for (var j = 0; j < nt; j++) Tile4x1(wr, n, xt + (nint)j * n, length, acc + 4 * j, first, last, yt + j * yStride);
                    }
                }
            }
        }
    }

    /// <summary>Vectors of accumulator storage <see cref="TinyBlasPanel"/> needs for a panel of this many rows.</summary>
    public static int AccumulatorVectors(int rows) => 3 * rows;

    /// <summary>Four weight rows by three tokens over one k-block: twelve accumulators, the most AVX2's sixteen
    /// registers hold beside three activation vectors and a weight vector (tinyBLAS's own 4×3 tile on AVX2).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x3(float* w, nint wStride, float* x, nint xStride, int n, Vector256<float>* acc, bool first,
        bool last, float* y, nint yStride)
    {
        float* w0 = w, w1 = w + wStride, w2 = w + 2 * wStride, w3 = w + 3 * wStride;
        float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride;
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector256<float> a20 = default, a21 = default, a22 = default, a23 = default;
        if (!first)
        {
            a00 = acc[0]; a01 = acc[1]; a02 = acc[2]; a03 = acc[3];
            a10 = acc[4]; a11 = acc[5]; a12 = acc[6]; a13 = acc[7];
            a20 = acc[8]; a21 = acc[9]; a22 = acc[10]; a23 = acc[11];
        }
        for (var i = 0; i < n; i += 8)
        {
            var u0 = Vector256.Load(x0 + i);
            var u1 = Vector256.Load(x1 + i);
            var u2 = Vector256.Load(x2 + i);
            var v = Vector256.Load(w0 + i);
            a00 = Vector256.FusedMultiplyAdd(v, u0, a00);
            a10 = Vector256.FusedMultiplyAdd(v, u1, a10);
            a20 = Vector256.FusedMultiplyAdd(v, u2, a20);
            v = Vector256.Load(w1 + i);
            a01 = Vector256.FusedMultiplyAdd(v, u0, a01);
            a11 = Vector256.FusedMultiplyAdd(v, u1, a11);
            a21 = Vector256.FusedMultiplyAdd(v, u2, a21);
            v = Vector256.Load(w2 + i);
            a02 = Vector256.FusedMultiplyAdd(v, u0, a02);
            a12 = Vector256.FusedMultiplyAdd(v, u1, a12);
            a22 = Vector256.FusedMultiplyAdd(v, u2, a22);
            v = Vector256.Load(w3 + i);
            a03 = Vector256.FusedMultiplyAdd(v, u0, a03);
            a13 = Vector256.FusedMultiplyAdd(v, u1, a13);
            a23 = Vector256.FusedMultiplyAdd(v, u2, a23);
        }
        if (last)
        {
            y[0] = Lanes.Sum8(a00); y[1] = Lanes.Sum8(a01); y[2] = Lanes.Sum8(a02); y[3] = Lanes.Sum8(a03);
            y += yStride;
            y[0] = Lanes.Sum8(a10); y[1] = Lanes.Sum8(a11); y[2] = Lanes.Sum8(a12); y[3] = Lanes.Sum8(a13);
            y += yStride;
            y[0] = Lanes.Sum8(a20); y[1] = Lanes.Sum8(a21); y[2] = Lanes.Sum8(a22); y[3] = Lanes.Sum8(a23);
        }
        else
        {
            acc[0] = a00; acc[1] = a01; acc[2] = a02; acc[3] = a03;
            acc[4] = a10; acc[5] = a11; acc[6] = a12; acc[7] = a13;
            acc[8] = a20; acc[9] = a21; acc[10] = a22; acc[11] = a23;
        }
    }

    /// <summary>Four weight rows by one token (the last one or two tokens of a batch).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x1(float* w, nint wStride, float* x, int n, Vector256<float>* acc, bool first, bool last, float* y)
    {
        float* w0 = w, w1 = w + wStride, w2 = w + 2 * wStride, w3 = w + 3 * wStride;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        if (!first)
        {
            a0 = acc[0]; a1 = acc[1]; a2 = acc[2]; a3 = acc[3];
        }
        for (var i = 0; i < n; i += 8)
        {
            var u = Vector256.Load(x + i);
            a0 = Vector256.FusedMultiplyAdd(Vector256.Load(w0 + i), u, a0);
            a1 = Vector256.FusedMultiplyAdd(Vector256.Load(w1 + i), u, a1);
            a2 = Vector256.FusedMultiplyAdd(Vector256.Load(w2 + i), u, a2);
            a3 = Vector256.FusedMultiplyAdd(Vector256.Load(w3 + i), u, a3);
        }
        if (last)
        {
            y[0] = Lanes.Sum8(a0); y[1] = Lanes.Sum8(a1); y[2] = Lanes.Sum8(a2); y[3] = Lanes.Sum8(a3);
        }
        else
        {
            acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
        }
    }

    /// <summary>tinyBLAS for one output (the edges of the tiling).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float TinyBlas(float* w, float* x, int n)
    {
        var acc = Vector256<float>.Zero;
        for (var i = 0; i < n; i += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(w + i), Vector256.Load(x + i), acc);
        return Lanes.Sum8(acc);
    }

    /// <summary>ggml_vec_dot_f32: a float sum; of the leftovers the C compiler vectorized the multiples of four (products
    /// rounded, then added in order) and fused the rest into FMAs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float VecDotF16(float* w, float* x, int n)
    {
        var main = n & ~31;
        double sum = FourAccumulators(w, x, main);
        for (var i = main; i < n; i++) sum += w[i] * x[i];
        return (float)sum;
    }

    /// <summary>ggml_vec_dot_bf16 (AVX2): four accumulators of separate products and sums, combined (c1 + c3) + (c2 + c4),
    /// hsum, then the leftover products added in double.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
