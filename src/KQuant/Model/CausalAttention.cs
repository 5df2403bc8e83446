using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using KQuant.Model.Kernels;

namespace KQuant.Model;

/// <summary>Multi-head causal self-attention over the KV cache, computed as llama.cpp's CPU flash attention computes it
/// for a batch of tokens (ggml_compute_forward_flash_attn_ext_tiled of ops.cpp, v0.5.0), to the last bit: keys in tiles
/// of 64; per tile the scores q·k (one FMA per dimension, in order), the 1/sqrt(d) scale, an online softmax (the running
/// maximum, the earlier sum and output rescaled by expf(M_old − M_new) when it grows, ggml_v_expf of the tile, its sum
/// added in double), and the weighted values added position by position; finally the output divided by the sum.
/// Query head h reads KV head h / group size (GQA). Work items are (head, four tokens): the four queries share every
/// key vector they load.</summary>
internal static unsafe class CausalAttention
{
    /// <summary>ggml's GGML_FA_TILE_KV.</summary>
    public const int KeyTile = 64;

    private const int TokensPerItem = 4;

    /// <param name="queries">T rows of <paramref name="queryStride"/> floats, head h at h·d (already rotated).</param>
    /// <param name="firstPosition">Position of the first of the T tokens; token t attends to positions 0..firstPosition+t.</param>
    /// <param name="output">T rows of heads·d floats.</param>
    public static void Compute(LlamaConfig config, KvCache cache, int layer, float* queries, nint queryStride, int tokens,
        int firstPosition, float* output, nint outputStride, Parallelism parallel)
    {
        var heads = config.HeadCount;
        var d = config.HeadDimension;
        var group = config.GroupSize;
        var scale = config.AttentionScale;
        var tiles = (tokens + TokensPerItem - 1) / TokensPerItem;
        parallel.For(heads * tiles, item =>
        {
            var h = item / tiles;
            var t0 = item % tiles * TokensPerItem;
            var count = Math.Min(TokensPerItem, tokens - t0);
            var keys = cache.Keys(layer, h / group);
            var values = cache.Values(layer, h / group);
            var scratch = (float*)Scratch.Get((nuint)(TokensPerItem * KeyTile * sizeof(float)));
            Span<float> max = stackalloc float[TokensPerItem];
            Span<float> sum = stackalloc float[TokensPerItem];
            max.Fill(float.NegativeInfinity);
            sum.Clear();
            for (var k = 0; k < count; k++) new Span<float>(output + (t0 + k) * outputStride + h * d, d).Clear();

            var lastPosition = firstPosition + t0 + count - 1;
            for (var start = 0; start <= lastPosition; start += KeyTile)
            {
                Scores(queries + t0 * queryStride + h * d, queryStride, count, keys + start, cache.Stride, d, scratch);
                for (var k = 0; k < count; k++)
                {
                    var visible = Math.Min(KeyTile, firstPosition + t0 + k + 1 - start);
                    if (visible <= 0) continue; // a tile wholly in this token's future: masked, as llama.cpp skips it
                    var row = new Span<float>(scratch + k * KeyTile, KeyTile);
                    TensorPrimitives.Multiply(row[..visible], scale, row[..visible]);
                    row[visible..].Fill(float.NegativeInfinity);
                    var o = output + (t0 + k) * outputStride + h * d;
                    var tileMax = TensorPrimitives.Max(row[..visible]);
                    if (tileMax > max[k])
                    {
                        var rescale = MathF.Exp(max[k] - tileMax);
                        TensorPrimitives.Multiply(new ReadOnlySpan<float>(o, d), rescale, new Span<float>(o, d));
                        sum[k] *= rescale;
                        max[k] = tileMax;
                    }
                    sum[k] = (float)(sum[k] + GgmlExp.ExpSum(row, max[k]));
                    WeightedValues(row[..visible], values + (nint)start * d, d, o);
                }
            }
            for (var k = 0; k < count; k++)
            {
                var o = new Span<float>(output + (t0 + k) * outputStride + h * d, d);
                TensorPrimitives.Multiply(o, sum[k] == 0 ? 0 : 1f / sum[k], o);
            }
        });
    }

    /// <summary>scores[k·64 + j] = Σ_i q_k[i]·key_j[i], one FMA per i in order (simd_gemm's order), for the 64
    /// positions of a tile; <paramref name="keys"/> points at the tile's first position of the transposed keys. Sixteen
    /// positions at a time: eight independent FMA chains hide the FMA latency.</summary>
    private static void Scores(float* q, nint queryStride, int count, float* keys, int stride, int d, float* scores)
    {
        // Spare lanes (an item of fewer than four tokens) recompute the first query; their scores are unused.
        var q0 = q;
        var q1 = count > 1 ? q + queryStride : q;
        var q2 = count > 2 ? q + 2 * queryStride : q;
        var q3 = count > 3 ? q + 3 * queryStride : q;
        for (var j = 0; j < KeyTile; j += 16)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
            for (var i = 0; i < d; i++)
            {
                var key = Vector256.Load(keys + (nint)i * stride + j);
                var next = Vector256.Load(keys + (nint)i * stride + j + 8);
                var x0 = Vector256.Create(q0[i]);
                var x1 = Vector256.Create(q1[i]);
                var x2 = Vector256.Create(q2[i]);
                var x3 = Vector256.Create(q3[i]);
                a0 = Vector256.FusedMultiplyAdd(x0, key, a0);
                a1 = Vector256.FusedMultiplyAdd(x1, key, a1);
                a2 = Vector256.FusedMultiplyAdd(x2, key, a2);
                a3 = Vector256.FusedMultiplyAdd(x3, key, a3);
                b0 = Vector256.FusedMultiplyAdd(x0, next, b0);
                b1 = Vector256.FusedMultiplyAdd(x1, next, b1);
                b2 = Vector256.FusedMultiplyAdd(x2, next, b2);
                b3 = Vector256.FusedMultiplyAdd(x3, next, b3);
            }
            a0.Store(scores + j);
            a1.Store(scores + KeyTile + j);
            a2.Store(scores + 2 * KeyTile + j);
            a3.Store(scores + 3 * KeyTile + j);
            b0.Store(scores + j + 8);
            b1.Store(scores + KeyTile + j + 8);
            b2.Store(scores + 2 * KeyTile + j + 8);
            b3.Store(scores + 3 * KeyTile + j + 8);
        }
    }

    /// <summary>output += Σ_j p_j·value_j, one FMA per position in order (simd_gemm's order); 64 dimensions at a time
    /// where the head has them (eight independent FMA chains), then 32.</summary>
    private static void WeightedValues(ReadOnlySpan<float> p, float* values, int d, float* output)
    {
        var c = 0;
        for (; c + 64 <= d; c += 64)
        {
            var a0 = Vector256.Load(output + c);
            var a1 = Vector256.Load(output + c + 8);
            var a2 = Vector256.Load(output + c + 16);
            var a3 = Vector256.Load(output + c + 24);
            var a4 = Vector256.Load(output + c + 32);
            var a5 = Vector256.Load(output + c + 40);
            var a6 = Vector256.Load(output + c + 48);
            var a7 = Vector256.Load(output + c + 56);
            var v = values + c;
            for (var j = 0; j < p.Length; j++, v += d)
            {
                var w = Vector256.Create(p[j]);
                a0 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v), a0);
                a1 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 8), a1);
                a2 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 16), a2);
                a3 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 24), a3);
                a4 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 32), a4);
                a5 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 40), a5);
                a6 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 48), a6);
                a7 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 56), a7);
            }
            a0.Store(output + c);
            a1.Store(output + c + 8);
            a2.Store(output + c + 16);
            a3.Store(output + c + 24);
            a4.Store(output + c + 32);
            a5.Store(output + c + 40);
            a6.Store(output + c + 48);
            a7.Store(output + c + 56);
        }
        for (; c + 32 <= d; c += 32)
        {
            var a0 = Vector256.Load(output + c);
            var a1 = Vector256.Load(output + c + 8);
            var a2 = Vector256.Load(output + c + 16);
            var a3 = Vector256.Load(output + c + 24);
            var v = values + c;
            for (var j = 0; j < p.Length; j++, v += d)
            {
                var w = Vector256.Create(p[j]);
                a0 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v), a0);
                a1 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 8), a1);
                a2 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 16), a2);
                a3 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 24), a3);
            }
            a0.Store(output + c);
            a1.Store(output + c + 8);
            a2.Store(output + c + 16);
            a3.Store(output + c + 24);
        }
        for (; c < d; c++)
        {
            var acc = output[c];
            for (var j = 0; j < p.Length; j++) acc = MathF.FusedMultiplyAdd(p[j], values[(nint)j * d + c], acc);
            output[c] = acc;
        }
    }
}
