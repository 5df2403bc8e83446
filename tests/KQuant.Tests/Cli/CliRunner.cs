using KQuant.Cli;
using KQuant.Cli.Ui;

namespace KQuant.Tests.Cli;

/// <summary>Runs the kquant command tree in-process with plain output captured.</summary>
public static class CliRunner
{
    public sealed record Result(int ExitCode, string Out, string Error);

    public static Result Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var ui = new PlainUi(output, error);
        var root = KQuantApp.BuildRoot(() => ui);
        var config = new System.CommandLine.InvocationConfiguration { Output = output, Error = error };
        var code = KQuantApp.InvokeAsync(root, args, config).GetAwaiter().GetResult();
        return new Result(code, output.ToString(), error.ToString());
    }
}
