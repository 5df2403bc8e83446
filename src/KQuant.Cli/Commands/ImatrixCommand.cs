using System.CommandLine;
using System.Globalization;
using KQuant.Cli.Ui;
using KQuant.Gguf;
using KQuant.Importance;
using KQuant.Model;
using KQuant.Model.Tokenizers;

namespace KQuant.Cli.Commands;

/// <summary><c>kquant imatrix -m MODEL -f TEXT [-o OUT] [--chunks N] [-c 512] [--output-format gguf|dat]</c>: an
/// importance matrix as llama-imatrix computes it, from KQuant's own forward pass.</summary>
public static class ImatrixCommand
{
    public static Command Create(Func<IUi> ui)
    {
        // Required options and the format are checked here rather than by the parser, so a mistake exits with the
        // usage code (2) and one line, like the other command-line mistakes.
        var model = new Option<FileInfo?>("--model", "-m") { Description = "GGUF model (llama, qwen2)" };
        var text = new Option<FileInfo?>("--file", "-f") { Description = "Calibration text" };
        var output = new Option<FileInfo?>("--output", "-o") { Description = "Output file (default: imatrix.gguf, or imatrix.dat with --output-format dat)" };
        var format = new Option<string>("--output-format") { Description = "gguf (llama.cpp's current format) or dat (the legacy one)", DefaultValueFactory = _ => "gguf" };
        var context = new Option<int>("--ctx-size", "-c") { Description = "Tokens per chunk", DefaultValueFactory = _ => 512 };
        var chunks = new Option<int?>("--chunks") { Description = "Use only the first N chunks (default: all)" };
        var threads = new Option<int?>("--threads", "-t") { Description = "Worker threads (default: all cores)" };
        var batch = new Option<int>("--batch-size", "-b") { Description = "Tokens per batch: batch / ctx-size chunks run side by side, as in llama-imatrix", DefaultValueFactory = _ => 2048 };
        var processOutput = new Option<bool>("--process-output") { Description = "Collect output.weight too (as llama-imatrix --process-output)" };
        var noPerplexity = new Option<bool>("--no-ppl") { Description = "Do not measure the perplexity of the chunks" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace an existing output file" };
        var command = new Command("imatrix", "Importance matrix (Σx² per input column of every weight) exactly as llama-imatrix computes it")
        {
            model, text, output, format, context, chunks, threads, batch, processOutput, noPerplexity, overwrite,
        };
        command.SetAction((result, cancellation) => CliErrors.RunAsync(ui(), async () =>
        {
            var console = ui();
            var modelFile = result.GetValue(model) ?? throw new UsageException("--model MODEL is required");
            var textFile = result.GetValue(text) ?? throw new UsageException("--file TEXT (the calibration text) is required");
            var outputFormat = result.GetValue(format)?.ToLowerInvariant() switch
            {
                "gguf" => ImportanceMatrixFormat.Gguf,
                "dat" => ImportanceMatrixFormat.Dat,
                var other => throw new UsageException($"--output-format must be gguf or dat, not '{other}'"),
            };
            var outputFile = result.GetValue(output) ?? new FileInfo(outputFormat == ImportanceMatrixFormat.Dat ? "imatrix.dat" : "imatrix.gguf");
            var contextSize = result.GetValue(context);
            if (contextSize < 4) throw new UsageException($"--ctx-size must be at least 4, not {contextSize}");
            var batchSize = result.GetValue(batch);
            if (batchSize < 1) throw new UsageException($"--batch-size must be positive, not {batchSize}");
            if (batchSize / contextSize > 512) throw new UsageException($"--batch-size {batchSize} would run {batchSize / contextSize} chunks of {contextSize} side by side; at most 512 fit a micro-batch");
            var chunkLimit = result.GetValue(chunks);
            if (chunkLimit < 1) throw new UsageException($"--chunks must be positive, not {chunkLimit}");
            var threadCount = result.GetValue(threads) ?? Environment.ProcessorCount;
            if (threadCount < 1) throw new UsageException($"--threads must be positive, not {threadCount}");
            if (!modelFile.Exists) throw new FileNotFoundException($"model not found: {modelFile.FullName}");
            if (!textFile.Exists) throw new FileNotFoundException($"text not found: {textFile.FullName}");
            var overwriteOutput = result.GetValue(overwrite);
            if (outputFile.Exists && !overwriteOutput) throw new OutputRefusedException($"{outputFile.FullName} exists; use --overwrite to replace it");
            if (outputFormat == ImportanceMatrixFormat.Gguf && !outputFile.Name.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
                console.Warning($"writing the GGUF format to {outputFile.Name}, whose name does not end in .gguf; for the legacy format use --output-format dat");

            using var gguf = GgufFile.Open(modelFile.FullName);
            var llama = LlamaModel.Load(gguf);
            var tokenizer = Tokenizer.FromGguf(gguf);
            // As llama.cpp's -f: the file's bytes, less one trailing newline.
            var bytes = await File.ReadAllBytesAsync(textFile.FullName, cancellation);
            var length = bytes.Length > 0 && bytes[^1] == (byte)'\n' ? bytes.Length - 1 : bytes.Length;
            var tokens = tokenizer.EncodeUtf8(bytes.AsSpan(0, length));
            var options = new ImportanceOptions
            {
                ContextSize = contextSize,
                Chunks = chunkLimit,
                BatchSize = batchSize,
                Threads = threadCount,
                Bos = tokenizer.AddBos ? tokenizer.Bos : null,
                IncludeOutput = result.GetValue(processOutput),
                ComputePerplexity = !result.GetValue(noPerplexity),
                Dataset = textFile.ToString(), // the path as given, as llama-imatrix records it
            };
            var total = Math.Min(chunkLimit ?? int.MaxValue, tokens.Length / contextSize);
            console.Line($"{modelFile.Name}: {tokens.Length} tokens, {total} chunks of {contextSize}, {threadCount} thread(s)");
            var computed = await console.WithProgressAsync($"imatrix of {modelFile.Name}", (long)total * contextSize, sink =>
                Task.Run(() => ImportanceComputation.Run(llama, tokens, options, new SyncProgress<ImportanceProgress>(p =>
                    sink.Report(p.Tokens, $"chunk {Math.Min(p.Chunks + 1, p.TotalChunks)}/{p.TotalChunks}" + (p.RunningPerplexity is { } ppl ? $", PPL {Format(ppl, "F4")}" : ""))),
                    cancellation), cancellation));
            ImportanceMatrixWriter.Write(computed.Matrix, outputFile.FullName, outputFormat, overwriteOutput);

            if (computed.Perplexity is { } value)
            {
                console.Line(string.Concat(computed.RunningPerplexity.Select((p, i) => $"[{i + 1}]{Format(p, "F4")},")));
                console.Line($"Final estimate: PPL = {Format(value, "F4")} +/- {Format(computed.Uncertainty ?? double.NaN, "F5")}");
            }
            if (computed.InexactMicroBatches > 0)
                console.Warning($"{computed.InexactMicroBatches} micro-batches held fewer than {ImportanceComputation.TiledAttentionRows} tokens of a chunk, which llama.cpp attends to with another kernel: "
                    + "their sums match llama-imatrix's to float rounding, not to the bit (fewer chunks per batch, a smaller --batch-size, avoid most)");
            var experts = computed.Matrix.Entries.Values.Sum(e => e.Counts.Length > 1 ? e.Counts.Count(c => c == 0) : 0);
            if (experts > 0) console.Warning($"{experts} expert matrices saw no token of this text; llama-quantize treats them as unweighted");
            console.Line($"{computed.TokensEvaluated} tokens in {Progress.FormatDuration(computed.Elapsed)} ({computed.TokensPerSecond:F0} tokens/s)");
            console.Line($"{computed.Matrix.Entries.Count} matrices, {computed.Matrix.ChunkCount} chunks of {contextSize} written to {outputFile.FullName} ({(outputFormat == ImportanceMatrixFormat.Dat ? "legacy .dat" : "GGUF")})");
            return ExitCodes.Success;
        }));
        return command;
    }

    private static string Format(double value, string format) => value.ToString(format, CultureInfo.InvariantCulture);

    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
