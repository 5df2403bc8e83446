using System.CommandLine;
using KQuant.Cli.Ui;
using KQuant.Evaluation;
using KQuant.Recipes;

namespace KQuant.Cli.Commands;

/// <summary><c>kquant evaluate MODEL [--types ...] [--text FILE]</c>: quantize with several recipes and print what each
/// costs: size, weight error and, on a text, perplexity and KL divergence against the original.</summary>
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
        var text = new Option<FileInfo?>("--text", "-f") { Description = "Also run the models on this text: perplexity, and KL divergence and same-top-token rate against the original" };
        var context = new Option<int>("--ctx-size", "-c") { Description = "Tokens per chunk of the text", DefaultValueFactory = _ => 512 };
        var chunks = new Option<int?>("--chunks") { Description = "Score only the first N chunks of the text (default: all)" };
        var command = new Command("evaluate", "Quantize a model with several recipes and compare size and accuracy")
        {
            model, types, imatrix, keep, threads, rounding, text, context, chunks,
        };
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
                TextPath = result.GetValue(text)?.FullName,
                ContextSize = result.GetValue(context),
                Chunks = result.GetValue(chunks),
            };
            if (result.GetValue(text) is { Exists: false } missing) throw new FileNotFoundException($"text not found: {missing.FullName}");
            if (options.ContextSize < 4) throw new UsageException($"--ctx-size must be at least 4, not {options.ContextSize}");
            if (options.Chunks is < 1) throw new UsageException($"--chunks must be positive, not {options.Chunks}");
            var console = ui();
            var withText = options.TextPath is not null;
            var steps = recipes.Count + (withText ? 1 : 0);
            var report = await console.WithProgressAsync($"evaluating {recipes.Count} recipes", steps, sink =>
                Task.Run(() => RecipeEvaluation.Run(input.FullName, recipes, options, new Reporter(sink), cancellation), cancellation));
            var weighted = options.ImatrixPath is not null;
            var title = $"{input.Name}: {Units.Bytes(input.Length)}, {QuantizeCommand.RoundingName(options.Rounding)} rounding";
            if (report.BasePerplexity is { } b)
                title += $"; on {Path.GetFileName(options.TextPath)} ({b.Chunks} chunks of {b.ContextSize}) PPL {b.Value:0.0000} ± {b.Uncertainty:0.0000}";
            string[] columns = ["type", "size", "bpw", "weight error (rel. RMSE)", .. weighted ? new[] { "importance-weighted" } : [],
                .. withText ? new[] { "PPL", "mean KLD", "KLD 99%", "same top" } : [], "quantize time"];
            console.Table(title, columns,
                report.Outcomes.Select(o => (IReadOnlyList<string>)[
                    o.Recipe.Name, Units.Bytes(o.FileBytes), o.BitsPerWeight.ToString("0.00"), $"{o.MeanRelativeRmse * 100:0.00}%",
                    .. weighted ? new[] { $"{o.MeanWeightedRelativeRmse * 100:0.00}%" } : [],
                    .. o.Quality is { } q
                        ? new[] { $"{q.Perplexity.Value:0.0000}", $"{q.MeanKld.Value:0.000000} ± {q.MeanKld.Uncertainty:0.000000}", $"{q.Kld99:0.0000}", $"{q.SameTopP.Value * 100:0.00}%" }
                        : [],
                    Progress.FormatDuration(o.QuantizeTime)]),
                new HashSet<int>(Enumerable.Range(1, columns.Length - 1)));
            return ExitCodes.Success;
        }));
        return command;
    }

    private sealed class Reporter(IProgressSink sink) : IProgress<(int Done, string Current)>
    {
        public void Report((int Done, string Current) value) => sink.Report(value.Done, value.Current);
    }
}
