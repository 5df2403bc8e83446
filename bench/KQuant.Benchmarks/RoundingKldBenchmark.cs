using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using KQuant.Evaluation;
using KQuant.Gguf;
using KQuant.Importance;
using KQuant.Model;
using KQuant.Model.Tokenizers;
using KQuant.Quantization;
using KQuant.Quants;
using KQuant.Recipes;

namespace KQuant.Benchmarks;

/// <summary>
/// Reference vs optimal rounding where it counts (issue 6): for each model and llama.cpp recipe (the normal mixture, not
/// pure), with and without an importance matrix, KQuant's own forward pass measures the whole-model mean KL divergence
/// against the F16 model and the perplexity on the model's evaluation text (c = 512, every chunk), next to the weighted
/// weight RMSE and the whole-model quantization wall time (ModelQuantizer, 1 thread, the two modes alternating first).
/// The imatrix is llama.cpp's own (llama-imatrix on the calibration text), made when the native tool is present, or the
/// ready file given by --imatrix (for a run on one model).
/// Usage: rounding-kld [--models a.gguf=text.txt,...] [--types Q2_K,...] [--imatrix-tool PATH | --imatrix FILE] [--calibration TEXT]
/// [--eval-threads N] [--imatrix-modes with|without|both] [--out bench/results/rounding-kld.json]
/// </summary>
public static class RoundingKldBenchmark
{
    private static readonly string[] DefaultRecipes = ["Q2_K", "Q3_K_M", "Q4_K_M", "IQ4_XS"];

    /// <summary>Where the imatrix comes from unless told otherwise; `rounding` takes the same, so its weight errors are
    /// weighted as this benchmark's rows are.</summary>
    internal static readonly string DefaultImatrixTool = Path.Combine(".cache", "reference", "build-native", "bin", "llama-imatrix");
    internal const string DefaultCalibration = "/work/shared/text/calibration-groups-merged.txt";

    public static int Run(string[] args)
    {
        var models = new List<(string Model, string Text)>
        {
            ("/work/shared/models/debdocs/debdocs-llama-10m-F16.gguf", "/work/shared/text/debdocs-val.txt"),
            (Path.Combine("samples", "debdocs-tiny-F16.gguf"), "/work/shared/text/debdocs-val.txt"),
            ("/work/shared/models/stories260K-F16.gguf", "/work/shared/text/tinystories-valid-excerpt.txt"),
        };
        var recipes = DefaultRecipes.ToList();
        string? imatrixFile = null;
        var imatrixTool = DefaultImatrixTool;
        var calibration = DefaultCalibration;
        var evalThreads = 1;
        bool[] modes = [false, true];
        var output = Path.Combine("bench", "results", "rounding-kld.json");
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--models":
                    models = args[++i].Split(',').Select(m => m.Split('=')).Select(p => (p[0], p[1])).ToList();
                    break;
                case "--types": recipes = args[++i].Split(',').ToList(); break;
                case "--imatrix-tool": imatrixTool = args[++i]; break;
                case "--imatrix": imatrixFile = args[++i]; break;
                case "--calibration": calibration = args[++i]; break;
                case "--eval-threads": evalThreads = int.Parse(args[++i]); break;
                case "--out": output = args[++i]; break;
                case "--imatrix-modes":
                    bool[]? chosen = args[++i] switch
                    {
                        "with" => [true],
                        "without" => [false],
                        "both" => [false, true],
                        _ => null,
                    };
                    if (chosen is null)
                    {
                        Console.Error.WriteLine($"--imatrix-modes: '{args[i]}' is not with, without or both");
                        return 2;
                    }
                    modes = chosen;
                    break;
                default:
                    Console.Error.WriteLine($"unknown option {args[i]}");
                    return 2;
            }
        }

        var work = Directory.CreateTempSubdirectory("kquant-rounding-kld-");
        var results = new List<Result>();
        try
        {
            foreach (var (model, text) in models)
            {
                if (!File.Exists(model) || !File.Exists(text))
                {
                    Console.WriteLine($"skipping {model}: it or {text} is missing");
                    continue;
                }
                var name = Path.GetFileNameWithoutExtension(model);
                var basePath = Path.Combine(work.FullName, name + ".logits");
                var basePerplexity = WriteBaseLogits(model, text, basePath, evalThreads);
                Console.WriteLine($"{name}: F16 PPL {basePerplexity:F4}");
                var imatrixPath = imatrixFile ?? MakeImatrix(imatrixTool, model, calibration, Path.Combine(work.FullName, name + ".imatrix.gguf"));
                var imatrix = imatrixPath is null ? null : ImportanceMatrix.Load(imatrixPath);
                using var original = GgufFile.Open(model);
                foreach (var recipeName in recipes)
                {
                    if (!QuantRecipe.TryParse(recipeName, out var recipe)) throw new ArgumentException($"unknown recipe {recipeName}");
                    foreach (var withImportance in imatrix is null ? [false] : modes)
                    {
                        var referenceFirst = results.Count % 2 == 0;
                        Side? reference = null, optimal = null;
                        foreach (var rounding in referenceFirst
                                     ? new[] { RoundingMode.Reference, RoundingMode.Optimal }
                                     : [RoundingMode.Optimal, RoundingMode.Reference])
                        {
                            var side = Measure(original, model, recipe, withImportance ? imatrixPath : null, withImportance ? imatrix : null,
                                rounding, basePath, work.FullName, evalThreads);
                            if (rounding == RoundingMode.Reference) reference = side;
                            else optimal = side;
                        }
                        var result = new Result(name, recipe.Name, withImportance, basePerplexity, reference!, optimal!,
                            optimal!.MeanKld / reference!.MeanKld, PairedDifference(optimal.KldByToken, reference.KldByToken),
                            optimal.QuantizeSeconds / reference.QuantizeSeconds);
                        results.Add(result);
                        Console.WriteLine($"{name,-22} {recipe.Name,-7} {(withImportance ? "imatrix" : "none"),-8} " +
                                          $"KLD {reference.MeanKld:F6}±{reference.MeanKldUncertainty:F6} -> {optimal.MeanKld:F6}±{optimal.MeanKldUncertainty:F6} " +
                                          $"({result.KldRatio:0.000}x, difference {result.KldDifference.Value:E2}±{result.KldDifference.Uncertainty:E2})  PPL {reference.Perplexity:F3} -> {optimal.Perplexity:F3}  " +
                                          $"wRMSE {reference.MeanWeightedRmse:F5} -> {optimal.MeanWeightedRmse:F5}  " +
                                          $"time {reference.QuantizeSeconds:F2}s -> {optimal.QuantizeSeconds:F2}s ({result.TimeRatio:0.00}x)");
                        Write(output, results);
                    }
                }
            }
        }
        finally
        {
            work.Delete(recursive: true);
        }
        Write(output, results);
        Console.WriteLine($"wrote {output}");
        return 0;
    }

    private static double WriteBaseLogits(string model, string text, string path, int threads)
    {
        using var gguf = GgufFile.Open(model);
        var llama = LlamaModel.Load(gguf);
        var tokenizer = Tokenizer.FromGguf(gguf);
        var tokens = tokenizer.Encode(File.ReadAllText(text));
        using var stream = File.Create(path);
        var result = Perplexity.Run(llama, tokens, new PerplexityOptions
        {
            ContextSize = 512,
            Threads = threads,
            Bos = tokenizer.AddBos ? tokenizer.Bos : null,
            LogitsOutput = stream,
        });
        return result.Value;
    }

    /// <summary>llama.cpp's llama-imatrix on the calibration text (one thread, c = 512), or null without the tool.</summary>
    internal static string? MakeImatrix(string tool, string model, string calibration, string path)
    {
        if (!File.Exists(tool) || !File.Exists(calibration))
        {
            Console.WriteLine($"no imatrix rows: {tool} or {calibration} is missing");
            return null;
        }
        var start = new ProcessStartInfo(tool, ["-m", model, "-f", calibration, "-o", path, "-t", "1", "-c", "512"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        if (process.ExitCode != 0 || !File.Exists(path))
        {
            Console.WriteLine($"llama-imatrix failed ({process.ExitCode}): {stderr.Result[^Math.Min(400, stderr.Result.Length)..]}");
            return null;
        }
        _ = stdout.Result;
        return path;
    }

    private static Side Measure(GgufFile original, string model, QuantRecipe recipe, string? imatrixPath, ImportanceMatrix? importance,
        RoundingMode rounding, string basePath, string directory, int evalThreads)
    {
        var output = Path.Combine(directory, $"{recipe.Name}-{rounding}.gguf");
        var clock = Stopwatch.StartNew();
        ModelQuantizer.Run(new QuantizeRequest(model, output, recipe)
        {
            Threads = 1,
            ImatrixPath = imatrixPath,
            Rounding = rounding,
            Overwrite = true,
        });
        var seconds = clock.Elapsed.TotalSeconds;
        using var quantized = GgufFile.Open(output);
        var errors = WeightError.Compare(original, quantized, importance);
        var llama = LlamaModel.Load(quantized);
        using var reader = LogitsFileReader.Open(basePath);
        var tokenizer = Tokenizer.FromGguf(quantized);
        var kld = KlDivergence.Run(llama, reader, new KlDivergenceOptions
        {
            Threads = evalThreads,
            Bos = tokenizer.AddBos ? tokenizer.Bos : null,
        });
        return new Side(seconds, WeightError.ModelMean(errors, e => e.WeightedRelativeRmse), kld.MeanKld.Value, kld.MeanKld.Uncertainty,
            kld.PerplexityQ.Value, kld.PerplexityQ.Uncertainty, kld.SameTopP.Value, kld.Count) { KldByToken = kld.KldByToken! };
    }

    /// <summary>Mean of optimal − reference over the same tokens, with its standard error: the two quantizations' per-token
    /// divergences are strongly correlated (same model, same text), so their difference is known far better than the
    /// difference of the two means and their separate uncertainties suggests.</summary>
    private static Estimate PairedDifference(IReadOnlyList<float> optimal, IReadOnlyList<float> reference)
    {
        if (optimal.Count != reference.Count) throw new InvalidOperationException("the two sides scored different tokens");
        double sum = 0, sum2 = 0;
        for (var i = 0; i < optimal.Count; i++)
        {
            var d = (double)optimal[i] - reference[i];
            sum += d;
            sum2 += d * d;
        }
        var n = optimal.Count;
        var mean = sum / n;
        return new Estimate(mean, n > 1 ? Math.Sqrt(Math.Max(0, sum2 / n - mean * mean) / (n - 1)) : 0);
    }

    private static void Write(string output, List<Result> results)
    {
        var report = new Report(DateTime.UtcNow.ToString("O"), Environment.ProcessorCount, QuantizeThreads: 1,
            "mean KLD and PPL(Q) against the F16 model from KQuant's forward pass (llama-perplexity's statistics, c = 512, all chunks); " +
            "KldDifference: mean of optimal − reference per token over the same tokens, with its standard error; " +
            "weighted RMSE: per tensor sqrt(Σw·(q−x)²/Σw·x²), w = imatrix column importance (1 without one), model mean weighted by parameters; " +
            "time: ModelQuantizer wall time of the whole recipe, 1 thread, the two modes alternating first",
            results);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
        File.WriteAllText(output, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
    }

    private sealed record Side(double QuantizeSeconds, double MeanWeightedRmse, double MeanKld, double MeanKldUncertainty,
        double Perplexity, double PerplexityUncertainty, double SameTopP, long Tokens)
    {
        [JsonIgnore]
        public IReadOnlyList<float> KldByToken { get; init; } = [];
    }

    /// <summary>KldDifference: optimal − reference, paired by token (<see cref="PairedDifference"/>).</summary>
    private sealed record Result(string Model, string Recipe, bool Imatrix, double BasePerplexity, Side Reference, Side Optimal,
        double KldRatio, Estimate KldDifference, double TimeRatio);

    private sealed record Report(string WhenUtc, int ProcessorCount, int QuantizeThreads, string Metric, IReadOnlyList<Result> Results);
}
