using System.Numerics.Tensors;
using KQuant.Model.Kernels;
using KQuant.Quants;

namespace KQuant.Model;

/// <summary>The forward pass of a <see cref="LlamaModel"/> over a context of <see cref="ContextSize"/> positions: a KV
/// cache and the buffers for batches of up to <see cref="MaxBatch"/> tokens, each batch computed at once (every matrix
/// product multiplies all its tokens). The graph is llama.cpp's llama/qwen2 graph (src/models/llama.cpp, qwen2.cpp
/// and llama-graph.cpp of v0.5.0). Not thread-safe: one batch at a time (each batch uses several threads).</summary>
public sealed unsafe class InferenceSession : IDisposable
{
    private readonly LlamaModel _model;
    private readonly LlamaConfig _config;
    private readonly Parallelism _parallel;
    private readonly IActivationObserver? _observer;
    private readonly KvCache _cache;
    private readonly RotaryEmbedding _rope;
    private readonly IRowCodec _embeddingCodec;
    private readonly ActivationBatch _batch = new();
    private readonly NativeBuffer _residual = new();
    private readonly NativeBuffer _normed = new();
    private readonly NativeBuffer _qkv = new();
    private readonly NativeBuffer _attention = new();
    private readonly NativeBuffer _projection = new();
    private readonly NativeBuffer _gate = new();
    private readonly NativeBuffer _up = new();
    private readonly MixtureOfExperts? _experts;

    internal InferenceSession(LlamaModel model, int contextSize, InferenceOptions options)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(contextSize, 1);
        _model = model;
        _config = model.Config;
        _parallel = new Parallelism(options.Threads);
        _observer = options.Observer;
        MaxBatch = Math.Clamp(options.MaxBatch ?? contextSize, 1, contextSize);
        _cache = new KvCache(_config.LayerCount, _config.HeadCountKv, _config.HeadDimension, contextSize);
        _rope = new RotaryEmbedding(_config.Rope, contextSize, model.RopeFrequencyFactors);
        _embeddingCodec = RowCodecs.Get(model.TokenEmbedding.Type);
        var t = (nuint)MaxBatch;
        _residual.Floats(t * (nuint)_config.EmbeddingLength);
        _normed.Floats(t * (nuint)_config.EmbeddingLength);
        _qkv.Floats(t * (nuint)QkvStride);
        _attention.Floats(t * (nuint)_config.QueryLength);
        _projection.Floats(t * (nuint)_config.EmbeddingLength);
        _gate.Floats(t * (nuint)_config.FeedForwardLength);
        _up.Floats(t * (nuint)_config.FeedForwardLength);
        if (_config.ExpertCount > 0) _experts = new MixtureOfExperts(_config, MaxBatch);
    }

    public LlamaModel Model => _model;

    public int ContextSize => _cache.Capacity;

    public int MaxBatch { get; }

    public int Threads => _parallel.Threads;

    private int QkvStride => _config.QueryLength + 2 * _config.KvLength;

    /// <summary>Sees every intermediate tensor under llama.cpp's graph name ("attn_norm-0", "kqv_out-3", "result_output",
    /// ...) with its row count and row length, so tests can compare the forward pass with llama.cpp's step by step.</summary>
    internal Action<string, ReadOnlySpan<float>, int>? Probe { get; set; }

    private void Report(string name, float* rows, int count, int columns, nint stride = 0)
    {
        if (Probe is not { } probe) return;
        if (stride == 0 || stride == columns)
        {
            probe(name, new ReadOnlySpan<float>(rows, count * columns), columns);
            return;
        }
        var packed = new float[count * columns];
        for (var r = 0; r < count; r++) new ReadOnlySpan<float>(rows + r * stride, columns).CopyTo(packed.AsSpan(r * columns));
        probe(name, packed, columns);
    }

    /// <summary>Runs <paramref name="tokens"/> at positions <paramref name="firstPosition"/>.. and writes the logits of
    /// tokens <paramref name="firstOutput"/>.. (one row of <see cref="LlamaModel.VocabularySize"/> floats each) to
    /// <paramref name="logits"/>. Positions before <paramref name="firstPosition"/> must hold this sequence's earlier
    /// tokens (from previous calls); later positions are overwritten, so position 0 starts a new sequence.</summary>
    public void Evaluate(ReadOnlySpan<int> tokens, int firstPosition, int firstOutput, Span<float> logits)
    {
        var count = tokens.Length;
        if (count == 0) return;
        if (count > MaxBatch) throw new ArgumentException($"{count} tokens exceed the batch size {MaxBatch}", nameof(tokens));
        if (firstPosition < 0 || firstPosition + count > ContextSize)
            throw new ArgumentOutOfRangeException(nameof(firstPosition), $"positions {firstPosition}..{firstPosition + count - 1} are outside the context of {ContextSize}");
        if (firstOutput < 0 || firstOutput > count) throw new ArgumentOutOfRangeException(nameof(firstOutput));
        var vocabulary = _model.VocabularySize;
        if (logits.Length < (long)(count - firstOutput) * vocabulary)
            throw new ArgumentException($"{count - firstOutput} rows of logits need {(long)(count - firstOutput) * vocabulary} floats", nameof(logits));

        var e = _config.EmbeddingLength;
        var x = (float*)_residual.Pointer;
        Embed(tokens, x);
        for (var layer = 0; layer < _config.LayerCount; layer++)
        {
            // The last layer only carries the rows that produce logits past attention (llama.cpp's inp_out_ids).
            var first = layer == _config.LayerCount - 1 ? firstOutput : 0;
            Attention(layer, count, firstPosition, x);
            FeedForward(layer, x + first * e, count - first);
        }

        var outputs = count - firstOutput;
        if (outputs == 0) return;
        var rows = x + firstOutput * e;
        var h = (float*)_normed.Pointer;
        Normalize(rows, outputs, _model.OutputNorm, h);
        Report("result_norm", h, outputs, e);
        fixed (float* y = logits)
        {
            Multiply(_model.Output, h, outputs, y, vocabulary);
            if (_model.OutputBias is { } bias) VectorOps.AddBias(new Span<float>(y, outputs * vocabulary), vocabulary, bias);
            Report("result_output", y, outputs, vocabulary);
        }
    }

    private void Embed(ReadOnlySpan<int> tokens, float* x)
    {
        var e = _config.EmbeddingLength;
        var table = _model.TokenEmbedding;
        for (var t = 0; t < tokens.Length; t++)
        {
            var token = tokens[t];
            if ((uint)token >= (uint)_model.VocabularySize)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token {token} is outside the vocabulary of {_model.VocabularySize}");
            _embeddingCodec.Dequantize(_model.File.GetRows(table, token, 1), new Span<float>(x + t * e, e));
        }
    }

    private void Attention(int layer, int count, int firstPosition, float* x)
    {
        var c = _config;
        var weights = _model.Layers[layer];
        var e = c.EmbeddingLength;
        var h = (float*)_normed.Pointer;
        var qkv = (float*)_qkv.Pointer;
        var stride = QkvStride;
        Normalize(x, count, weights.AttentionNorm, h);
        Report($"attn_norm-{layer}", h, count, e);

        _batch.Reset(h, count, e);
        if (weights.Qkv is { } fused)
        {
            Project(fused, qkv, stride);
        }
        else
        {
            Project(weights.Query!, qkv, stride);
            Project(weights.Key!, qkv + c.QueryLength, stride);
            Project(weights.Value!, qkv + c.QueryLength + c.KvLength, stride);
        }
        if (weights.QkvBias is { } bias) VectorOps.AddBias(new Span<float>(qkv, count * stride), stride, bias);

        for (var t = 0; t < count; t++)
        {
            var row = new Span<float>(qkv + t * stride, stride);
            _rope.Apply(row[..c.QueryLength], c.HeadCount, c.HeadDimension, firstPosition + t);
            _rope.Apply(row.Slice(c.QueryLength, c.KvLength), c.HeadCountKv, c.HeadDimension, firstPosition + t);
            _cache.Store(layer, firstPosition + t, row.Slice(c.QueryLength, c.KvLength), row.Slice(c.QueryLength + c.KvLength, c.KvLength));
        }

        Report($"Qcur-{layer}", qkv, count, c.QueryLength, stride);
        Report($"Kcur-{layer}", qkv + c.QueryLength, count, c.KvLength, stride);
        Report($"Vcur-{layer}", qkv + c.QueryLength + c.KvLength, count, c.KvLength, stride);

        var attention = (float*)_attention.Pointer;
        CausalAttention.Compute(c, _cache, layer, qkv, stride, count, firstPosition, attention, c.QueryLength, _parallel);
        Report($"kqv_out-{layer}", attention, count, c.QueryLength);

        var projected = (float*)_projection.Pointer;
        Multiply(weights.AttentionOutput, attention, count, projected, e);
        if (weights.AttentionOutputBias is { } outputBias) VectorOps.AddBias(new Span<float>(projected, count * e), e, outputBias);
        Report($"attn_out-{layer}", projected, count, e);
        var residual = new Span<float>(x, count * e);
        TensorPrimitives.Add(residual, new ReadOnlySpan<float>(projected, count * e), residual);
        Report($"ffn_inp-{layer}", x, count, e);
    }

    private void FeedForward(int layer, float* x, int count)
    {
        if (count == 0) return;
        var weights = _model.Layers[layer];
        var e = _config.EmbeddingLength;
        var f = _config.FeedForwardLength;
        var h = (float*)_normed.Pointer;
        var projected = (float*)_projection.Pointer;
        Normalize(x, count, weights.FeedForwardNorm, h);
        Report($"ffn_norm-{layer}", h, count, e);
        if (_experts is not null)
        {
            _experts.Run(weights, h, count, projected, this);
        }
        else
        {
            var gate = (float*)_gate.Pointer;
            var up = (float*)_up.Pointer;
            _batch.Reset(h, count, e);
            Project(weights.Gate!, gate, f);
            Project(weights.Up!, up, f);
            if (weights.GateBias is { } gateBias) VectorOps.AddBias(new Span<float>(gate, count * f), f, gateBias);
            if (weights.UpBias is { } upBias) VectorOps.AddBias(new Span<float>(up, count * f), f, upBias);
            Report($"ffn_gate-{layer}", gate, count, f);
            Report($"ffn_up-{layer}", up, count, f);
            SwiGlu(gate, up, count, f);
            Report($"ffn_swiglu-{layer}", gate, count, f);
            Multiply(weights.Down!, gate, count, projected, e);
            if (weights.DownBias is { } downBias) VectorOps.AddBias(new Span<float>(projected, count * e), e, downBias);
            Report($"ffn_out-{layer}", projected, count, e);
        }
        var residual = new Span<float>(x, count * e);
        TensorPrimitives.Add(residual, new ReadOnlySpan<float>(projected, count * e), residual);
        Report($"l_out-{layer}", x, count, e);
    }

    /// <summary>Rows of <paramref name="input"/> times <paramref name="w"/> into <paramref name="output"/> (rows
    /// <paramref name="outputStride"/> floats apart), announcing the input to the observer first.</summary>
    internal void Multiply(WeightMatrix w, float* input, int rows, float* output, nint outputStride)
    {
        _batch.Reset(input, rows, w.Columns);
        Project(w, output, outputStride);
    }

    /// <summary>The current batch times <paramref name="w"/>; several projections of one input share the batch's
    /// quantized activations.</summary>
    private void Project(WeightMatrix w, float* output, nint outputStride)
    {
        _observer?.OnMatMul(w.Name, w.Expert, new ReadOnlySpan<float>(_batch.Source, _batch.Rows * _batch.Columns), _batch.Columns);
        MatMul.Multiply(w, _batch, output, outputStride, _parallel);
    }

    internal void Normalize(float* x, int rows, float[] weight, float* y)
    {
        var e = _config.EmbeddingLength;
        var epsilon = _config.RmsNormEpsilon;
        ForRowRanges(rows, (start, end) =>
        {
            for (var r = start; r < end; r++)
                VectorOps.RmsNorm(new ReadOnlySpan<float>(x + r * e, e), weight, epsilon, new Span<float>(y + r * e, e));
        });
    }

    internal void SwiGlu(float* gate, float* up, int rows, int columns)
    {
        ForRowRanges(rows, (start, end) =>
        {
            for (var r = start; r < end; r++)
                VectorOps.SwiGlu(new Span<float>(gate + r * columns, columns), new ReadOnlySpan<float>(up + r * columns, columns));
        });
    }

    private void ForRowRanges(int rows, Action<int, int> body)
    {
        var ranges = Math.Min(rows, _parallel.Threads * 4);
        _parallel.For(ranges, i => body(i * rows / ranges, (i + 1) * rows / ranges));
    }

    public void Dispose()
    {
        _cache.Dispose();
        _batch.Dispose();
        _residual.Dispose();
        _normed.Dispose();
        _qkv.Dispose();
        _attention.Dispose();
        _projection.Dispose();
        _gate.Dispose();
        _up.Dispose();
        _experts?.Dispose();
    }
}
