using System.Diagnostics;

namespace KQuant.Cli.Ui;

/// <summary>Plain text for pipes, logs and tests: aligned columns, progress as occasional lines with an ETA.</summary>
public sealed class PlainUi(TextWriter output, TextWriter error) : IUi
{
    public void Heading(string text) => output.WriteLine(text);

    public void Line(string text = "") => output.WriteLine(text);

    public void Raw(string text) => output.Write(text);

    public void Warning(string text) => error.WriteLine($"warning: {text}");

    public void Error(string text) => error.WriteLine($"error: {text}");

    public void Table(string? title, IReadOnlyList<string> columns, IEnumerable<IReadOnlyList<string>> rows, IReadOnlySet<int>? rightAligned = null)
    {
        var all = rows.ToList();
        var widths = columns.Select((c, i) => Math.Max(c.Length, all.Count == 0 ? 0 : all.Max(r => r[i].Length))).ToArray();
        if (title is not null) output.WriteLine(title);
        string Format(IReadOnlyList<string> cells) => string.Join("  ", cells.Select((cell, i) =>
            rightAligned?.Contains(i) == true ? cell.PadLeft(widths[i]) : cell.PadRight(widths[i]))).TrimEnd();
        output.WriteLine(Format(columns));
        output.WriteLine(string.Join("  ", widths.Select(w => new string('-', w))));
        foreach (var row in all) output.WriteLine(Format(row));
    }

    public async Task<T> WithProgressAsync<T>(string description, long total, Func<IProgressSink, Task<T>> work, ProgressUnit unit = ProgressUnit.Count)
    {
        var sink = new LineProgress(error, description, total, unit);
        var result = await work(sink);
        sink.Finish();
        return result;
    }

    private sealed class LineProgress(TextWriter writer, string description, long total, ProgressUnit unit) : IProgressSink
    {
        private long _total = total;
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private readonly object _gate = new();
        private TimeSpan _lastPrinted = TimeSpan.FromSeconds(-10);

        public void Report(long done, string? current = null, long? total = null)
        {
            lock (_gate)
            {
                _total = total ?? _total;
                // A line every few seconds: enough to see it move in a CI log, not enough to flood it.
                if (_clock.Elapsed - _lastPrinted < TimeSpan.FromSeconds(5)) return;
                _lastPrinted = _clock.Elapsed;
                writer.WriteLine($"{description}: {Progress.Describe(done, _total, _clock.Elapsed, unit)}{(current is null ? "" : $"  {current}")}");
            }
        }

        public void Finish()
        {
            lock (_gate) writer.WriteLine($"{description}: done in {Progress.FormatDuration(_clock.Elapsed)}");
        }
    }
}

/// <summary>Shared wording of progress: percentage and ETA.</summary>
public static class Progress
{
    public static string Describe(long done, long total, TimeSpan elapsed, ProgressUnit unit = ProgressUnit.Count)
    {
        string Amount(long n) => unit == ProgressUnit.Bytes ? Units.Bytes(n) : n.ToString();
        if (total <= 0) return Amount(done);
        var fraction = Math.Clamp((double)done / total, 0, 1);
        var eta = fraction > 0.001 ? FormatDuration(elapsed * ((1 - fraction) / fraction)) : "?";
        return $"{fraction * 100,5:0.0}% ({Amount(done)} of {Amount(total)})  ETA {eta}";
    }

    public static string FormatDuration(TimeSpan t) =>
        t.TotalHours >= 1 ? $"{(int)t.TotalHours}h{t.Minutes:00}m" : t.TotalMinutes >= 1 ? $"{(int)t.TotalMinutes}m{t.Seconds:00}s" : $"{t.TotalSeconds:0.0}s";
}
