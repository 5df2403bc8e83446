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
        return BuildRoot(() => ui ??= DefaultUi()).Parse(args).InvokeAsync();
    }
}
