using System.CommandLine;
using KQuant.Cli.Ui;
using KQuant.Evaluation;
using KQuant.Recipes;

namespace KQuant.Cli.Commands;

/// <summary><c>kquant evaluate MODEL [--types ...]</c>: quantize with several recipes and print what each costs.</summary>
public static class EvaluateCommand
{
    public static readonly string[] DefaultTypes = ["Q2_K", "Q3_K_M", "Q4_K_M", "IQ4_XS", "Q5_K_M", "Q6_K", "Q8_0"];

    public static Command Create(Func<IUi> ui)
    {
        var model = new Argument<FileInfo>("model") { Description = "F32/F16/BF16 GGUF model" };
        var types = new Option<string[]>("--types") { Description = $"Recipes to compare (default: {string.Join(",", DefaultTypes)})", AllowMultipleArgumentsPerToken = true };
        var imatrix = new Option<FileInfo?>("--imatrix") { Description = "Importance matrix for quantizing and for the weighted error" };
        var keep = new Option<DirectoryInfo?>("--keep") { Description = "Keep the quantized files in this folder" };
        var threads = new Option<int?>("--threads", "-t") { Description = "Worker threads (default: all cores)" };
        var rounding = QuantizeCommand.RoundingOption();
        var command = new Command("evaluate", "Quantize a model with several recipes and compare size and accuracy") { model, types, imatrix, keep, threads, rounding };
        command.SetAction((result, cancellation) => CliErrors.RunAsync(ui(), async () =>
        {
            var input = result.GetValue(model)!;
            if (!input.Exists) throw new FileNotFoundException($"model not found: {input.FullName}");
            var names = (result.GetValue(types) is { Length: > 0 } given ? given : DefaultTypes)
                .SelectMany(t => t.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToList();
            var recipes = names.Select(n => QuantRecipe.TryParse(n, out var r) ? r : throw new UsageException($"unknown quantization type '{n}'. {QuantizeCommand.RecipeList()}")).ToList();
            var options = new RecipeEvaluation.Options
            {
                Threads = result.GetValue(threads) ?? Environment.ProcessorCount,
                ImatrixPath = result.GetValue(imatrix)?.FullName,
                KeepDirectory = result.GetValue(keep)?.FullName,
                Rounding = result.GetValue(rounding),
            };
            var console = ui();
            var outcomes = await console.WithProgressAsync($"evaluating {recipes.Count} recipes", recipes.Count, sink =>
                Task.Run(() => RecipeEvaluation.Run(input.FullName, recipes, options, new Reporter(sink), cancellation), cancellation));
            var weighted = options.ImatrixPath is not null;
            console.Table($"{input.Name}: {Units.Bytes(input.Length)}",
                ["type", "size", "bpw", "weight error (rel. RMSE)", .. weighted ? new[] { "importance-weighted" } : [], "quantize time"],
                outcomes.Select(o => (IReadOnlyList<string>)[
                    o.Recipe.Name, Units.Bytes(o.FileBytes), o.BitsPerWeight.ToString("0.00"), $"{o.MeanRelativeRmse * 100:0.00}%",
                    .. weighted ? new[] { $"{o.MeanWeightedRelativeRmse * 100:0.00}%" } : [], Progress.FormatDuration(o.QuantizeTime)]),
                new HashSet<int>(Enumerable.Range(1, weighted ? 5 : 4)));
            return ExitCodes.Success;
        }));
        return command;
    }

    private sealed class Reporter(IProgressSink sink) : IProgress<(int Done, string Current)>
    {
        public void Report((int Done, string Current) value) => sink.Report(value.Done, value.Current);
    }
}
