using System.Diagnostics;
using KQuant.Gguf;
using KQuant.Importance;
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
    string? KeptPath);

/// <summary>Quantizes a model with several recipes and measures each: the "which recipe should I use" table.</summary>
public static class RecipeEvaluation
{
    public sealed record Options
    {
        public int Threads { get; init; } = Environment.ProcessorCount;
        public string? ImatrixPath { get; init; }
        /// <summary>Keep the quantized files here; by default they go to a temporary folder and are deleted.</summary>
        public string? KeepDirectory { get; init; }
        public Quants.RoundingMode Rounding { get; init; } = Quants.RoundingMode.Reference;
    }

    public static IReadOnlyList<RecipeOutcome> Run(string model, IReadOnlyList<QuantRecipe> recipes, Options options,
        IProgress<(int Done, string Current)>? progress = null, CancellationToken cancellation = default)
    {
        var dir = options.KeepDirectory ?? Path.Combine(Path.GetTempPath(), $"kquant-evaluate-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        var importance = options.ImatrixPath is null ? null : ImportanceMatrix.Load(options.ImatrixPath);
        var outcomes = new List<RecipeOutcome>();
        try
        {
            using var original = GgufFile.Open(model);
            for (var i = 0; i < recipes.Count; i++)
            {
                cancellation.ThrowIfCancellationRequested();
                var recipe = recipes[i];
                progress?.Report((i, recipe.Name));
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
                using (var quantized = GgufFile.Open(output)) errors = WeightError.Compare(original, quantized, importance, options.Threads);
                outcomes.Add(new RecipeOutcome(recipe, result.OutputFileBytes, result.Output.BitsPerWeight,
                    WeightError.ModelMean(errors, e => e.RelativeRmse), WeightError.ModelMean(errors, e => e.WeightedRelativeRmse),
                    elapsed, options.KeepDirectory is null ? null : output));
                if (options.KeepDirectory is null) File.Delete(output);
            }
            progress?.Report((recipes.Count, ""));
        }
        finally
        {
            if (options.KeepDirectory is null) Directory.Delete(dir, recursive: true);
        }
        return outcomes;
    }
}
