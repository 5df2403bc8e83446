namespace KQuant.Cli.Ui;

/// <summary>Everything commands print goes through here, so a terminal gets tables and progress bars while pipes,
/// CI logs and tests get plain lines.</summary>
public interface IUi
{
    /// <summary>A heading line.</summary>
    void Heading(string text);

    /// <summary>A plain line of output (stdout).</summary>
    void Line(string text = "");

    /// <summary>Text written to stdout exactly as given (machine-readable output such as JSON).</summary>
    void Raw(string text);

    /// <summary>A warning (stderr).</summary>
    void Warning(string text);

    /// <summary>One line on stderr saying what went wrong; no stack trace.</summary>
    void Error(string text);

    /// <summary>A table; <paramref name="rightAligned"/> marks numeric columns.</summary>
    void Table(string? title, IReadOnlyList<string> columns, IEnumerable<IReadOnlyList<string>> rows, IReadOnlySet<int>? rightAligned = null);

    /// <summary>Runs <paramref name="work"/> with a progress reporter (a bar in a terminal, occasional lines otherwise).
    /// <paramref name="unit"/> says whether the amounts are bytes (shown as sizes) or plain counts.</summary>
    Task<T> WithProgressAsync<T>(string description, long total, Func<IProgressSink, Task<T>> work, ProgressUnit unit = ProgressUnit.Count);
}

/// <summary>Progress of a long job: how much is done, and what is being worked on now.</summary>
public interface IProgressSink
{
    /// <param name="total">Replaces the total given at the start, when it has become known more exactly.</param>
    void Report(long done, string? current = null, long? total = null);
}

public enum ProgressUnit
{
    Count,
    Bytes,
}
