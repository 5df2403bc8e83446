using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace KQuant.Benchmarks;

/// <summary><c>perplexity-vs-llama</c>: the two command-line tools side by side, as a user runs them: llama.cpp's
/// llama-perplexity (one or more builds of v0.5.0, by bench/perplexity-vs-llama.sh) and <c>kquant perplexity</c>, on
/// the same model, text, context, chunks and threads, alternating runs. Each tool's own evaluation rate (llama.cpp's
/// tokens over the time between its log's timestamps around the evaluation; KQuant's tokens evaluated and scored per second) and the whole process's wall
/// time, medians; the ratio kquant/llama of each, and whether both printed the same final perplexity. Writes
/// bench/results/perplexity-vs-llama.json.</summary>
internal static partial class PerplexityVsLlamaBenchmark
{
    private sealed record ToolRun(double ProcessSeconds, double EvalTokensPerSecond, string Perplexity, long PeakRssBytes);

    public static int Run(string[] args)
    {
        var map = new Dictionary<string, List<string>>();
        for (var i = 0; i + 1 < args.Length; i += 2)
        {
            var key = args[i].TrimStart('-');
            if (!map.TryGetValue(key, out var list)) map[key] = list = [];
            list.Add(args[i + 1]);
        }
        string Need(string key) => map.TryGetValue(key, out var v) ? v[^1] : throw new ArgumentException($"--{key} is required");
        string Get(string key, string fallback) => map.TryGetValue(key, out var v) ? v[^1] : fallback;
        // --llama NAME=PATH, repeatable: one llama-perplexity per build (e.g. native, avx2).
        var builds = (map.TryGetValue("llama", out var l) ? l : throw new ArgumentException("--llama NAME=PATH is required (repeatable)"))
            .Select(b => b.Split('=', 2)).Select(p => (Name: p[0], Path: p[1])).ToList();
        var kquantDll = Need("kquant");
        var models = map.TryGetValue("model", out var m) ? m : throw new ArgumentException("--model is required (repeatable)");
        var text = Need("text");
        var context = Get("context", "512");
        var chunks = Get("chunks", "16");
        var threads = Get("threads", "2");
        var runs = int.Parse(Get("runs", "3"), CultureInfo.InvariantCulture);
        var output = Get("output", Path.Combine("bench", "results", "perplexity-vs-llama.json"));

        var results = new List<object>();
        Console.WriteLine($"text {Path.GetFileName(text)}, c={context}, {chunks} chunks, {threads} threads, {runs} alternating runs per tool; medians");
        Console.WriteLine($"{"model",-36} {"llama build",-11} {"llama tok/s",12} {"kquant tok/s",13} {"ratio",6} {"llama s",8} {"kquant s",9} {"ratio",6}  PPL llama / kquant");
        foreach (var model in models)
        {
            var tools = builds.Select(b => (b.Name, Runs: new List<ToolRun>())).ToList();
            var ours = new List<ToolRun>();
            for (var run = 0; run < runs; run++)
            {
                // Rotate the order, so that no tool always runs first (cold page cache) or last.
                var order = Enumerable.Range(-1, builds.Count + 1).ToList();
                for (var k = 0; k < run % order.Count; k++) { order.Add(order[0]); order.RemoveAt(0); }
                foreach (var which in order)
                {
                    if (which < 0)
                        ours.Add(Measure("dotnet", [kquantDll, "perplexity", "-m", model, "-f", text, "-c", context, "--chunks", chunks, "-t", threads], KQuantRate));
                    else
                        tools[which].Runs.Add(Measure(builds[which].Path, ["-m", model, "-f", text, "-c", context, "--chunks", chunks, "-t", threads], LlamaRate));
                }
            }
            var ot = TimedProcess.Median(ours.Select(r => r.EvalTokensPerSecond));
            var os = TimedProcess.Median(ours.Select(r => r.ProcessSeconds));
            foreach (var (name, llama) in tools)
            {
                var lt = TimedProcess.Median(llama.Select(r => r.EvalTokensPerSecond));
                var ls = TimedProcess.Median(llama.Select(r => r.ProcessSeconds));
                Console.WriteLine($"{Path.GetFileName(model),-36} {name,-11} {lt,12:F0} {ot,13:F0} {ot / lt,6:F2} {ls,8:F2} {os,9:F2} {ls / os,6:F2}  {llama[0].Perplexity} / {ours[0].Perplexity}");
                results.Add(new
                {
                    model = Path.GetFileName(model),
                    model_bytes = new FileInfo(model).Length,
                    llama_build = name,
                    llama_eval_tokens_per_second = llama.Select(r => Math.Round(r.EvalTokensPerSecond, 1)).ToArray(),
                    kquant_eval_tokens_per_second = ours.Select(r => Math.Round(r.EvalTokensPerSecond, 1)).ToArray(),
                    llama_process_seconds = llama.Select(r => r.ProcessSeconds).ToArray(),
                    kquant_process_seconds = ours.Select(r => r.ProcessSeconds).ToArray(),
                    eval_speed_ratio_kquant_over_llama = Math.Round(ot / lt, 3),
                    process_speed_ratio_kquant_over_llama = Math.Round(ls / os, 3),
                    llama_peak_rss_mb = Math.Round(llama.Max(r => r.PeakRssBytes) / 1e6, 1),
                    kquant_peak_rss_mb = Math.Round(ours.Max(r => r.PeakRssBytes) / 1e6, 1),
                    llama_final_ppl = llama[0].Perplexity,
                    kquant_final_ppl = ours[0].Perplexity,
                });
            }
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
            File.WriteAllText(output, JsonSerializer.Serialize(new
            {
                benchmark = "perplexity-vs-llama",
                date = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm'Z'", CultureInfo.InvariantCulture),
                machine = new
                {
                    cores = Environment.ProcessorCount,
                    avx2 = System.Runtime.Intrinsics.X86.Avx2.IsSupported,
                    avx512 = System.Runtime.Intrinsics.X86.Avx512F.IsSupported,
                    load_average = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "",
                },
                reference = "llama-perplexity of llama.cpp v0.5.0 built from the npm node-llama-cpp@3.22.1 source bundle (cmake Release): " +
                    "'native' = GGML_NATIVE (every ISA extension of this CPU, AVX-512 where present; OpenMP), 'avx2' = the AVX2/FMA/F16C " +
                    "kernels of the npm bundle's haswell variant (the build KQuant's forward pass reproduces bit for bit). KQuant uses AVX2.",
                text = Path.GetFileName(text),
                context,
                chunks,
                threads,
                runs,
                note = "eval tokens/s: llama.cpp's chunks x n_ctx over the time between its log's 'calculating perplexity' and 'Final estimate' timestamps; " +
                    "KQuant's tokens evaluated and scored / time, from its summary line. process: wall time of the whole command (load, tokenize, " +
                    "evaluate). Ratios > 1 mean kquant is faster. Medians of runs in rotating order.",
                results,
            }, new JsonSerializerOptions { WriteIndented = true }) + "\n");
        }
        Console.Error.WriteLine($"wrote {output}");
        return 0;
    }

    /// <summary>llama-perplexity prints no total time, but its log lines carry timestamps (minutes.seconds.ms.µs):
    /// the evaluation runs from "calculating perplexity over N chunks, n_ctx=C" to "Final estimate", N·C tokens.</summary>
    private static double LlamaRate(string output)
    {
        var begin = LlamaBegin().Match(output);
        var end = LlamaEnd().Match(output);
        if (!begin.Success || !end.Success) throw new InvalidOperationException("llama-perplexity's log has no timestamped 'calculating perplexity' and 'Final estimate' lines");
        var tokens = long.Parse(begin.Groups[2].Value, CultureInfo.InvariantCulture) * long.Parse(begin.Groups[3].Value, CultureInfo.InvariantCulture);
        return tokens / (Seconds(end.Groups[1].Value) - Seconds(begin.Groups[1].Value));

        static double Seconds(string stamp)
        {
            var p = stamp.Split('.').Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray();
            return p[0] * 60 + p[1] + p[2] / 1e3 + p[3] / 1e6;
        }
    }

    private static double KQuantRate(string output)
    {
        var match = KQuantSummary().Match(output);
        if (!match.Success) throw new InvalidOperationException("kquant perplexity printed no 'tokens/s' summary");
        return double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    [GeneratedRegex(@"(\d+\.\d+\.\d+\.\d+) \w perplexity: calculating perplexity over (\d+) chunks, n_ctx=(\d+)")]
    private static partial Regex LlamaBegin();

    [GeneratedRegex(@"(\d+\.\d+\.\d+\.\d+) \w Final estimate")]
    private static partial Regex LlamaEnd();

    [GeneratedRegex(@"\(([0-9.]+) tokens/s\)")]
    private static partial Regex KQuantSummary();

    [GeneratedRegex(@"Final estimate: PPL = ([0-9.]+)")]
    private static partial Regex FinalEstimate();

    /// <summary>Runs a perplexity tool: its wall time, peak RSS, evaluation rate and final perplexity.</summary>
    private static ToolRun Measure(string program, string[] arguments, Func<string, double> rate)
    {
        var run = TimedProcess.Run(program, arguments);
        var ppl = FinalEstimate().Match(run.Output);
        return new ToolRun(run.Seconds, rate(run.Output), ppl.Success ? ppl.Groups[1].Value : "?", run.PeakRssBytes);
    }
}
