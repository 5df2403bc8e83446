using System.CommandLine;
using KQuant.Cli.Ui;
using KQuant.Planning;
using KQuant.Recipes;

namespace KQuant.Cli.Commands;

/// <summary><c>kquant plan MODEL [--memory SIZE] [--max-size SIZE] [-c N]</c>: what each recipe's file weighs, what running it needs, what fits.</summary>
public static class PlanCommand
{
    public static Command Create(Func<IUi> ui)
    {
        var model = new Argument<FileInfo>("model") { Description = "GGUF model (any type; sizes are computed for each recipe from it)" };
        var memory = new Option<string?>("--memory") { Description = "Memory budget, e.g. 8G (default: this machine's available memory)" };
        var maxSize = new Option<string?>("--max-size") { Description = "Largest acceptable file, e.g. 4G" };
        var context = new Option<int>("--context", "-c") { Description = "Context length for the KV cache", DefaultValueFactory = _ => 4096 };
        var types = new Option<string[]>("--types") { Description = "Recipes to size (default: all)", AllowMultipleArgumentsPerToken = true };
        var command = new Command("plan", "Size every recipe for a model and pick the best one that fits a memory or file-size budget") { model, memory, maxSize, context, types };
        command.SetAction(result => CliErrors.Run(ui(), () =>
        {
            var input = result.GetValue(model)!;
            if (!input.Exists) throw new FileNotFoundException($"model not found: {input.FullName}");
            var ctx = result.GetValue(context);
            if (ctx < 1) throw new UsageException($"--context must be positive, got {ctx}");
            long? Size(string? text, string option)
            {
                if (text is null) return null;
                try { return MemoryPlanner.ParseSize(text); }
                catch (FormatException e) { throw new UsageException($"{option}: {e.Message}"); }
            }
            var memoryBudget = Size(result.GetValue(memory), "--memory") ?? MemoryPlanner.AvailableMemory();
            var fileBudget = Size(result.GetValue(maxSize), "--max-size");
            var names = result.GetValue(types) is { Length: > 0 } given
                ? given.SelectMany(t => t.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                : QuantRecipe.All.Where(r => !r.Description.StartsWith("alias", StringComparison.Ordinal)).Select(r => r.Name);
            var recipes = names.Select(n => QuantRecipe.TryParse(n, out var r) ? r : throw new UsageException($"unknown quantization type '{n}'. {QuantizeCommand.RecipeList()}")).ToList();

            var footprints = MemoryPlanner.Plan(input.FullName, recipes, ctx).OrderBy(f => f.FileBytes).ToList();
            var console = ui();
            console.Table($"{input.Name}, context {ctx}{(memoryBudget is { } m ? $", memory budget {Units.Bytes(m)}" : "")}{(fileBudget is { } f ? $", max file {Units.Bytes(f)}" : "")}",
                ["type", "file", "bpw", "KV cache", "compute (est.)", "total", "fits"],
                footprints.Select(f => (IReadOnlyList<string>)[
                    f.Recipe.Name, Units.Bytes(f.FileBytes), f.BitsPerWeight.ToString("0.00"), Units.Bytes(f.KvCacheBytes),
                    Units.Bytes(f.ComputeBytes), Units.Bytes(f.TotalBytes),
                    (memoryBudget is null || f.TotalBytes <= memoryBudget) && (fileBudget is null || f.FileBytes <= fileBudget) ? "yes" : "no"]),
                new HashSet<int> { 1, 2, 3, 4, 5 });
            var best = MemoryPlanner.Best(footprints, memoryBudget, fileBudget);
            console.Line(best is null
                ? "no recipe fits; lower the context length or raise the budget"
                : $"best fit: {best.Recipe.Name} ({Units.Bytes(best.FileBytes)} file, {Units.Bytes(best.TotalBytes)} to run with a {ctx}-token context)");
            return best is null ? ExitCodes.Failure : ExitCodes.Success;
        }));
        return command;
    }
}
