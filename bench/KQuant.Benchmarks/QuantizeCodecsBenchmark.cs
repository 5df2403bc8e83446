using System.Diagnostics;
using System.Text.Json;
using KQuant.Gguf;
using KQuant.Quants;

namespace KQuant.Benchmarks;

/// <summary>
/// `quantize-codecs`: our codecs against ggml_quantize_chunk and ggml's to_float, one thread, the same Gaussian rows
/// for both, with and without an importance vector. Each run times ggml and ours back to back (alternating which goes first) (so load from
/// other processes hits both alike); the table reports medians and ours/ggml ratios, and checks the bytes agree.
/// Times are wall clock and the thread's CPU time: on a shared machine the CPU-time ratio is the steadier one.
/// </summary>
internal static class QuantizeCodecsBenchmark
{
    /// <summary>Named sets of types; add a line per family.</summary>
    private static readonly Dictionary<string, GgmlType[]> TypeSets = new(StringComparer.OrdinalIgnoreCase)
    {
        ["k"] = [GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.Q8_K],
        ["legacy"] = [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
            GgmlType.Q8_0, GgmlType.IQ4_NL, GgmlType.IQ4_XS],
    };

    public static int Run(string[] args)
    {
        var rows = 1024;
        var rowLength = 4096;
        var runs = 5;
        var typeSpec = "k";
        string? output = null;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--rows": rows = int.Parse(args[++i]); break;
                case "--cols": rowLength = int.Parse(args[++i]); break;
                case "--runs": runs = int.Parse(args[++i]); break;
                case "--types": typeSpec = args[++i]; break;
                case "--out": output = args[++i]; break;
                default:
                    Console.Error.WriteLine($"unknown option {args[i]}");
                    Console.Error.WriteLine("usage: quantize-codecs [--types k|legacy|Q4_K,Q6_K,...] [--rows 1024] [--cols 4096] [--runs 5] [--out FILE.json]");
                    return 2;
            }
        }
        if (!GgmlNative.Available)
        {
            Console.Error.WriteLine($"no llama.cpp reference in {GgmlNative.LibraryDirectory}; run scripts/fetch-reference.sh");
            return 1;
        }
        var types = ParseTypes(typeSpec);
        output ??= Path.Combine("bench", "results", $"codecs-{typeSpec.ToLowerInvariant().Replace(',', '-')}.json");

        var data = GaussianRows(rows * rowLength, seed: 42);
        var importance = ImportanceVector(rowLength, seed: 43);
        Console.WriteLine($"quantize-codecs: {rows} rows x {rowLength} Gaussian floats, one thread, median of {runs} runs after >= 1 s of warmup");
        Console.WriteLine();
        Console.WriteLine($"{"",-15} {"quantize: wall ms",-19} {"ratio",14}   {"",-9} | {"dequantize: wall ms",-21} {"ratio",12}");
        Console.WriteLine($"{"type",-7} {"imatrix",-7} {"ggml",9} {"ours",9} {"wall",6} {"cpu",6}   {"bytes",-9} | {"ggml",9} {"ours",9} {"wall",6} {"cpu",6}");

        var results = new List<Result>();
        foreach (var type in types)
        {
            var codec = RowCodecs.Get(type);
            foreach (var withImportance in codec.UsesImportance ? new[] { false, true } : [false])
            {
                var r = Measure(type, data, rowLength, withImportance ? importance : [], runs);
                results.Add(r);
                Console.WriteLine($"{r.Type,-7} {(withImportance ? "yes" : "no"),-7} {r.GgmlQuantize.WallMs,9:F1} {r.OursQuantize.WallMs,9:F1} " +
                                  $"{r.QuantizeWallRatio,6:F2} {r.QuantizeCpuRatio,6:F2}   {(r.Identical ? "identical" : "DIFFER"),-9} | " +
                                  $"{r.GgmlDequantize.WallMs,9:F2} {r.OursDequantize.WallMs,9:F2} {r.DequantizeWallRatio,6:F2} {r.DequantizeCpuRatio,6:F2}");
            }
        }

        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
        var report = new Report(DateTime.UtcNow.ToString("O"), Environment.ProcessorCount,
            System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString(),
            System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated, rows, rowLength, runs, "gaussian", results);
        File.WriteAllText(output, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine();
        Console.WriteLine($"wrote {output}");
        return results.All(r => r.Identical) ? 0 : 3;
    }

    private static Result Measure(GgmlType type, float[] data, int rowLength, float[] importance, int runs)
    {
        var traits = GgmlTypeTraits.Of(type);
        var expected = new byte[traits.RowBytes(rowLength) * (data.Length / rowLength)];
        var actual = new byte[expected.Length];
        var floatsGgml = new float[data.Length];
        var floatsOurs = new float[data.Length];
        GgmlNative.Prepare(type);

        var ggmlQuantize = new List<Timing>();
        var oursQuantize = new List<Timing>();
        var ggmlDequantize = new List<Timing>();
        var oursDequantize = new List<Timing>();
        // Warm up for at least a second and three rounds: both sides fault in their buffers on first touch, and the
        // caches and branch predictors settle (tiered compilation is off in this project, so the code is final).
        var warmup = Stopwatch.StartNew();
        for (var round = 0; round < 3 || warmup.ElapsedMilliseconds < 1000; round++)
        {
            GgmlNative.Quantize(type, data, expected, rowLength, importance);
            RowQuantizer.Quantize(type, data, actual, rowLength, importance, threads: 1);
            GgmlNative.Dequantize(type, expected, floatsGgml);
            RowQuantizer.Dequantize(type, expected, floatsOurs);
        }
        // Cache state is worth more than the difference being measured for memory-bound kernels (F32, BF16,
        // dequantization), so both sides get the same: the order alternates from run to run, and each side dequantizes
        // its own output (so both quantized buffers are read back alike; the bytes are compared anyway).
        for (var run = 0; run < runs; run++)
        {
            Pair(run, ggmlQuantize, () => GgmlNative.Quantize(type, data, expected, rowLength, importance),
                oursQuantize, () => RowQuantizer.Quantize(type, data, actual, rowLength, importance, threads: 1));
            Pair(run, ggmlDequantize, () => GgmlNative.Dequantize(type, expected, floatsGgml),
                oursDequantize, () => RowQuantizer.Dequantize(type, actual, floatsOurs));
        }
        var identical = expected.AsSpan().SequenceEqual(actual)
                        && System.Runtime.InteropServices.MemoryMarshal.AsBytes(floatsGgml.AsSpan())
                            .SequenceEqual(System.Runtime.InteropServices.MemoryMarshal.AsBytes(floatsOurs.AsSpan()));
        return new Result(traits.Name, importance.Length > 0, identical,
            Median(ggmlQuantize), Median(oursQuantize), Median(ggmlDequantize), Median(oursDequantize));
    }

    private static void Pair(int run, List<Timing> ggmlTimes, Action ggml, List<Timing> oursTimes, Action ours)
    {
        if (run % 2 == 0)
        {
            ggmlTimes.Add(Time(ggml));
            oursTimes.Add(Time(ours));
        }
        else
        {
            oursTimes.Add(Time(ours));
            ggmlTimes.Add(Time(ggml));
        }
    }

    /// <summary>Wall-clock and calling-thread CPU milliseconds of one call.</summary>
    private static Timing Time(Action action)
    {
        var cpu = ThreadClock.Available ? ThreadClock.Milliseconds() : double.NaN;
        var start = Stopwatch.GetTimestamp();
        action();
        var wall = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        return new Timing(wall, ThreadClock.Available ? ThreadClock.Milliseconds() - cpu : double.NaN);
    }

    private static Timing Median(List<Timing> timings) =>
        new(TimedProcess.Median(timings.Select(t => t.WallMs)), TimedProcess.Median(timings.Select(t => t.CpuMs)));

    private static GgmlType[] ParseTypes(string spec)
    {
        if (TypeSets.TryGetValue(spec, out var set)) return set;
        return spec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(name => GgmlTypeTraits.TryParse(name, out var t) ? t : throw new ArgumentException($"unknown type {name}"))
            .ToArray();
    }

    private static float[] GaussianRows(int count, int seed)
    {
        var rng = new Random(seed);
        var data = new float[count];
        for (var i = 0; i < count; i++)
        {
            var u1 = 1.0 - rng.NextDouble();
            data[i] = (float)(Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        }
        return data;
    }

    /// <summary>Positive values spread over orders of magnitude, like an imatrix's column means of x².</summary>
    private static float[] ImportanceVector(int count, int seed)
    {
        var rng = new Random(seed);
        var w = new float[count];
        for (var i = 0; i < count; i++) w[i] = (float)Math.Exp(1.5 * (rng.NextDouble() * 2 - 1)) * 0.01f;
        return w;
    }

    private sealed record Timing(double WallMs, double CpuMs);

    private sealed record Result(string Type, bool Importance, bool Identical, Timing GgmlQuantize, Timing OursQuantize,
        Timing GgmlDequantize, Timing OursDequantize)
    {
        public double QuantizeWallRatio => OursQuantize.WallMs / GgmlQuantize.WallMs;
        public double QuantizeCpuRatio => OursQuantize.CpuMs / GgmlQuantize.CpuMs;
        public double DequantizeWallRatio => OursDequantize.WallMs / GgmlDequantize.WallMs;
        public double DequantizeCpuRatio => OursDequantize.CpuMs / GgmlDequantize.CpuMs;
    }

    private sealed record Report(string WhenUtc, int ProcessorCount, string Architecture, bool Vector256, int Rows, int RowLength,
        int Runs, string Distribution, List<Result> Results);
}
