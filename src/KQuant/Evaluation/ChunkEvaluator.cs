using KQuant.Model;

namespace KQuant.Evaluation;

/// <summary>Runs llama-perplexity's chunks through a model: each chunk of n_ctx tokens starts a new sequence (an empty
/// cache), its first token replaced by BOS when the vocabulary adds one, evaluated in batches of at most the batch
/// size; logits come back for the second half, positions n_ctx/2 .. n_ctx−1.</summary>
internal sealed class ChunkEvaluator : IDisposable
{
    private readonly InferenceSession _session;
    private readonly int[] _chunk;

    public ChunkEvaluator(LlamaModel model, int contextSize, int batchSize, InferenceOptions options)
    {
        ContextSize = contextSize;
        First = contextSize / 2;
        _session = model.CreateSession(contextSize, options with { MaxBatch = Math.Min(batchSize, contextSize) });
        _chunk = new int[contextSize];
        Logits = new float[(long)(contextSize - First) * model.VocabularySize];
    }

    public int ContextSize { get; }

    /// <summary>The first position with logits (n_ctx/2).</summary>
    public int First { get; }

    /// <summary>Logits of positions <see cref="First"/>.. of the last chunk, one row of the vocabulary each.</summary>
    public float[] Logits { get; }

    public int Vocabulary => _session.Model.VocabularySize;

    /// <summary>Evaluates one chunk of <see cref="ContextSize"/> tokens; <paramref name="bos"/> replaces the first.</summary>
    public void Run(ReadOnlySpan<int> tokens, int? bos, CancellationToken cancellation)
    {
        tokens[..ContextSize].CopyTo(_chunk);
        if (bos is { } b) _chunk[0] = b;
        var batch = _session.MaxBatch;
        for (var start = 0; start < ContextSize; start += batch)
        {
            cancellation.ThrowIfCancellationRequested();
            var count = Math.Min(batch, ContextSize - start);
            var firstOutput = Math.Clamp(First - start, 0, count);
            var outputRow = start + firstOutput - First;
            _session.Evaluate(_chunk.AsSpan(start, count), start, firstOutput,
                Logits.AsSpan((int)((long)outputRow * Vocabulary), (count - firstOutput) * Vocabulary));
        }
    }

    public void Dispose() => _session.Dispose();
}
