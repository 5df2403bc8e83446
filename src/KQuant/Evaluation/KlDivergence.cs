using System.Diagnostics;
using KQuant.Model;

namespace KQuant.Evaluation;

/// <summary>How <see cref="KlDivergence.Run"/> evaluates.</summary>
public sealed record KlDivergenceOptions
{
    /// <summary>Most tokens evaluated at once (-b).</summary>
    public int BatchSize { get; init; } = 2048;

    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>The token that replaces each chunk's first one, when the vocabulary adds BOS.</summary>
    public int? Bos { get; init; }

    /// <summary>Stop after this many chunks of the base file (null: all of them).</summary>
    public int? Chunks { get; init; }
}

/// <summary>Progress after each chunk: the running statistics llama-perplexity prints per chunk.</summary>
public sealed record KlDivergenceProgress(int Chunk, int Chunks, KlDivergenceStatistics Statistics, TimeSpan Elapsed);

/// <summary>A value and its uncertainty as llama-perplexity computes it.</summary>
public readonly record struct Estimate(double Value, double Uncertainty);

/// <summary>llama-perplexity's KL-divergence report (kl_divergence() of tools/perplexity/perplexity.cpp, v0.5.0). Δp is
/// p_Q(token) − p_base(token) of the observed next token; KLD is Σ_i p_base(i)·(log p_base(i) − log p_Q(i)) over the
/// tokens within 16 nats of the base's most likely one. Percentiles are null when too few tokens were scored
/// (llama.cpp prints its summary from 100 tokens on).</summary>
public sealed record KlDivergenceStatistics
{
    public required long Count { get; init; }
    public required Estimate PerplexityQ { get; init; }
    public required Estimate PerplexityBase { get; init; }
    /// <summary>Correlation of ln PPL(Q) and ln PPL(base) (their per-token NLL), as a fraction.</summary>
    public required double LogPerplexityCorrelation { get; init; }
    public required Estimate LogPerplexityRatio { get; init; }
    public required Estimate PerplexityRatio { get; init; }
    public required Estimate PerplexityDifference { get; init; }
    public required Estimate MeanKld { get; init; }
    public required Estimate MeanDeltaP { get; init; }
    public required Estimate RmsDeltaP { get; init; }
    public required Estimate SameTopP { get; init; }
    /// <summary>Sorted per-token divergences and Δp, for percentiles (null until the summary).</summary>
    public IReadOnlyList<float>? KldValues { get; init; }
    public IReadOnlyList<float>? DeltaPValues { get; init; }
    /// <summary>The per-token divergences in token order (null until the summary): for paired comparisons of two
    /// quantizations of one model on the same tokens, whose difference is far more certain than either mean.</summary>
    public IReadOnlyList<float>? KldByToken { get; init; }

    /// <summary>llama-perplexity's percentile: linear interpolation between the sorted values at fraction·(n − 1).</summary>
    public static double Percentile(IReadOnlyList<float> sorted, float fraction)
    {
        if (fraction <= 0) return sorted[0];
        if (fraction >= 1) return sorted[^1];
        var p = fraction * (sorted.Count - 1);
        var ip = (int)p;
        p -= ip;
        return (1 - p) * sorted[ip] + p * sorted[Math.Min(ip + 1, sorted.Count - 1)];
    }

    /// <summary>The median as llama-perplexity takes it (the mean of the two middle values for an even count).</summary>
    public static double Median(IReadOnlyList<float> sorted) =>
        sorted.Count % 2 == 0 ? 0.5f * (sorted[sorted.Count / 2] + sorted[sorted.Count / 2 - 1]) : sorted[sorted.Count / 2];
}

/// <summary>KL divergence of a model against base log-probabilities saved by llama-perplexity --kl-divergence-base (or
/// by <see cref="Perplexity"/> with a logits output): the chunks and tokens of the file, evaluated as llama.cpp does.</summary>
public static class KlDivergence
{
    /// <summary>Evaluates <paramref name="model"/> on every chunk of <paramref name="baseFile"/> and returns the
    /// statistics (with the sorted per-token values for the summary).</summary>
    public static KlDivergenceStatistics Run(LlamaModel model, LogitsFileReader baseFile, KlDivergenceOptions options,
        IProgress<KlDivergenceProgress>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(baseFile);
        if (baseFile.Vocabulary != model.VocabularySize)
            throw new InvalidDataException($"{baseFile.Name} was computed with a vocabulary of {baseFile.Vocabulary} tokens; this model has {model.VocabularySize}");
        var n = baseFile.ContextSize;
        var chunks = Math.Min(options.Chunks ?? int.MaxValue, baseFile.Chunks);
        var vocabulary = model.VocabularySize;
        using var evaluator = new ChunkEvaluator(model, n, options.BatchSize, new InferenceOptions { Threads = options.Threads });
        var scored = LogitsFile.RowsPerChunk(n);
        var rowLength = LogitsFile.RowLength(vocabulary);
        var baseRows = new ushort[scored * rowLength];
        var tokens = baseFile.Tokens as int[] ?? baseFile.Tokens.ToArray();
        var accumulator = new KlDivergenceAccumulator(vocabulary, chunks * scored);
        var clock = Stopwatch.StartNew();
        for (var c = 0; c < chunks; c++)
        {
            cancellation.ThrowIfCancellationRequested();
            var chunk = tokens.AsSpan(c * n, n);
            evaluator.Run(chunk, options.Bos, cancellation);
            baseFile.ReadChunk(baseRows);
            accumulator.AddChunk(evaluator.Logits, baseRows, chunk[(evaluator.First + 1)..].ToArray(), options.Threads);
            progress?.Report(new KlDivergenceProgress(c + 1, chunks, accumulator.Statistics(withDistributions: false), clock.Elapsed));
        }
        return accumulator.Statistics(withDistributions: true);
    }
}

/// <summary>The sums llama-perplexity's kl_divergence keeps (kl_divergence_result) and the per-token values it sorts.</summary>
public sealed class KlDivergenceAccumulator
{
    private readonly int _vocabulary;
    private readonly List<float> _kld;
    private readonly List<float> _deltaP;
    private double _sumNll, _sumNll2, _sumNllBase, _sumNllBase2, _sumNllNllBase, _sumKld, _sumKld2, _sumDeltaP, _sumDeltaP2, _sumDeltaP4;
    private long _sameTop, _count;

    public KlDivergenceAccumulator(int vocabulary, int expectedTokens = 0)
    {
        _vocabulary = vocabulary;
        _kld = new List<float>(expectedTokens);
        _deltaP = new List<float>(expectedTokens);
    }

    public long Count => _count;

    /// <summary>Adds the rows of one chunk: <paramref name="logits"/> (one row per scored position) against the base
    /// file's compressed rows; <paramref name="targets"/>[i] is the token that followed row i.</summary>
    internal void AddChunk(float[] logits, ushort[] baseRows, int[] targets, int threads)
    {
        var rowLength = LogitsFile.RowLength(_vocabulary);
        var results = new TokenResult[targets.Length];
        Parallel.For(0, targets.Length, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, threads) }, () => new float[_vocabulary],
            (i, _, scratch) =>
            {
                results[i] = Compare(logits.AsSpan(i * _vocabulary, _vocabulary), baseRows.AsSpan(i * rowLength, rowLength), targets[i], scratch);
                return scratch;
            }, _ => { });
        // Sums in token order, so a run is reproducible whatever the thread count.
        foreach (var r in results) Add(r);
    }

    /// <summary>One token: the model's logits against one base row.</summary>
    public void Add(ReadOnlySpan<float> logits, ReadOnlySpan<ushort> baseRow, int target) => Add(Compare(logits, baseRow, target, new float[_vocabulary]));

    private readonly record struct TokenResult(float Nll, float NllBase, double Kld, bool SameTop, float DeltaP);

    // llama-perplexity's log_softmax(n_vocab, logits, base_log_prob, tok, kld), in its float and double arithmetic.
    private TokenResult Compare(ReadOnlySpan<float> logits, ReadOnlySpan<ushort> baseRow, int target, float[] scratch)
    {
        var max = logits[0];
        var top = 0;
        for (var i = 1; i < logits.Length; i++)
        {
            if (logits[i] > max)
            {
                max = logits[i];
                top = i;
            }
        }
        var logSumExp = (float)Math.Log(LogProbabilities.SumExp(logits, max, scratch));
        var header = System.Runtime.InteropServices.MemoryMarshal.Cast<ushort, float>(baseRow[..4]);
        var scale = header[0];
        var minLogProb = header[1];
        var codes = baseRow[4..];
        var nll = max + logSumExp - logits[target];
        var nllBase = -(scale * codes[target] + minLogProb);
        var logNormalizer = max + logSumExp;

        // p_base·(log p_base − log p) over the base's likely tokens; log p_base = scale·q + min for every token.
        var logBase = scratch.AsSpan(0, logits.Length);
        for (var i = 0; i < logBase.Length; i++) logBase[i] = scale * codes[i] + minLogProb;
        var baseTop = 0;
        var baseTopValue = logBase[0];
        for (var i = 1; i < logBase.Length; i++)
        {
            if (logBase[i] > baseTopValue)
            {
                baseTopValue = logBase[i];
                baseTop = i;
            }
        }
        double kld = 0;
        for (var i = 0; i < logBase.Length; i++)
        {
            var lb = logBase[i];
            if (lb > -16f) kld += MathF.Exp(lb) * (lb - logits[i] + logNormalizer);
        }
        var deltaP = MathF.Exp(-nll) - MathF.Exp(-nllBase);
        return new TokenResult(nll, nllBase, kld, top == baseTop, deltaP);
    }

    private void Add(TokenResult r)
    {
        _sumNll += r.Nll;
        _sumNll2 += r.Nll * r.Nll;
        _sumNllBase += r.NllBase;
        _sumNllBase2 += r.NllBase * r.NllBase;
        _sumNllNllBase += r.Nll * r.NllBase;
        _sumKld += r.Kld;
        _sumKld2 += r.Kld * r.Kld;
        _sumDeltaP += r.DeltaP;
        double deltaP2 = r.DeltaP * r.DeltaP;
        _sumDeltaP2 += deltaP2;
        _sumDeltaP4 += deltaP2 * deltaP2;
        if (r.SameTop) _sameTop++;
        _count++;
        _kld.Add((float)r.Kld);
        _deltaP.Add(r.DeltaP);
    }

    /// <summary>The estimates so far; <paramref name="withDistributions"/> adds the sorted per-token values.</summary>
    public KlDivergenceStatistics Statistics(bool withDistributions)
    {
        var logPpl = MeanAndUncertainty(_sumNll, _sumNll2, _count);
        var logPplBase = MeanAndUncertainty(_sumNllBase, _sumNllBase2, _count);
        var covariance = Covariance(_sumNll, _sumNllBase, _sumNllNllBase, _count);
        var ppl = Math.Exp(logPpl.Value);
        var pplBase = Math.Exp(logPplBase.Value);
        var ratio = logPpl.Value - logPplBase.Value;
        var ratioUncertainty = Math.Sqrt(logPpl.Uncertainty * logPpl.Uncertainty + logPplBase.Uncertainty * logPplBase.Uncertainty - 2.0 * covariance);
        var pplUncertainty = ppl * logPpl.Uncertainty;
        var pplBaseUncertainty = pplBase * logPplBase.Uncertainty;
        var pplCovariance = ppl * pplBase * covariance;
        var deltaPSquared = MeanAndUncertainty(_sumDeltaP2, _sumDeltaP4, _count);
        var rms = Math.Sqrt(deltaPSquared.Value);
        var sameTop = (double)_sameTop / _count;
        float[]? kld = null, deltaP = null, kldByToken = null;
        if (withDistributions)
        {
            kldByToken = [.. _kld];
            kld = [.. _kld];
            deltaP = [.. _deltaP];
            Array.Sort(kld);
            Array.Sort(deltaP);
        }
        return new KlDivergenceStatistics
        {
            Count = _count,
            PerplexityQ = new Estimate(ppl, pplUncertainty),
            PerplexityBase = new Estimate(pplBase, pplBaseUncertainty),
            LogPerplexityCorrelation = covariance / (logPpl.Uncertainty * logPplBase.Uncertainty),
            LogPerplexityRatio = new Estimate(ratio, ratioUncertainty),
            PerplexityRatio = new Estimate(Math.Exp(ratio), Math.Exp(ratio) * ratioUncertainty),
            PerplexityDifference = new Estimate(ppl - pplBase, Math.Sqrt(pplUncertainty * pplUncertainty + pplBaseUncertainty * pplBaseUncertainty - 2.0 * pplCovariance)),
            MeanKld = MeanAndUncertainty(_sumKld, _sumKld2, _count),
            MeanDeltaP = MeanAndUncertainty(_sumDeltaP, _sumDeltaP2, _count),
            RmsDeltaP = new Estimate(rms, 0.5 / rms * deltaPSquared.Uncertainty),
            SameTopP = new Estimate(sameTop, Math.Sqrt(sameTop * (1 - sameTop) / (_count - 1))),
            KldValues = kld,
            DeltaPValues = deltaP,
            KldByToken = kldByToken,
        };
    }

    // llama-perplexity's mean_and_uncertainty: no uncertainty below 11 values.
    private static Estimate MeanAndUncertainty(double sum, double sum2, long count)
    {
        if (count < 1) return new Estimate(0, 0);
        var f = sum / count;
        var df = sum2 / count - f * f;
        df = df > 0 && count > 10 ? Math.Sqrt(df / (count - 1)) : 0;
        return new Estimate(f, df);
    }

    private static double Covariance(double sumA, double sumB, double sumAb, long count) =>
        count < 10 ? 0 : (sumAb / count - sumA / count * (sumB / count)) / (count - 1);
}
