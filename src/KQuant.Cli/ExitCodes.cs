namespace KQuant.Cli;

/// <summary>Process exit codes, documented in the README. Scripts may rely on them.</summary>
public static class ExitCodes
{
    public const int Success = 0;
    /// <summary>An unexpected failure (a bug, or an I/O error not covered below).</summary>
    public const int Failure = 1;
    /// <summary>Bad command line: unknown option, wrong type name, missing argument.</summary>
    public const int Usage = 2;
    /// <summary>An input file is missing, unreadable or malformed.</summary>
    public const int BadInput = 3;
    /// <summary>The output cannot be written: it exists, the disk is full, or permission is denied.</summary>
    public const int BadOutput = 4;
    /// <summary>Interrupted (Ctrl-C); nothing partial is left behind.</summary>
    public const int Cancelled = 130;
}
