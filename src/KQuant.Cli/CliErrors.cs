using KQuant.Cli.Ui;
using KQuant.Conversion;
using KQuant.Gguf;

namespace KQuant.Cli;

/// <summary>Turns the failures a user can cause into one line on stderr and an exit code; never a stack trace.</summary>
public static class CliErrors
{
    public static int Run(IUi ui, Func<int> action)
    {
        try
        {
            return action();
        }
        catch (Exception e) when (Classify(e) is { } code)
        {
            ui.Error(e.Message);
            return code;
        }
    }

    public static async Task<int> RunAsync(IUi ui, Func<Task<int>> action)
    {
        try
        {
            return await action();
        }
        catch (Exception e) when (Classify(e) is { } code)
        {
            ui.Error(e is OperationCanceledException ? "cancelled; no output was written" : e.Message);
            return code;
        }
    }

    /// <summary>The exit code for an expected failure, or null for a bug (which then surfaces with its trace).</summary>
    public static int? Classify(Exception e) => e switch
    {
        OperationCanceledException => ExitCodes.Cancelled,
        GgufFormatException or SafetensorsFormatException or FileNotFoundException or DirectoryNotFoundException or InvalidDataException => ExitCodes.BadInput,
        UnauthorizedAccessException => ExitCodes.BadInput,
        OutputRefusedException => ExitCodes.BadOutput,
        KQuant.Model.ModelNotSupportedException or KQuant.Model.Tokenizers.TokenizerNotSupportedException => ExitCodes.BadInput,
        IOException io when IsDiskFull(io) => ExitCodes.BadOutput,
        IOException => ExitCodes.Failure,
        UsageException => ExitCodes.Usage,
        NotSupportedException => ExitCodes.Failure,
        _ => null,
    };

    // ENOSPC (28) and EDQUOT (122) on Linux; ERROR_DISK_FULL / ERROR_HANDLE_DISK_FULL on Windows.
    private static bool IsDiskFull(IOException e) => (e.HResult & 0xFFFF) is 28 or 122 or 0x70 or 0x27;
}

/// <summary>A command-line mistake the parser cannot catch (e.g. a type name that does not exist).</summary>
public sealed class UsageException(string message) : Exception(message);
