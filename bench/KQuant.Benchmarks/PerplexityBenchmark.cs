using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using KQuant.Evaluation;
using KQuant.Gguf;
using KQuant.Model;
using KQuant.Model.Tokenizers;
using KQuant.Quantization;
using KQuant.Quants;
using KQuant.Recipes;

namespace KQuant.Benchmarks;

/// <summary><c>perplexity</c>: llama-perplexity's measurement with llama.cpp (libllama, P/Invoke) and with KQuant on
/// the same files, text, context, chunks and thread count; tokens per second of each and their ratio, written to
/// bench/results/perplexity.json. Both sides score the logits with the same code, so the times compare the engines.</summary>
internal static class PerplexityBenchmark
{
    private sealed record Options(string[] Models, string Text, int Context, int Chunks, int Threads, string LlamaCpu, int Repeats, string Output);

    public static int Run(string[] args)
    {
        var root = RepoRoot();
        var shared = Path.GetFullPath(Path.Combine(root, "..", "shared"));
        var options = Parse(args, root, shared);
        var lib = Environment.GetEnvironmentVariable("KQUANT_REFERENCE_LIB") is { Length: > 0 } dir
            ? dir : Path.Combine(root, ".cache", "reference", "bins", "package", "bins", "linux-x64");
        if (!File.Exists(Path.Combine(lib, "libllama.v0.5.0.so")))
        {
            Console.Error.WriteLine($"llama.cpp reference not found in {lib}; run scripts/fetch-reference.sh");
            return 3;
        }
        LlamaCpp.Initialize(lib, options.LlamaCpu);
        var text = File.ReadAllText(options.Text);
        var results = new List<object>();
        foreach (var model in options.Models)
        {
            var path = Resolve(model, shared);
            Console.WriteLine($"{Path.GetFileName(path)}: c={options.Context}, {options.Chunks} chunks, {options.Threads} thread(s), llama.cpp CPU build '{options.LlamaCpu}'");
            // Alternated, so that both engines see the same load on a shared machine; the best run of each counts.
            var llamaRuns = new List<Measurement>();
            var ourRuns = new List<Measurement>();
            for (var r = 0; r < options.Repeats; r++)
            {
                llamaRuns.Add(MeasureLlamaCpp(path, text, options));
                ourRuns.Add(MeasureKQuant(path, text, options));
            }
            var llama = llamaRuns.MaxBy(m => m.TokensPerSecond)!;
            var ours = ourRuns.MaxBy(m => m.TokensPerSecond)!;
            var ratio = ours.TokensPerSecond / llama.TokensPerSecond;
            var cpuRatio = ours.TokensPerCpuSecond / llama.TokensPerCpuSecond;
            Console.WriteLine($"  llama.cpp {llama.TokensPerSecond,8:F0} tokens/s  {llama.TokensPerCpuSecond,8:F0} tokens/CPU-s  (PPL {llama.Perplexity:F4})");
            Console.WriteLine($"  KQuant    {ours.TokensPerSecond,8:F0} tokens/s  {ours.TokensPerCpuSecond,8:F0} tokens/CPU-s  (PPL {ours.Perplexity:F4})");
            Console.WriteLine($"  ratio {ratio:F2} (wall clock), {cpuRatio:F2} (CPU time)");
            results.Add(new
            {
                model = Path.GetFileName(path),
                text = Path.GetFileName(options.Text),
                context = options.Context,
                chunks = options.Chunks,
                threads = options.Threads,
                llamaCppCpuBuild = options.LlamaCpu,
                llamaCpp = Describe(llama),
                kquant = Describe(ours),
                ratio = Math.Round(ratio, 3),
                cpuTimeRatio = Math.Round(cpuRatio, 3),
            });
        }
        var report = new
        {
            benchmark = "perplexity",
            date = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture),
            machine = new { cores = Environment.ProcessorCount, avx2 = System.Runtime.Intrinsics.X86.Avx2.IsSupported, avx512 = System.Runtime.Intrinsics.X86.Avx512F.IsSupported },
            note = "tokens/s = tokens evaluated (chunks x context) / wall-clock seconds of decode + scoring; tokens/CPU-s the same per " +
                "second of process CPU time (less sensitive to other load on a shared machine); both engines score with KQuant's " +
                "log-softmax; runs alternate between the engines, best of the repeats",
            results,
        };
        Directory.CreateDirectory(Path.GetDirectoryName(options.Output)!);
        File.WriteAllText(options.Output, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }) + "\n");
        Console.WriteLine($"written to {options.Output}");
        return 0;
    }

    private sealed record Evaluation(int Tokens, double Perplexity);

    private sealed record Measurement(int Tokens, double Seconds, double CpuSeconds, double Perplexity)
    {
        public double TokensPerSecond => Tokens / Seconds;

        public double TokensPerCpuSecond => Tokens / CpuSeconds;
    }

    private static object Describe(Measurement m) => new
    {
        tokensPerSecond = Math.Round(m.TokensPerSecond, 1),
        tokensPerCpuSecond = Math.Round(m.TokensPerCpuSecond, 1),
        seconds = Math.Round(m.Seconds, 3),
        cpuSeconds = Math.Round(m.CpuSeconds, 3),
        perplexity = m.Perplexity,
    };

    /// <summary>Times the evaluation of the chunks (loading and tokenizing the whole text are left out on both sides).</summary>
    private static Measurement Measure(Func<Evaluation> evaluate)
    {
        var process = Process.GetCurrentProcess();
        var cpu = process.TotalProcessorTime;
        var clock = Stopwatch.StartNew();
        var result = evaluate();
        var seconds = clock.Elapsed.TotalSeconds;
        process.Refresh();
        return new Measurement(result.Tokens, seconds, (process.TotalProcessorTime - cpu).TotalSeconds, result.Perplexity);
    }

    private static Measurement MeasureLlamaCpp(string path, string text, Options o)
    {
        using var session = new LlamaCpp.Session(path, o.Context, o.Threads);
        var tokens = session.Tokenize(text);
        var chunks = Math.Min(o.Chunks, tokens.Length / o.Context);
        var first = o.Context / 2;
        var logits = new float[(o.Context - first) * session.Vocabulary];
        var scratch = new float[session.Vocabulary];
        var chunk = new int[o.Context];
        return Measure(() =>
        {
            double nll = 0;
            for (var c = 0; c < chunks; c++)
            {
                tokens.AsSpan(c * o.Context, o.Context).CopyTo(chunk);
                if (session.Bos is { } bos) chunk[0] = bos;
                session.Evaluate(chunk, first, logits);
                for (var k = 0; k < o.Context - 1 - first; k++)
                {
                    nll += LogProbabilities.NegativeLogLikelihood(logits.AsSpan(k * session.Vocabulary, session.Vocabulary), tokens[c * o.Context + first + k + 1], scratch);
                }
            }
            return new Evaluation(chunks * o.Context, Math.Exp(nll / (chunks * (o.Context - 1 - first))));
        });
    }

    private static Measurement MeasureKQuant(string path, string text, Options o)
    {
        using var file = GgufFile.Open(path);
        var tokenizer = Tokenizer.FromGguf(file);
        var tokens = tokenizer.Encode(text);
        var model = LlamaModel.Load(file);
        var options = new PerplexityOptions
        {
            ContextSize = o.Context,
            Chunks = o.Chunks,
            Threads = o.Threads,
            Bos = tokenizer.AddBos ? tokenizer.Bos : null,
        };
        return Measure(() =>
        {
            var result = Perplexity.Run(model, tokens, options);
            return new Evaluation((int)result.TokensEvaluated, result.Value);
        });
    }

    /// <summary>A model path, or "debdocs-F16" / "debdocs-Q4_K_M" for the shared debdocs-llama-10m (the quantized
    /// file made once with KQuant's quantizer into bench/results/.models).</summary>
    private static string Resolve(string model, string shared)
    {
        if (File.Exists(model)) return Path.GetFullPath(model);
        var f16 = Path.Combine(shared, "models", "debdocs", "debdocs-llama-10m-F16.gguf");
        if (model == "debdocs-F16") return f16;
        if (model.StartsWith("debdocs-", StringComparison.Ordinal) && QuantRecipe.TryParse(model["debdocs-".Length..], out var recipe))
        {
            var dir = Path.Combine(Path.GetTempPath(), "kquant-bench");
            Directory.CreateDirectory(dir);
            var path = Path.Combine(dir, $"debdocs-llama-10m-{recipe.Name}.gguf");
            if (!File.Exists(path)) ModelQuantizer.Run(new QuantizeRequest(f16, path, recipe) { Rounding = RoundingMode.Reference });
            return path;
        }
        throw new FileNotFoundException($"model not found: {model}");
    }

    private static Options Parse(string[] args, string root, string shared)
    {
        var models = new List<string>();
        string text = Path.Combine(shared, "text", "debdocs-val.txt");
        int context = 512, chunks = 16, threads = 1, repeats = 2;
        var cpu = System.Runtime.Intrinsics.X86.Avx2.IsSupported ? "haswell" : "best";
        var output = Path.Combine(root, "bench", "results", "perplexity.json");
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "-m": case "--model": models.Add(Next()); break;
                case "-f": case "--text": text = Next(); break;
                case "-c": case "--ctx-size": context = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--chunks": chunks = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "-t": case "--threads": threads = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--repeats": repeats = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--llama-cpu": cpu = Next(); break;
                case "-o": case "--output": output = Next(); break;
                default: throw new ArgumentException($"unknown option {args[i]}");
            }
        }
        if (models.Count == 0) models.AddRange(["debdocs-F16", "debdocs-Q4_K_M"]);
        return new Options([.. models], text, context, chunks, threads, cpu, repeats, output);
    }

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "KQuant.slnx"))) return dir.FullName;
        }
        return Directory.GetCurrentDirectory();
    }
}
