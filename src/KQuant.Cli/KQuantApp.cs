using System.CommandLine;
using KQuant.Cli.Commands;
using KQuant.Cli.Ui;
using Spectre.Console;

namespace KQuant.Cli;

/// <summary>Builds the command tree. Commands are thin: they map options onto library calls.</summary>
public static class KQuantApp
{
    public static RootCommand BuildRoot(Func<IUi> ui)
    {
        var root = new RootCommand("KQuant: llama.cpp-compatible GGUF quantization, and what it costs in quality.")
        {
            InspectCommand.Create(ui),
            QuantizeCommand.Create(ui),
            ConvertCommand.Create(ui),
            EvaluateCommand.Create(ui),
            PlanCommand.Create(ui),
            PerplexityCommand.Create(ui),
            ImatrixCommand.Create(ui),
        };
        return root;
    }

    /// <summary>Tables and progress bars in a terminal; plain lines when stdout is redirected (pipes, CI, tests).</summary>
    public static IUi DefaultUi() =>
        Console.IsOutputRedirected
            ? new PlainUi(Console.Out, Console.Error)
            : new SpectreUi(AnsiConsole.Console, Console.Error);

    public static Task<int> RunAsync(string[] args)
    {
        IUi? ui = null;
        return InvokeAsync(BuildRoot(() => ui ??= DefaultUi()), args);
    }

    /// <summary>Parses and runs. A command line the parser rejects (unknown command or option, missing required
    /// option, a value of the wrong type) exits with <see cref="ExitCodes.Usage"/>, as the README documents, not
    /// System.CommandLine's generic 1.</summary>
    public static async Task<int> InvokeAsync(RootCommand root, string[] args, InvocationConfiguration? configuration = null)
    {
        var parsed = root.Parse(args);
        var code = await parsed.InvokeAsync(configuration);
        return parsed.Errors.Count > 0 && code == ExitCodes.Failure ? ExitCodes.Usage : code;
    }
}
