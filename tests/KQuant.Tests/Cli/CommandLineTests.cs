using KQuant.Cli;

namespace KQuant.Tests.Cli;

/// <summary>What the parser itself rejects exits with the documented usage code, for every command.</summary>
public sealed class CommandLineTests
{
    [Theory]
    [InlineData("no-such-command")]
    [InlineData("perplexity", "-f", "text.txt")]                      // required -m missing
    [InlineData("perplexity", "-m", "m.gguf", "-c", "many")]          // not a number
    [InlineData("imatrix", "-m", "m.gguf", "-f", "t.txt", "--chunks", "x")]
    [InlineData("quantize")]                                          // arguments missing
    [InlineData("inspect", "a.gguf", "--no-such-option")]
    [InlineData("evaluate", "m.gguf", "--ctx-size", "")]
    public void ParserErrorsAreUsageErrors(params string[] args)
    {
        var r = CliRunner.Run(args);
        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        Assert.NotEqual("", r.Error.Trim());
    }

    [Fact]
    public void HelpIsSuccess() => Assert.Equal(ExitCodes.Success, CliRunner.Run("quantize", "--help").ExitCode);
}
