using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using KQuant.Model.Kernels;

namespace KQuant.Model;

/// <summary>Multi-head causal self-attention over the KV cache, as llama.cpp computes it without flash attention
/// (build_attn_mha: KQ = K·Q, soft_max_ext with the 1/sqrt(d) scale and the causal mask, KQV = V·softmax), in F32.
/// Query head h reads KV head h / group size (GQA). Work is split into (head, four tokens) items: the four queries
/// share every key vector they load.</summary>
internal static unsafe class CausalAttention
{
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
            var stride = cache.Stride;
            var lastPosition = firstPosition + t0 + count - 1;
            var scores = (float*)Scratch.Get((nuint)(TokensPerItem * stride * sizeof(float)));
            Scores(queries + t0 * queryStride + h * d, queryStride, count, keys, stride, d, lastPosition + 1, scores);
            for (var k = 0; k < count; k++)
            {
                var length = firstPosition + t0 + k + 1;
                var row = new Span<float>(scores + k * stride, stride);
                Softmax(row, length, scale);
                WeightedValues(row[..length], values, d, output + (t0 + k) * outputStride + h * d);
            }
        });
    }

    /// <summary>scores[k·stride + j] = q_k · key_j for the <paramref name="count"/> queries and positions j &lt; length.</summary>
    private static void Scores(float* q, nint queryStride, int count, float* keys, int stride, int d, int length, float* scores)
    {
        if (Vector256.IsHardwareAccelerated && count == TokensPerItem)
        {
            float* q0 = q, q1 = q + queryStride, q2 = q + 2 * queryStride, q3 = q + 3 * queryStride;
            for (var j = 0; j < length; j += 8)
            {
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (var i = 0; i < d; i++)
                {
                    var key = Vector256.Load(keys + (nint)i * stride + j);
                    a0 = Vector256.FusedMultiplyAdd(Vector256.Create(q0[i]), key, a0);
                    a1 = Vector256.FusedMultiplyAdd(Vector256.Create(q1[i]), key, a1);
                    a2 = Vector256.FusedMultiplyAdd(Vector256.Create(q2[i]), key, a2);
                    a3 = Vector256.FusedMultiplyAdd(Vector256.Create(q3[i]), key, a3);
                }
                a0.Store(scores + j);
                a1.Store(scores + stride + j);
                a2.Store(scores + 2 * stride + j);
                a3.Store(scores + 3 * stride + j);
            }
            return;
        }
        for (var k = 0; k < count; k++)
        {
            var qk = q + k * queryStride;
            var row = scores + k * stride;
            for (var j = 0; j < length; j++) row[j] = 0;
            for (var i = 0; i < d; i++)
            {
                var key = new ReadOnlySpan<float>(keys + (nint)i * stride, length);
                TensorPrimitives.MultiplyAdd(key, qk[i], new ReadOnlySpan<float>(row, length), new Span<float>(row, length));
            }
        }
    }

    /// <summary>ggml_soft_max_ext with the causal mask: p = e^(s·scale − max) / Σ over the <paramref name="visible"/>
    /// positions. Like ggml, whole vectors are exponentiated, the masked positions past the last visible one counting
    /// as −∞ (so the sums are added in ggml's grouping).</summary>
    private static void Softmax(Span<float> row, int visible, float scale)
    {
        var padded = Math.Min(row.Length, (visible + 7) & ~7);
        var values = row[..padded];
        TensorPrimitives.Multiply(values[..visible], scale, values[..visible]);
        values[visible..].Fill(float.NegativeInfinity);
        GgmlExp.Softmax(values);
    }

    /// <summary>output = Σ_j p_j·value_j over the visible positions.</summary>
    private static void WeightedValues(ReadOnlySpan<float> p, float* values, int d, float* output)
    {
        var c = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; c + 32 <= d; c += 32)
            {
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
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
        }
        for (; c < d; c++)
        {
            var sum = 0f;
            for (var j = 0; j < p.Length; j++) sum += p[j] * values[(nint)j * d + c];
            output[c] = sum;
        }
    }
}
