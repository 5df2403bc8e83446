using System.Diagnostics;
using KQuant.Gguf;
using KQuant.Importance;
using KQuant.Model;
using KQuant.Model.Tokenizers;
using KQuant.Quantization;
using KQuant.Recipes;

namespace KQuant.Evaluation;

/// <summary>One recipe's outcome on one model: what it costs in size and what it costs in accuracy.</summary>
public sealed record RecipeOutcome(
    QuantRecipe Recipe,
    long FileBytes,
    double BitsPerWeight,
    double MeanRelativeRmse,
    double MeanWeightedRelativeRmse,
    TimeSpan QuantizeTime,
    string? KeptPath,
    RecipeQuality? Quality = null);

/// <summary>How the quantized model's predictions differ from the original's on a text, as llama-perplexity's
/// --kl-divergence measures it: its perplexity, mean KL divergence per token, the 99th percentile of that, and how
/// often both models rank the same token first.</summary>
public sealed record RecipeQuality(Estimate Perplexity, Estimate MeanKld, double Kld99, Estimate SameTopP);

/// <summary>The recipes' outcomes and, when a text was given, the original model's perplexity on it.</summary>
public sealed record RecipeEvaluationReport(IReadOnlyList<RecipeOutcome> Outcomes, PerplexityResult? BasePerplexity);

/// <summary>Quantizes a model with several recipes and measures each: the "which recipe should I use" table.</summary>
public static class RecipeEvaluation
{
    public sealed record Options
    {
        public int Threads { get; init; } = Environment.ProcessorCount;
        public string? ImatrixPath { get; init; }
        /// <summary>Keep the quantized files here; by default they go to a temporary folder and are deleted.</summary>
        public string? KeepDirectory { get; init; }
        /// <summary>How the recipes round, as <see cref="Quantization.QuantizeRequest.Rounding"/> (default: optimal).</summary>
        public Quants.RoundingMode Rounding { get; init; } = Quants.RoundingMode.Optimal;
        /// <summary>A text to measure perplexity and KL divergence against the original model on (none: weights only).</summary>
        public string? TextPath { get; init; }
        public int ContextSize { get; init; } = 512;
        /// <summary>Score only the first N chunks of the text (default: all).</summary>
        public int? Chunks { get; init; }
    }

    /// <summary>Quantizes <paramref name="model"/> with each recipe and measures it. Progress counts steps: the
    /// original model's pass over the text (when there is one), then one per recipe.</summary>
    public static RecipeEvaluationReport Run(string model, IReadOnlyList<QuantRecipe> recipes, Options options,
        IProgress<(int Done, string Current)>? progress = null, CancellationToken cancellation = default)
    {
        var dir = options.KeepDirectory ?? Path.Combine(Path.GetTempPath(), $"kquant-evaluate-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        var importance = options.ImatrixPath is null ? null : ImportanceMatrix.Load(options.ImatrixPath);
        var outcomes = new List<RecipeOutcome>();
        PerplexityResult? basePerplexity = null;
        var step = 0;
        string? baseLogits = null;
        try
        {
            using var original = GgufFile.Open(model);
            int? bos = null;
            if (options.TextPath is { } textPath)
            {
                // The original's log-probabilities go to a logits file once; each recipe is then compared against it.
                progress?.Report((step, "original model on the text"));
                var tokenizer = Tokenizer.FromGguf(original);
                bos = tokenizer.AddBos ? tokenizer.Bos : null;
                var tokens = tokenizer.Encode(File.ReadAllText(textPath));
                baseLogits = Path.Combine(Path.GetTempPath(), $"kquant-evaluate-{Guid.NewGuid():N}.logits");
                using (var stream = new FileStream(baseLogits, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
                {
                    basePerplexity = Perplexity.Run(LlamaModel.Load(original), tokens, new PerplexityOptions
                    {
                        ContextSize = options.ContextSize,
                        Chunks = options.Chunks,
                        Threads = options.Threads,
                        Bos = bos,
                        LogitsOutput = stream,
                    }, cancellation: cancellation);
                }
                step++;
            }
            for (var i = 0; i < recipes.Count; i++, step++)
            {
                cancellation.ThrowIfCancellationRequested();
                var recipe = recipes[i];
                progress?.Report((step, recipe.Name));
                var output = Path.Combine(dir, $"{Path.GetFileNameWithoutExtension(model)}-{recipe.Name}.gguf");
                var clock = Stopwatch.StartNew();
                var result = ModelQuantizer.Run(new QuantizeRequest(model, output, recipe)
                {
                    Threads = options.Threads,
                    ImatrixPath = options.ImatrixPath,
                    Rounding = options.Rounding,
                    Overwrite = options.KeepDirectory is not null,
                }, cancellation: cancellation);
                var elapsed = clock.Elapsed;
                IReadOnlyList<TensorError> errors;
                RecipeQuality? quality = null;
                using (var quantized = GgufFile.Open(output))
                {
                    errors = WeightError.Compare(original, quantized, importance, options.Threads);
                    if (baseLogits is not null)
                    {
                        using var reader = LogitsFileReader.Open(baseLogits);
                        var s = KlDivergence.Run(LlamaModel.Load(quantized), reader,
                            new KlDivergenceOptions { Threads = options.Threads, Bos = bos }, cancellation: cancellation);
                        quality = new RecipeQuality(s.PerplexityQ, s.MeanKld, KlDivergenceStatistics.Percentile(s.KldValues!, 0.99f), s.SameTopP);
                    }
                }
                outcomes.Add(new RecipeOutcome(recipe, result.OutputFileBytes, result.Output.BitsPerWeight,
                    WeightError.ModelMean(errors, e => e.RelativeRmse), WeightError.ModelMean(errors, e => e.WeightedRelativeRmse),
                    elapsed, options.KeepDirectory is null ? null : output, quality));
                if (options.KeepDirectory is null) File.Delete(output);
            }
            progress?.Report((step, ""));
        }
        finally
        {
            if (baseLogits is not null) File.Delete(baseLogits);
            if (options.KeepDirectory is null) Directory.Delete(dir, recursive: true);
        }
        return new RecipeEvaluationReport(outcomes, basePerplexity);
    }
}
