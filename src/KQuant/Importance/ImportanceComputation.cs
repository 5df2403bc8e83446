using System.Diagnostics;
using KQuant.Evaluation;
using KQuant.Model;

namespace KQuant.Importance;

/// <summary>How <see cref="ImportanceComputation.Run"/> computes (llama-imatrix's options of the same meaning).</summary>
public sealed record ImportanceOptions
{
    /// <summary>Tokens per chunk (-c, default 512); also the imatrix.chunk_size written.</summary>
    public int ContextSize { get; init; } = 512;

    /// <summary>How many chunks to run (--chunks); null runs every whole chunk of the text.</summary>
    public int? Chunks { get; init; }

    /// <summary>Tokens per batch (-b, default 2048): a batch holds batch / context chunks at once, as separate
    /// sequences, which decides how llama.cpp cuts them into micro-batches and so the order of the sums.</summary>
    public int BatchSize { get; init; } = 2048;

    /// <summary>Most tokens llama.cpp multiplies at once (its n_ubatch, default 512).</summary>
    public int MicroBatchSize { get; init; } = 512;

    /// <summary>Worker threads of the forward pass.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>The token that replaces each chunk's first one, when the vocabulary adds BOS; null leaves chunks as they are.</summary>
    public int? Bos { get; init; }

    /// <summary>Collect <c>output.weight</c> too (--process-output).</summary>
    public bool IncludeOutput { get; init; }

    /// <summary>Measure the perplexity of the chunks on the way, as llama-imatrix does unless --no-ppl.</summary>
    public bool ComputePerplexity { get; init; } = true;

    /// <summary>What the text is called in the file's imatrix.datasets (llama-imatrix stores its -f argument as given).</summary>
    public string Dataset { get; init; } = "";
}

/// <summary>Progress after each micro-batch: tokens evaluated, whole chunks done, the running perplexity after the last
/// whole chunk (null before the first, or without <see cref="ImportanceOptions.ComputePerplexity"/>).</summary>
public sealed record ImportanceProgress(long Tokens, long TotalTokens, int Chunks, int TotalChunks, double? RunningPerplexity, TimeSpan Elapsed);

/// <summary>The outcome of <see cref="ImportanceComputation.Run"/>: the matrix (raw sums and counts) and, when measured,
/// the perplexity of the chunks as llama-imatrix prints it.</summary>
/// <param name="InexactMicroBatches">Collected micro-batches in which a chunk had fewer than
/// <see cref="ImportanceComputation.TiledAttentionRows"/> tokens: llama.cpp attends to those with another kernel (F16
/// queries), which KQuant's forward pass follows only to float rounding, so their sums agree with llama-imatrix's to
/// rounding rather than to the bit.</param>
public sealed record ImportanceResult(ImportanceMatrix Matrix, int Chunks, int ContextSize, long TokensEvaluated,
    IReadOnlyList<double> RunningPerplexity, double? Perplexity, double? Uncertainty, TimeSpan Elapsed, int InexactMicroBatches)
{
    public double TokensPerSecond => TokensEvaluated / Math.Max(Elapsed.TotalSeconds, 1e-9);
}

/// <summary>An importance matrix computed as llama-imatrix v0.5.0 computes it (compute_imatrix of
/// tools/imatrix/imatrix.cpp): the tokens (the whole text tokenized once with BOS, by the caller) are cut into chunks of
/// n_ctx; each chunk starts from an empty cache with its first token replaced by BOS (when the vocabulary adds one),
/// and every token of it is evaluated, every position an output. batch / n_ctx chunks go into one batch as separate
/// sequences, which llama.cpp (a KV stream per sequence) cuts into micro-batches of ⌊n_ubatch / sequences⌋ tokens of
/// each sequence; with one sequence, a batch is cut into micro-batches of n_ubatch consecutive tokens. KQuant evaluates
/// the same pieces in the same order, each sequence in its own session, so every matrix product sees llama.cpp's rows
/// in llama.cpp's order and the micro-batch sizes decide the same products skipped (see <see cref="ImportanceCollector"/>).
/// Perplexity, when measured, scores the second half of each chunk, as llama-perplexity does.</summary>
public static class ImportanceComputation
{
    /// <summary>llama.cpp's CPU flash attention takes its tiled kernel (which the forward pass reproduces bit for bit)
    /// from this many query rows per sequence (GGML_FA_TILE_Q).</summary>
    public const int TiledAttentionRows = 64;

    public static ImportanceResult Run(LlamaModel model, IReadOnlyList<int> tokens, ImportanceOptions options,
        IProgress<ImportanceProgress>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(options);
        var n = options.ContextSize;
        if (n < 4) throw new ArgumentOutOfRangeException(nameof(options), "the context size must be at least 4");
        if (options.BatchSize < 1 || options.MicroBatchSize < 1) throw new ArgumentOutOfRangeException(nameof(options), "batch sizes must be positive");
        if (tokens.Count < 2 * n)
            throw new InvalidDataException($"the text tokenizes to {tokens.Count} tokens; a context of {n} needs at least {2 * n}");
        var chunks = Math.Min(options.Chunks ?? int.MaxValue, tokens.Count / n);
        if (chunks < 1) throw new ArgumentOutOfRangeException(nameof(options), "at least one chunk is needed");

        // llama-imatrix's arithmetic: n_seq sequences per batch, the batch no larger than they fill, the micro-batch
        // (llama_context's n_ubatch) no larger than the batch.
        var sequences = Math.Max(1, options.BatchSize / n);
        var batch = Math.Min(options.BatchSize, sequences * n);
        var micro = Math.Min(options.MicroBatchSize, batch);
        if (sequences > micro)
            throw new ArgumentOutOfRangeException(nameof(options), $"{sequences} chunks per batch would leave less than one token of each per micro-batch of {micro}");

        var all = tokens as int[] ?? tokens.ToArray();
        var vocabulary = model.VocabularySize;
        var collector = new ImportanceCollector(model.Config.ExpertCount) { IncludeOutput = options.IncludeOutput };
        var sessionCount = Math.Min(sequences, chunks);
        var maxRows = Math.Min(micro, n);
        var inference = new InferenceOptions { Threads = options.Threads, Observer = collector, MaxBatch = maxRows };
        var sessions = new InferenceSession[sessionCount];
        try
        {
            for (var s = 0; s < sessionCount; s++) sessions[s] = model.CreateSession(n, inference);
            var inputs = new int[sessionCount][];
            for (var s = 0; s < sessionCount; s++) inputs[s] = new int[n];
            var logits = new float[(long)maxRows * vocabulary];
            var scratch = new float[vocabulary];
            var first = n / 2;
            var chunkNll = new double[sessionCount];
            var chunkNll2 = new double[sessionCount];
            double nll = 0, nll2 = 0;
            long scored = 0;
            var running = new List<double>(chunks);

            var clock = Stopwatch.StartNew();
            long done = 0;
            var total = (long)chunks * n;
            var chunksDone = 0;
            var inexact = 0;
            void Begin(int rowsPerChunk, int chunksInBatch)
            {
                collector.BeginMicroBatch(rowsPerChunk * chunksInBatch);
                if (rowsPerChunk < TiledAttentionRows && rowsPerChunk * chunksInBatch >= ImportanceCollector.MinimumRows) inexact++;
            }

            void Evaluate(int s, int start, int rows, int chunkStart)
            {
                cancellation.ThrowIfCancellationRequested();
                var output = logits.AsSpan(0, rows * vocabulary);
                sessions[s].Evaluate(inputs[s].AsSpan(start, rows), start, 0, output);
                if (options.ComputePerplexity)
                {
                    // Positions first .. n−2 predict the next token of the text.
                    for (var p = Math.Max(start, first); p < Math.Min(start + rows, n - 1); p++)
                    {
                        var v = LogProbabilities.NegativeLogLikelihood(output.Slice((p - start) * vocabulary, vocabulary), all[chunkStart + p + 1], scratch);
                        chunkNll[s] += v;
                        chunkNll2[s] += v * v;
                    }
                }
                done += rows;
                progress?.Report(new ImportanceProgress(done, total, chunksDone, chunks, running.Count > 0 ? running[^1] : null, clock.Elapsed));
            }

            for (var c = 0; c < chunks; c += sequences)
            {
                var k = Math.Min(sequences, chunks - c);
                for (var s = 0; s < k; s++)
                {
                    all.AsSpan((c + s) * n, n).CopyTo(inputs[s]);
                    if (options.Bos is { } bos) inputs[s][0] = bos;
                    chunkNll[s] = chunkNll2[s] = 0;
                }
                if (sequences == 1)
                {
                    // One KV stream: batches of `batch` tokens, each cut into micro-batches of consecutive tokens.
                    for (var b = 0; b < n; b += batch)
                    {
                        var end = Math.Min(n, b + batch);
                        for (var u = b; u < end; u += micro)
                        {
                            var rows = Math.Min(micro, end - u);
                            Begin(rows, 1);
                            Evaluate(0, u, rows, c * n);
                        }
                    }
                }
                else
                {
                    // A stream per sequence: each micro-batch takes the next ⌊micro / k⌋ tokens of every sequence.
                    var piece = Math.Max(1, micro / k);
                    for (var u = 0; u < n; u += piece)
                    {
                        var rows = Math.Min(piece, n - u);
                        Begin(rows, k);
                        for (var s = 0; s < k; s++) Evaluate(s, u, rows, (c + s) * n);
                    }
                }
                for (var s = 0; s < k; s++)
                {
                    if (options.ComputePerplexity)
                    {
                        nll += chunkNll[s];
                        nll2 += chunkNll2[s];
                        scored += n - 1 - first;
                        running.Add(Math.Exp(nll / scored));
                    }
                }
                chunksDone += k;
                progress?.Report(new ImportanceProgress(done, total, chunksDone, chunks, running.Count > 0 ? running[^1] : null, clock.Elapsed));
            }

            double? ppl = null, uncertainty = null;
            if (options.ComputePerplexity && scored > 0)
            {
                var mean = nll / scored;
                var variance = nll2 / scored - mean * mean;
                ppl = Math.Exp(mean);
                uncertainty = variance > 0 && scored > 1 ? Math.Sqrt(variance / (scored - 1)) * ppl : double.NaN;
            }
            var matrix = collector.ToMatrix(options.Dataset.Length > 0 ? [options.Dataset] : [], n);
            return new ImportanceResult(matrix, chunks, n, total, running, ppl, uncertainty, clock.Elapsed, inexact);
        }
        finally
        {
            foreach (var session in sessions) session?.Dispose();
        }
    }
}
