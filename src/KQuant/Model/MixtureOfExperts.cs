using System.Numerics.Tensors;
using KQuant.Model.Kernels;

namespace KQuant.Model;

/// <summary>The mixture-of-experts feed-forward of llama (Mixtral-style; llm_graph_context::build_moe_ffn with softmax
/// gating and normalized weights): the router's softmax picks the top experts of each token, their weights are
/// renormalized to sum to one, each expert's SwiGLU runs on the tokens routed to it, and the weighted expert outputs
/// are added in selection order.</summary>
internal sealed unsafe class MixtureOfExperts : IDisposable
{
    // ggml clamps the sum of the selected weights to the smallest normal fp16 before dividing by it.
    private const float MinimumWeightSum = 6.103515625e-5f;

    private readonly LlamaConfig _config;
    private readonly NativeBuffer _probabilities = new();
    private readonly NativeBuffer _input = new();
    private readonly NativeBuffer _gate = new();
    private readonly NativeBuffer _up = new();
    private readonly NativeBuffer _down = new();
    private readonly NativeBuffer _weighted = new();
    private readonly int[] _selected;
    private readonly float[] _weights;
    private readonly int[] _rows;

    public MixtureOfExperts(LlamaConfig config, int maxBatch)
    {
        _config = config;
        var t = (nuint)maxBatch;
        _probabilities.Floats(t * (nuint)config.ExpertCount);
        _input.Floats(t * (nuint)config.EmbeddingLength);
        _gate.Floats(t * (nuint)config.FeedForwardLength);
        _up.Floats(t * (nuint)config.FeedForwardLength);
        _down.Floats(t * (nuint)config.EmbeddingLength);
        _weighted.Floats(t * (nuint)config.ExpertUsedCount * (nuint)config.EmbeddingLength);
        _selected = new int[maxBatch * config.ExpertUsedCount];
        _weights = new float[maxBatch * config.ExpertUsedCount];
        _rows = new int[maxBatch];
    }

    /// <summary>output[t] = Σ_k weight_{t,k}·expert_{e(t,k)}(h[t]) for the <paramref name="count"/> rows of <paramref name="h"/>.</summary>
    public void Run(LlamaLayer layer, float* h, int count, float* output, InferenceSession session)
    {
        var e = _config.EmbeddingLength;
        var f = _config.FeedForwardLength;
        var used = _config.ExpertUsedCount;
        var probabilities = (float*)_probabilities.Pointer;
        session.Multiply(layer.Router!, h, count, probabilities, _config.ExpertCount);
        for (var t = 0; t < count; t++) Route(new Span<float>(probabilities + t * _config.ExpertCount, _config.ExpertCount), t);

        var weighted = (float*)_weighted.Pointer;
        var input = (float*)_input.Pointer;
        var gate = (float*)_gate.Pointer;
        var up = (float*)_up.Pointer;
        var down = (float*)_down.Pointer;
        for (var expert = 0; expert < _config.ExpertCount; expert++)
        {
            // Gather the tokens routed to this expert; _rows remembers (token, slot) as token·used + slot. Tokens that
            // chose it first come first, then those that chose it second, ...: the order in which llama-imatrix adds
            // an expert's rows (each row's product is independent of the others, so the output is the same).
            var routed = 0;
            for (var k = 0; k < used; k++)
            {
                for (var t = 0; t < count; t++)
                {
                    var slot = t * used + k;
                    if (_selected[slot] != expert) continue;
                    new ReadOnlySpan<float>(h + t * e, e).CopyTo(new Span<float>(input + routed * e, e));
                    _rows[routed++] = slot;
                }
            }
            if (routed == 0) continue;
            session.Multiply(layer.GateExperts![expert], input, routed, gate, f);
            session.Multiply(layer.UpExperts![expert], input, routed, up, f);
            session.SwiGlu(gate, up, routed, f);
            session.Multiply(layer.DownExperts![expert], gate, routed, down, e);
            for (var r = 0; r < routed; r++)
            {
                var slot = _rows[r];
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(down + r * e, e), _weights[slot], new Span<float>(weighted + (nint)slot * e, e));
            }
        }

        for (var t = 0; t < count; t++)
        {
            var sum = new Span<float>(output + t * e, e);
            new ReadOnlySpan<float>(weighted + (nint)t * used * e, e).CopyTo(sum);
            for (var k = 1; k < used; k++) TensorPrimitives.Add(sum, new ReadOnlySpan<float>(weighted + ((nint)t * used + k) * e, e), sum);
        }
    }

    /// <summary>Softmax over the router logits, the top experts by probability, their probabilities renormalized.</summary>
    private void Route(Span<float> logits, int token)
    {
        GgmlExp.Softmax(logits);

        var used = _config.ExpertUsedCount;
        var selected = _selected.AsSpan(token * used, used);
        var weights = _weights.AsSpan(token * used, used);
        for (var k = 0; k < used; k++)
        {
            var best = -1;
            for (var x = 0; x < logits.Length; x++)
            {
                if (selected[..k].Contains(x)) continue;
                if (best < 0 || logits[x] > logits[best]) best = x;
            }
            selected[k] = best;
            weights[k] = logits[best];
        }
        // ggml_sum_rows adds in double.
        double total = 0;
        foreach (var weight in weights) total += weight;
        var sum = MathF.Max((float)total, MinimumWeightSum);
        TensorPrimitives.Divide(weights, sum, weights);
    }

    public void Dispose()
    {
        _probabilities.Dispose();
        _input.Dispose();
        _gate.Dispose();
        _up.Dispose();
        _down.Dispose();
        _weighted.Dispose();
    }
}
