using System.Globalization;
using System.Text.Json;
using KQuant.Testing;

namespace KQuant.Benchmarks;

/// <summary>End-to-end quantization speed and memory: llama.cpp's llama-quantize (built from the v0.5.0 npm bundle by
/// bench/quantize-vs-llama.sh) against kquant, on the same ≥ 1 GB F16 model, same threads, alternating runs; median wall
/// time per tool, the ratio, and peak resident memory. kquant runs with --rounding reference (llama-quantize's bytes,
/// checked) unless --rounding optimal, kquant's default, is given. Writes bench/results/quantize-vs-llama.json (or --output).</summary>
public static class QuantizeVsLlamaBenchmark
{
    public static int Run(string[] args)
    {
        var options = Options.Parse(args);
        Directory.CreateDirectory(options.WorkDir);
        var model = Path.Combine(options.WorkDir, $"synthetic-{options.Embedding}x{options.FeedForward}x{options.Layers}-F16.gguf");
        if (!File.Exists(model))
        {
            Console.Error.WriteLine($"writing {model} ...");
            SyntheticLlamaWriter.Write(new SyntheticLlama("bench", options.Embedding, options.FeedForward, options.Layers, options.Embedding / 128, options.Embedding / 512),
                options.VocabSource, model);
        }
        var imatrix = Path.Combine(options.WorkDir, "synthetic.imatrix.gguf");
        if (!File.Exists(imatrix)) SyntheticLlamaWriter.WriteImatrix(model, imatrix, legacy: false);
        var modelBytes = new FileInfo(model).Length;
        Console.Error.WriteLine($"model: {model} ({modelBytes / 1e9:0.00} GB), {options.Runs} runs per tool and case, {options.Threads} threads");

        var results = new List<object>();
        void WriteReport()
        {
            var report = new
            {
                benchmark = "quantize-vs-llama",
                date = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm'Z'", CultureInfo.InvariantCulture),
                machine = $"{Environment.ProcessorCount} cores, {Environment.OSVersion}",
                reference = "llama-quantize of llama.cpp v0.5.0 (npm node-llama-cpp@3.22.1 bundle, cmake Release, GGML_NATIVE)",
                model = new { path = Path.GetFileName(model), bytes = modelBytes, options.Embedding, options.FeedForward, options.Layers },
                options.Threads,
                options.Runs,
                rounding = options.Rounding,
                results,
            };
            Directory.CreateDirectory(Path.GetDirectoryName(options.Output)!);
            File.WriteAllText(options.Output, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }) + "\n");
        }
        Console.WriteLine($"{"type",-8} {"imatrix",-8} {"llama s",9} {"kquant s",9} {"ratio",7} {"llama MB",9} {"kquant MB",10}  identical");
        foreach (var type in options.Types)
        {
            foreach (var withImatrix in new[] { false, true })
            {
                var llama = new List<TimedRun>();
                var ours = new List<TimedRun>();
                var llamaOut = Path.Combine(options.WorkDir, $"llama-{type}.gguf");
                var ourOut = Path.Combine(options.WorkDir, $"kquant-{type}.gguf");
                for (var run = 0; run < options.Runs; run++)
                {
                    // Alternate which tool goes first, so neither always meets a warm or a cold page cache.
                    var order = run % 2 == 0 ? new[] { true, false } : [false, true];
                    foreach (var isLlama in order)
                    {
                        var output = isLlama ? llamaOut : ourOut;
                        File.Delete(output);
                        var m = isLlama
                            ? TimedProcess.Run(options.LlamaQuantize, [.. withImatrix ? new[] { "--imatrix", imatrix } : [], model, output, type, options.Threads.ToString(CultureInfo.InvariantCulture)])
                            : TimedProcess.Run("dotnet", [options.KQuantDll, "quantize", .. withImatrix ? new[] { "--imatrix", imatrix } : [], model, output, type, "--threads", options.Threads.ToString(CultureInfo.InvariantCulture), "--rounding", options.Rounding]);
                        (isLlama ? llama : ours).Add(m);
                    }
                }
                var identical = KQuant.Testing.FileComparison.SameBytes(llamaOut, ourOut);
                var lm = TimedProcess.Median(llama.Select(m => m.Seconds));
                var om = TimedProcess.Median(ours.Select(m => m.Seconds));
                var lrss = llama.Max(m => m.PeakRssBytes);
                var orss = ours.Max(m => m.PeakRssBytes);
                Console.WriteLine($"{type,-8} {(withImatrix ? "yes" : "no"),-8} {lm,9:0.00} {om,9:0.00} {om / lm,7:0.000} {lrss / 1e6,9:0} {orss / 1e6,10:0}  {identical}");
                results.Add(new
                {
                    type,
                    imatrix = withImatrix,
                    llama_seconds = llama.Select(m => m.Seconds).ToArray(),
                    kquant_seconds = ours.Select(m => m.Seconds).ToArray(),
                    llama_median_seconds = lm,
                    kquant_median_seconds = om,
                    ratio_kquant_over_llama = Math.Round(om / lm, 4),
                    llama_peak_rss_mb = Math.Round(lrss / 1e6, 1),
                    kquant_peak_rss_mb = Math.Round(orss / 1e6, 1),
                    outputs_identical = identical,
                });
                File.Delete(llamaOut);
                File.Delete(ourOut);
                WriteReport(); // after every case, so an interrupted run still leaves what it measured
            }
        }
        Console.Error.WriteLine($"wrote {options.Output}");
        return 0;
    }

    private sealed record Options(string LlamaQuantize, string KQuantDll, string VocabSource, string WorkDir, string Output,
        string[] Types, int Runs, int Threads, int Embedding, int FeedForward, int Layers, string Rounding)
    {
        public static Options Parse(string[] args)
        {
            var map = new Dictionary<string, string>();
            for (var i = 0; i + 1 < args.Length; i += 2) map[args[i].TrimStart('-')] = args[i + 1];
            string Need(string key) => map.TryGetValue(key, out var v) ? v : throw new ArgumentException($"--{key} is required");
            return new Options(
                Need("llama-quantize"), Need("kquant"), Need("vocab"), Need("work"), Need("output"),
                (map.GetValueOrDefault("types") ?? "Q4_K_M,Q6_K,Q8_0,IQ4_XS").Split(','),
                int.Parse(map.GetValueOrDefault("runs") ?? "3", CultureInfo.InvariantCulture),
                int.Parse(map.GetValueOrDefault("threads") ?? "2", CultureInfo.InvariantCulture),
                int.Parse(map.GetValueOrDefault("embedding") ?? "2048", CultureInfo.InvariantCulture),
                int.Parse(map.GetValueOrDefault("ff") ?? "5632", CultureInfo.InvariantCulture),
                int.Parse(map.GetValueOrDefault("layers") ?? "12", CultureInfo.InvariantCulture),
                map.GetValueOrDefault("rounding") switch
                {
                    null or "reference" => "reference",
                    "optimal" => "optimal",
                    var other => throw new ArgumentException($"--rounding is reference or optimal, not '{other}'"),
                });
        }
    }
}
