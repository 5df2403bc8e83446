using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using KQuant.Evaluation;
using KQuant.Gguf;
using KQuant.Model;
using KQuant.Model.Tokenizers;
using KQuant.Quantization;
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
            var llama = Best(options.Repeats, () => MeasureLlamaCpp(path, text, options));
            var ours = Best(options.Repeats, () => MeasureKQuant(path, text, options));
            var ratio = ours.TokensPerSecond / llama.TokensPerSecond;
            Console.WriteLine($"  llama.cpp {llama.TokensPerSecond,8:F0} tokens/s  (PPL {llama.Perplexity:F4})");
            Console.WriteLine($"  KQuant    {ours.TokensPerSecond,8:F0} tokens/s  (PPL {ours.Perplexity:F4})  ratio {ratio:F2}");
            results.Add(new
            {
                model = Path.GetFileName(path),
                text = Path.GetFileName(options.Text),
                context = options.Context,
                chunks = options.Chunks,
                threads = options.Threads,
                llamaCppCpuBuild = options.LlamaCpu,
                llamaCpp = new { tokensPerSecond = Math.Round(llama.TokensPerSecond, 1), seconds = Math.Round(llama.Seconds, 3), perplexity = llama.Perplexity },
                kquant = new { tokensPerSecond = Math.Round(ours.TokensPerSecond, 1), seconds = Math.Round(ours.Seconds, 3), perplexity = ours.Perplexity },
                ratio = Math.Round(ratio, 3),
            });
        }
        var report = new
        {
            benchmark = "perplexity",
            date = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture),
            machine = new { cores = Environment.ProcessorCount, avx2 = System.Runtime.Intrinsics.X86.Avx2.IsSupported, avx512 = System.Runtime.Intrinsics.X86.Avx512F.IsSupported },
            note = "tokens/s = tokens evaluated (chunks x context) / (decode + scoring); both engines score with KQuant's log-softmax; best of the repeats",
            results,
        };
        Directory.CreateDirectory(Path.GetDirectoryName(options.Output)!);
        File.WriteAllText(options.Output, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }) + "\n");
        Console.WriteLine($"written to {options.Output}");
        return 0;
    }

    private sealed record Measurement(double TokensPerSecond, double Seconds, double Perplexity);

    private static Measurement Best(int repeats, Func<Measurement> measure) =>
        Enumerable.Range(0, repeats).Select(_ => measure()).MaxBy(m => m.TokensPerSecond)!;

    private static Measurement MeasureLlamaCpp(string path, string text, Options o)
    {
        using var session = new LlamaCpp.Session(path, o.Context, o.Threads);
        var tokens = session.Tokenize(text);
        var chunks = Math.Min(o.Chunks, tokens.Length / o.Context);
        var first = o.Context / 2;
        var logits = new float[(o.Context - first) * session.Vocabulary];
        var scratch = new float[session.Vocabulary];
        var chunk = new int[o.Context];
        double nll = 0;
        var clock = Stopwatch.StartNew();
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
        var seconds = clock.Elapsed.TotalSeconds;
        return new Measurement(chunks * o.Context / seconds, seconds, Math.Exp(nll / (chunks * (o.Context - 1 - first))));
    }

    private static Measurement MeasureKQuant(string path, string text, Options o)
    {
        using var file = GgufFile.Open(path);
        var tokenizer = Tokenizer.FromGguf(file);
        var tokens = tokenizer.Encode(text);
        var model = LlamaModel.Load(file);
        var result = Perplexity.Run(model, tokens, new PerplexityOptions
        {
            ContextSize = o.Context,
            Chunks = o.Chunks,
            Threads = o.Threads,
            Bos = tokenizer.AddBos ? tokenizer.Bos : null,
        });
        return new Measurement(result.TokensPerSecond, result.Elapsed.TotalSeconds, result.Value);
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
            if (!File.Exists(path)) ModelQuantizer.Run(new QuantizeRequest(f16, path, recipe));
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
