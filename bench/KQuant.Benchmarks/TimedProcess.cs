using System.Diagnostics;
using System.Globalization;

namespace KQuant.Benchmarks;

/// <summary>One command's run: wall time, peak resident memory and everything it printed.</summary>
internal sealed record TimedRun(double Seconds, long PeakRssBytes, string Output);

/// <summary>Runs the command-line tools the end-to-end benchmarks compare, under GNU time.</summary>
internal static class TimedProcess
{
    /// <summary>Runs <paramref name="program"/> under /usr/bin/time for its wall time and peak RSS; a non-zero exit
    /// throws with the end of its output.</summary>
    public static TimedRun Run(string program, IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo("/usr/bin/time") { RedirectStandardError = true, RedirectStandardOutput = true };
        start.ArgumentList.Add("-f");
        start.ArgumentList.Add("KQBENCH %e %M");
        start.ArgumentList.Add(program);
        foreach (var a in arguments) start.ArgumentList.Add(a);
        start.Environment["NO_COLOR"] = "1";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        var output = stdout.Result + "\n" + stderr;
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{program} {string.Join(' ', start.ArgumentList.Skip(3))} failed ({process.ExitCode}):\n{string.Join('\n', output.Split('\n').TakeLast(15))}");
        var line = stderr.Split('\n').LastOrDefault(l => l.StartsWith("KQBENCH ", StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"{program} printed no timing:\n{stderr}");
        var parts = line.Split(' ');
        return new TimedRun(double.Parse(parts[1], CultureInfo.InvariantCulture), long.Parse(parts[2], CultureInfo.InvariantCulture) * 1024, output);
    }

    public static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToArray();
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }
}
