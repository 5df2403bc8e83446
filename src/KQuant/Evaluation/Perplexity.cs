using System.Diagnostics;
using KQuant.Model;

namespace KQuant.Evaluation;

/// <summary>How <see cref="Perplexity.Run"/> measures.</summary>
public sealed record PerplexityOptions
{
    /// <summary>Tokens per chunk (llama-perplexity's -c, default 512).</summary>
    public int ContextSize { get; init; } = 512;

    /// <summary>How many chunks to score (--chunks); null scores every whole chunk of the text.</summary>
    public int? Chunks { get; init; }

    /// <summary>Most tokens evaluated at once (-b, default 2048); a chunk larger than this runs in several batches.</summary>
    public int BatchSize { get; init; } = 2048;

    /// <summary>Worker threads (-t).</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>The token that replaces each chunk's first one, when the vocabulary adds BOS; null leaves chunks as they are.</summary>
    public int? Bos { get; init; }

    /// <summary>When set, llama.cpp's logits file (--kl-divergence-base) is written to this stream.</summary>
    public Stream? LogitsOutput { get; init; }

    /// <summary>Sees every matrix multiplication's input (e.g. to collect an importance matrix).</summary>
    public IActivationObserver? Observer { get; init; }
}

/// <summary>Progress after each chunk: the running perplexity as llama-perplexity prints it ("[3]41.2345,").</summary>
public sealed record PerplexityProgress(int Chunk, int Chunks, double RunningPerplexity, TimeSpan Elapsed);

/// <summary>The outcome of <see cref="Perplexity.Run"/>.</summary>
/// <param name="RunningPerplexity">exp(mean NLL) after each chunk.</param>
/// <param name="Value">The final estimate.</param>
/// <param name="Uncertainty">llama-perplexity's ± : PPL·sqrt(var(NLL)/(count − 1)).</param>
/// <param name="TokensScored">Tokens whose probability entered the estimate (n_ctx − 1 − n_ctx/2 per chunk).</param>
/// <param name="TokensEvaluated">Tokens run through the model (n_ctx per chunk).</param>
public sealed record PerplexityResult(IReadOnlyList<double> RunningPerplexity, double Value, double Uncertainty,
    int Chunks, int ContextSize, long TokensScored, long TokensEvaluated, TimeSpan Elapsed)
{
    public double TokensPerSecond => TokensEvaluated / Math.Max(Elapsed.TotalSeconds, 1e-9);
}

/// <summary>Perplexity exactly as llama-perplexity v0.5.0 measures it (perplexity() of tools/perplexity/perplexity.cpp):
/// the text's tokens (tokenized once, with BOS, by the caller) are cut into chunks of n_ctx; each chunk is evaluated
/// from an empty cache with its first token replaced by BOS when the model adds BOS; only the second half of each
/// chunk is scored, every position predicting the next token.</summary>
public static class Perplexity
{
    public static PerplexityResult Run(LlamaModel model, IReadOnlyList<int> tokens, PerplexityOptions options,
        IProgress<PerplexityProgress>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokens);
        var n = options.ContextSize;
        if (n < 4) throw new ArgumentOutOfRangeException(nameof(options), "the context size must be at least 4");
        if (tokens.Count < 2 * n)
            throw new InvalidDataException($"the text tokenizes to {tokens.Count} tokens; a context of {n} needs at least {2 * n}");
        var chunks = Math.Min(options.Chunks ?? int.MaxValue, tokens.Count / n);
        if (chunks < 1) throw new ArgumentOutOfRangeException(nameof(options), "at least one chunk is needed");

        var all = tokens as int[] ?? tokens.ToArray();
        var vocabulary = model.VocabularySize;
        using var evaluator = new ChunkEvaluator(model, n, options.BatchSize,
            new InferenceOptions { Threads = options.Threads, Observer = options.Observer });
        using var logitsFile = options.LogitsOutput is { } stream ? new LogitsFileWriter(stream, n, vocabulary, chunks, all) : null;
        var scored = LogitsFile.RowsPerChunk(n);
        var rowLength = LogitsFile.RowLength(vocabulary);
        var compressed = logitsFile is null ? null : new ushort[scored * rowLength];
        var nll = new double[scored];

        var clock = Stopwatch.StartNew();
        double sum = 0, sumSquares = 0;
        long count = 0;
        var running = new List<double>(chunks);
        for (var c = 0; c < chunks; c++)
        {
            cancellation.ThrowIfCancellationRequested();
            var chunk = all.AsSpan(c * n, n);
            evaluator.Run(chunk, options.Bos, cancellation);
            ScoreChunk(evaluator.Logits, vocabulary, chunk[(evaluator.First + 1)..].ToArray(), nll, compressed, rowLength, options.Threads);
            logitsFile?.WriteChunk(compressed);
            foreach (var v in nll)
            {
                sum += v;
                sumSquares += v * v;
            }
            count += scored;
            running.Add(Math.Exp(sum / count));
            progress?.Report(new PerplexityProgress(c + 1, chunks, running[^1], clock.Elapsed));
        }

        var mean = sum / count;
        var variance = sumSquares / count - mean * mean;
        var ppl = Math.Exp(mean);
        var uncertainty = variance > 0 ? Math.Sqrt(variance / (count - 1)) * ppl : double.NaN;
        return new PerplexityResult(running, ppl, uncertainty, chunks, n, count, (long)chunks * n, clock.Elapsed);
    }

    /// <summary>−log p of each next token (and the compressed rows when writing a logits file), rows in parallel.</summary>
    private static void ScoreChunk(float[] logits, int vocabulary, int[] targets, double[] nll, ushort[]? compressed, int rowLength, int threads)
    {
        Parallel.For(0, nll.Length, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, threads) },
            () => new float[vocabulary],
            (i, _, scratch) =>
            {
                var row = logits.AsSpan(i * vocabulary, vocabulary);
                nll[i] = compressed is null
                    ? LogProbabilities.NegativeLogLikelihood(row, targets[i], scratch)
                    : LogProbabilities.Compress(row, targets[i], compressed.AsSpan(i * rowLength, rowLength), scratch);
                return scratch;
            },
            _ => { });
    }
}
