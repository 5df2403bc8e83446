using System.CommandLine;
using System.Globalization;
using KQuant.Cli.Ui;
using KQuant.Evaluation;
using KQuant.Gguf;
using KQuant.Model;
using KQuant.Model.Tokenizers;

namespace KQuant.Cli.Commands;

/// <summary><c>kquant perplexity -m MODEL -f TEXT [-c 512] [--chunks N] [-t N] [-b N] [--kl-divergence-base FILE
/// [--kl-divergence]]</c>: llama-perplexity's measurement and its output, from KQuant's own forward pass.</summary>
public static class PerplexityCommand
{
    public static Command Create(Func<IUi> ui)
    {
        var model = new Option<FileInfo>("--model", "-m") { Description = "GGUF model (llama, qwen2)", Required = true };
        var text = new Option<FileInfo?>("--file", "-f") { Description = "Text to measure on (not needed with --kl-divergence: the base file holds its tokens)" };
        var context = new Option<int>("--ctx-size", "-c") { Description = "Tokens per chunk", DefaultValueFactory = _ => 512 };
        var chunks = new Option<int?>("--chunks") { Description = "Score only the first N chunks (default: all)" };
        var threads = new Option<int?>("--threads", "-t") { Description = "Worker threads (default: all cores)" };
        var batch = new Option<int>("--batch-size", "-b") { Description = "Most tokens evaluated at once", DefaultValueFactory = _ => 2048 };
        var klBase = new Option<FileInfo?>("--kl-divergence-base") { Description = "Logits file: written by a perplexity run, read by --kl-divergence (llama-perplexity's format; either tool reads the other's)" };
        var kl = new Option<bool>("--kl-divergence") { Description = "Compare the model with the --kl-divergence-base file: KL divergence, Δp and perplexity statistics" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace an existing --kl-divergence-base file" };
        var command = new Command("perplexity", "Perplexity and KL divergence exactly as llama-perplexity measures them")
        {
            model, text, context, chunks, threads, batch, klBase, kl, overwrite,
        };
        command.SetAction((result, cancellation) => CliErrors.RunAsync(ui(), async () =>
        {
            var modelFile = result.GetValue(model)!;
            if (!modelFile.Exists) throw new FileNotFoundException($"model not found: {modelFile.FullName}");
            var klFile = result.GetValue(klBase);
            var contextSize = result.GetValue(context);
            if (contextSize < 4) throw new UsageException($"--ctx-size must be at least 4, not {contextSize}");
            var batchSize = result.GetValue(batch);
            if (batchSize < 1) throw new UsageException($"--batch-size must be positive, not {batchSize}");
            var threadCount = result.GetValue(threads) ?? Environment.ProcessorCount;
            if (threadCount < 1) throw new UsageException($"--threads must be positive, not {threadCount}");
            var console = ui();

            using var gguf = GgufFile.Open(modelFile.FullName);
            var llama = LlamaModel.Load(gguf);
            var tokenizer = Tokenizer.FromGguf(gguf);
            int? bos = tokenizer.AddBos ? tokenizer.Bos : null;
            if (result.GetValue(kl))
            {
                if (klFile is null) throw new UsageException("--kl-divergence needs --kl-divergence-base FILE, the base model's logits");
                if (!klFile.Exists) throw new FileNotFoundException($"logits file not found: {klFile.FullName}");
                using var reader = LogitsFileReader.Open(klFile.FullName);
                if (result.GetResult(context) is { Implicit: false } && contextSize != reader.ContextSize)
                    console.Warning($"{klFile.Name} was computed with a context of {reader.ContextSize}; using that instead of {contextSize}");
                var options = new KlDivergenceOptions { BatchSize = batchSize, Threads = threadCount, Bos = bos, Chunks = result.GetValue(chunks) };
                var rows = new List<KlDivergenceProgress>();
                var statistics = await console.WithProgressAsync($"KL divergence against {klFile.Name}", Math.Min(options.Chunks ?? int.MaxValue, reader.Chunks), sink =>
                    Task.Run(() => KlDivergence.Run(llama, reader, options, new SyncProgress<KlDivergenceProgress>(p =>
                    {
                        rows.Add(p);
                        sink.Report(p.Chunk, $"[{p.Chunk}] KLD {p.Statistics.MeanKld.Value:F6}");
                    }), cancellation), cancellation));
                PrintKlDivergence(console, rows, statistics);
                return ExitCodes.Success;
            }

            var textFile = result.GetValue(text) ?? throw new UsageException("--file TEXT is required (or --kl-divergence with a base file)");
            if (!textFile.Exists) throw new FileNotFoundException($"text not found: {textFile.FullName}");
            var tokens = tokenizer.Encode(await File.ReadAllTextAsync(textFile.FullName, cancellation));
            using var logits = klFile is null ? null : LogitsOutput.Create(klFile.FullName, result.GetValue(overwrite));
            var perplexityOptions = new PerplexityOptions
            {
                ContextSize = contextSize,
                Chunks = result.GetValue(chunks),
                BatchSize = batchSize,
                Threads = threadCount,
                Bos = bos,
                LogitsOutput = logits?.Stream,
            };
            var total = Math.Min(perplexityOptions.Chunks ?? int.MaxValue, tokens.Length / contextSize);
            console.Line($"{modelFile.Name}: {tokens.Length} tokens, {total} chunks of {contextSize}, {threadCount} thread(s)");
            var measured = await console.WithProgressAsync($"perplexity of {modelFile.Name}", total, sink =>
                Task.Run(() => Perplexity.Run(llama, tokens, perplexityOptions,
                    new SyncProgress<PerplexityProgress>(p => sink.Report(p.Chunk, $"[{p.Chunk}] {p.RunningPerplexity:F4}")), cancellation), cancellation));
            logits?.Commit();
            console.Line(string.Concat(measured.RunningPerplexity.Select((p, i) => $"[{i + 1}]{Format(p, "F4")},")));
            console.Line($"Final estimate: PPL = {Format(measured.Value, "F4")} +/- {Format(measured.Uncertainty, "F5")}");
            console.Line($"{measured.TokensEvaluated} tokens in {Progress.FormatDuration(measured.Elapsed)} ({measured.TokensPerSecond:F0} tokens/s)");
            if (klFile is not null) console.Line($"logits written to {klFile.FullName}");
            return ExitCodes.Success;
        }));
        return command;
    }

    /// <summary>llama-perplexity's per-chunk table and summary, with its labels and number formats.</summary>
    private static void PrintKlDivergence(IUi ui, IReadOnlyList<KlDivergenceProgress> rows, KlDivergenceStatistics s)
    {
        ui.Line("chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS            Same top p");
        foreach (var row in rows)
        {
            var r = row.Statistics;
            ui.Line($"{row.Chunk,4}    {Format(r.PerplexityQ.Value, "F4"),9} ± {Format(r.PerplexityQ.Uncertainty, "F4"),9}"
                + $"    {Format(r.LogPerplexityRatio.Value, "F5"),10} ± {Format(r.LogPerplexityRatio.Uncertainty, "F5"),10}"
                + $"    {Format(r.MeanKld.Value, "F5"),10} ± {Format(r.MeanKld.Uncertainty, "F5"),10}"
                + $"    {Format(100 * r.RmsDeltaP.Value, "F3"),6} ± {Format(100 * r.RmsDeltaP.Uncertainty, "F3"),6} %"
                + $"    {Format(100 * r.SameTopP.Value, "F3"),6} ± {Format(100 * r.SameTopP.Uncertainty, "F3"),6} %");
        }
        ui.Line();
        if (s.Count < 100)
        {
            ui.Line($"only {s.Count} tokens scored; llama-perplexity prints its summary from 100 tokens on");
            return;
        }
        ui.Line("====== Perplexity statistics ======");
        ui.Line($"Mean PPL(Q)                   : {Format(s.PerplexityQ.Value, "F6"),10} ± {Format(s.PerplexityQ.Uncertainty, "F6"),10}");
        ui.Line($"Mean PPL(base)                : {Format(s.PerplexityBase.Value, "F6"),10} ± {Format(s.PerplexityBase.Uncertainty, "F6"),10}");
        ui.Line($"Cor(ln(PPL(Q)), ln(PPL(base))): {Format(100 * s.LogPerplexityCorrelation, "F2"),6}%");
        ui.Line($"Mean ln(PPL(Q)/PPL(base))     : {Format(s.LogPerplexityRatio.Value, "F6"),10} ± {Format(s.LogPerplexityRatio.Uncertainty, "F6"),10}");
        ui.Line($"Mean PPL(Q)/PPL(base)         : {Format(s.PerplexityRatio.Value, "F6"),10} ± {Format(s.PerplexityRatio.Uncertainty, "F6"),10}");
        ui.Line($"Mean PPL(Q)-PPL(base)         : {Format(s.PerplexityDifference.Value, "F6"),10} ± {Format(s.PerplexityDifference.Uncertainty, "F6"),10}");
        ui.Line();
        var kld = s.KldValues!;
        ui.Line("====== KL divergence statistics ======");
        ui.Line($"Mean    KLD: {Format(s.MeanKld.Value, "F6"),10} ± {Format(s.MeanKld.Uncertainty, "F6"),10}");
        ui.Line($"Maximum KLD: {Format(kld[^1], "F6"),10}");
        foreach (var (label, fraction) in new[] { ("99.9%", 0.999f), ("99.0%", 0.990f), ("95.0%", 0.950f), ("90.0%", 0.900f) })
            ui.Line($"{label}   KLD: {Format(KlDivergenceStatistics.Percentile(kld, fraction), "F6"),10}");
        ui.Line($"Median  KLD: {Format(KlDivergenceStatistics.Median(kld), "F6"),10}");
        foreach (var (label, fraction) in new[] { ("10.0%", 0.100f), (" 5.0%", 0.050f), (" 1.0%", 0.010f), (" 0.1%", 0.001f) })
            ui.Line($"{label}   KLD: {Format(KlDivergenceStatistics.Percentile(kld, fraction), "F6"),10}");
        ui.Line($"Minimum KLD: {Format(kld[0], "F6"),10}");
        ui.Line();
        var dp = s.DeltaPValues!;
        ui.Line("====== Token probability statistics ======");
        ui.Line($"Mean    Δp: {Format(100 * s.MeanDeltaP.Value, "F3"),6} ± {Format(100 * s.MeanDeltaP.Uncertainty, "F3"),5} %");
        ui.Line($"Maximum Δp: {Format(100 * dp[^1], "F3"),6}%");
        foreach (var (label, fraction) in new[] { ("99.9%", 0.999f), ("99.0%", 0.990f), ("95.0%", 0.950f), ("90.0%", 0.900f), ("75.0%", 0.750f) })
            ui.Line($"{label}   Δp: {Format(100 * KlDivergenceStatistics.Percentile(dp, fraction), "F3"),6}%");
        ui.Line($"Median  Δp: {Format(100 * KlDivergenceStatistics.Median(dp), "F3"),6}%");
        foreach (var (label, fraction) in new[] { ("25.0%", 0.250f), ("10.0%", 0.100f), (" 5.0%", 0.050f), (" 1.0%", 0.010f), (" 0.1%", 0.001f) })
            ui.Line($"{label}   Δp: {Format(100 * KlDivergenceStatistics.Percentile(dp, fraction), "F3"),6}%");
        ui.Line($"Minimum Δp: {Format(100 * dp[0], "F3"),6}%");
        ui.Line($"RMS Δp    : {Format(100 * s.RmsDeltaP.Value, "F3"),6} ± {Format(100 * s.RmsDeltaP.Uncertainty, "F3"),5} %");
        ui.Line($"Same top p: {Format(100 * s.SameTopP.Value, "F3"),6} ± {Format(100 * s.SameTopP.Uncertainty, "F3"),5} %");
    }

    private static string Format(double value, string format) => value.ToString(format, CultureInfo.InvariantCulture);

    /// <summary>The logits file, written beside its final name and moved there only when the run completes, so a
    /// failure or Ctrl-C leaves nothing behind.</summary>
    private sealed class LogitsOutput : IDisposable
    {
        private readonly string _path;
        private readonly string _temporary;
        private bool _committed;

        private LogitsOutput(string path, string temporary, FileStream stream)
        {
            _path = path;
            _temporary = temporary;
            Stream = stream;
        }

        public FileStream Stream { get; }

        public static LogitsOutput Create(string path, bool overwrite)
        {
            if (File.Exists(path) && !overwrite)
                throw new OutputRefusedException($"{path} exists; use --overwrite to replace it");
            var temporary = $"{path}.{Environment.ProcessId}.partial";
            return new LogitsOutput(path, temporary, new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20));
        }

        public void Commit()
        {
            Stream.Dispose();
            File.Move(_temporary, _path, overwrite: true);
            _committed = true;
        }

        public void Dispose()
        {
            Stream.Dispose();
            if (!_committed) File.Delete(_temporary);
        }
    }

    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
