using System.Diagnostics;
using System.Text.Json;
using KQuant.Gguf;
using KQuant.Quants;

namespace KQuant.Benchmarks;

/// <summary>`row-parallel`: how RowQuantizer.Quantize scales with threads: the same rows quantized with 1 and with N
/// threads, interleaved, median wall times and the speed-up per type. Writes bench/results/row-parallel.json.
/// Needs otherwise idle cores to mean anything: on a busy machine the other load takes the second core.</summary>
internal static class RowParallelBenchmark
{
    public static int Run(string[] args)
    {
        var rows = 1024;
        var rowLength = 4096;
        var runs = 5;
        var threads = Environment.ProcessorCount;
        var output = Path.Combine("bench", "results", "row-parallel.json");
        GgmlType[] types = [GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_XS, GgmlType.Q8_0, GgmlType.Q2_K];
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--rows": rows = int.Parse(args[++i]); break;
                case "--runs": runs = int.Parse(args[++i]); break;
                case "--threads": threads = int.Parse(args[++i]); break;
                case "--out": output = args[++i]; break;
                default:
                    Console.Error.WriteLine("usage: row-parallel [--rows 1024] [--runs 5] [--threads N] [--out FILE.json]");
                    return 2;
            }
        }
        var rng = new Random(42);
        var data = new float[rows * rowLength];
        for (var i = 0; i < data.Length; i++) data[i] = (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        var results = new List<object>();
        Console.WriteLine($"row-parallel: {rows} x {rowLength} Gaussian floats, 1 vs {threads} threads, median of {runs}");
        Console.WriteLine($"{"type",-8} {"1 thread ms",12} {$"{threads} threads ms",13} {"speed-up",9}");
        foreach (var type in types)
        {
            var dst = new byte[GgmlTypeTraits.Of(type).RowBytes(rowLength) * rows];
            RowQuantizer.Quantize(type, data, dst, rowLength, threads: threads); // warm up both paths
            RowQuantizer.Quantize(type, data, dst, rowLength, threads: 1);
            var one = new List<double>();
            var many = new List<double>();
            for (var run = 0; run < runs; run++)
            {
                one.Add(Time(() => RowQuantizer.Quantize(type, data, dst, rowLength, threads: 1)));
                many.Add(Time(() => RowQuantizer.Quantize(type, data, dst, rowLength, threads: threads)));
            }
            var m1 = TimedProcess.Median(one);
            var mn = TimedProcess.Median(many);
            Console.WriteLine($"{GgmlTypeTraits.Of(type).Name,-8} {m1,12:0.0} {mn,13:0.0} {m1 / mn,9:0.00}");
            results.Add(new { type = GgmlTypeTraits.Of(type).Name, one_thread_ms = m1, many_threads_ms = mn, speedup = Math.Round(m1 / mn, 3) });
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
        var loadavg = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "";
        File.WriteAllText(output, JsonSerializer.Serialize(new { benchmark = "row-parallel", date = DateTime.UtcNow, threads, rows, rowLength, load_average_at_end = loadavg, results }, new JsonSerializerOptions { WriteIndented = true }) + "\n");
        Console.Error.WriteLine($"wrote {output}");
        return 0;
    }

    private static double Time(Action action)
    {
        var clock = Stopwatch.StartNew();
        action();
        return clock.Elapsed.TotalMilliseconds;
    }
}
