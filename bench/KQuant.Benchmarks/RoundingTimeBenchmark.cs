using System.Globalization;
using System.Text.Json;

namespace KQuant.Benchmarks;

/// <summary>
/// What optimal rounding costs a user (issue 6: at most 1.5× the reference mode's quantization time): `kquant quantize`
/// end to end (read, quantize, write) with --rounding reference and --rounding optimal, on the same model, imatrix and
/// threads, alternating which goes first; median wall time of each and their ratio. With --llama-quantize, llama.cpp's
/// own tool runs in the same rotation, so optimal is also reported against the speed users compare with.
/// Usage: rounding-time --model M.gguf --kquant KQuant.Cli.dll [--imatrix I.gguf] [--types Q4_K_M,...] [--threads N]
/// [--repeats N] [--work DIR] [--llama-quantize PATH] [--out bench/results/rounding-time.json]
/// </summary>
public static class RoundingTimeBenchmark
{
    public static int Run(string[] args)
    {
        string? model = null, kquant = null, imatrix = null;
        var types = new List<string> { "Q2_K", "Q3_K_M", "Q4_K_M", "IQ4_XS" };
        var threads = Environment.ProcessorCount;
        var repeats = 3;
        var work = Path.GetTempPath();
        string? llamaQuantize = null;
        var output = Path.Combine("bench", "results", "rounding-time.json");
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--model": model = args[++i]; break;
                case "--kquant": kquant = args[++i]; break;
                case "--imatrix": imatrix = args[++i]; break;
                case "--types": types = args[++i].Split(',').ToList(); break;
                case "--threads": threads = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--repeats": repeats = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--work": work = args[++i]; break;
                case "--llama-quantize": llamaQuantize = args[++i]; break;
                case "--out": output = args[++i]; break;
                default:
                    Console.Error.WriteLine($"unknown option {args[i]}");
                    return 2;
            }
        }
        if (model is null || kquant is null)
        {
            Console.Error.WriteLine("rounding-time needs --model and --kquant");
            return 2;
        }
        Directory.CreateDirectory(work);

        var results = new List<Result>();
        Console.WriteLine($"{"recipe",-8} {"imatrix",-8} {"reference s",12} {"optimal s",10} {"ratio",7}{(llamaQuantize is null ? "" : $" {"llama s",8} {"opt/llama",9}")}");
        foreach (var type in types)
        {
            foreach (var withImatrix in imatrix is null ? [false] : new[] { false, true })
            {
                var times = new Dictionary<string, List<double>> { ["reference"] = [], ["optimal"] = [], ["llama"] = [] };
                for (var r = 0; r < repeats; r++)
                {
                    if (llamaQuantize is not null)
                    {
                        var llamaOut = Path.Combine(work, "llama-rounding-time.gguf");
                        string[] llamaArguments = [.. withImatrix ? new[] { "--imatrix", imatrix! } : [], model, llamaOut, type,
                            threads.ToString(CultureInfo.InvariantCulture)];
                        times["llama"].Add(TimedProcess.Run(llamaQuantize, llamaArguments).Seconds);
                        File.Delete(llamaOut);
                    }
                    foreach (var rounding in r % 2 == 0 ? new[] { "reference", "optimal" } : ["optimal", "reference"])
                    {
                        var outPath = Path.Combine(work, $"kquant-rounding-time-{rounding}.gguf");
                        string[] arguments = [kquant, "quantize", .. withImatrix ? new[] { "--imatrix", imatrix! } : [], model, outPath, type,
                            "--threads", threads.ToString(CultureInfo.InvariantCulture), "--rounding", rounding];
                        times[rounding].Add(TimedProcess.Run("dotnet", arguments).Seconds);
                        File.Delete(outPath);
                    }
                }
                var reference = TimedProcess.Median(times["reference"]);
                var optimal = TimedProcess.Median(times["optimal"]);
                double? llama = llamaQuantize is null ? null : TimedProcess.Median(times["llama"]);
                var result = new Result(type, withImatrix, reference, optimal, optimal / reference, times["reference"], times["optimal"],
                    llama, optimal / llama, llamaQuantize is null ? null : times["llama"]);
                results.Add(result);
                Console.WriteLine($"{type,-8} {(withImatrix ? "yes" : "no"),-8} {reference,12:F2} {optimal,10:F2} {result.Ratio,7:F2}" +
                    (llama is { } l ? $" {l,8:F2} {optimal / l,9:F2}" : ""));
            }
        }

        var report = new
        {
            WhenUtc = DateTime.UtcNow,
            Model = Path.GetFileName(model),
            ModelBytes = new FileInfo(model).Length,
            Imatrix = imatrix is null ? null : Path.GetFileName(imatrix),
            Threads = threads,
            Repeats = repeats,
            Metric = "wall time of `kquant quantize` (read, quantize, write) per rounding mode, median of the repeats, the two modes alternating first; ratio = optimal / reference; LlamaSeconds: llama-quantize on the same model, recipe, imatrix and threads in the same rotation (OptimalOverLlama = optimal / llama-quantize)",
            LlamaQuantize = llamaQuantize is null ? null : "llama-quantize of llama.cpp v0.5.0 (npm bundle, built by scripts/build-reference-tools.sh --native)",
            Results = results,
        };
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
        File.WriteAllText(output, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {output}");
        return 0;
    }

    private sealed record Result(string Recipe, bool Imatrix, double ReferenceSeconds, double OptimalSeconds, double Ratio,
        IReadOnlyList<double> ReferenceRuns, IReadOnlyList<double> OptimalRuns, double? LlamaSeconds, double? OptimalOverLlama,
        IReadOnlyList<double>? LlamaRuns);
}
