using System.CommandLine;
using KQuant.Cli.Ui;
using KQuant.Gguf;
using KQuant.Quantization;
using KQuant.Quants;
using KQuant.Recipes;

namespace KQuant.Cli.Commands;

/// <summary><c>kquant quantize IN.gguf [OUT.gguf] TYPE [NTHREADS] [options]</c>, argument order as llama-quantize's.</summary>
public static class QuantizeCommand
{
    public static Command Create(Func<IUi> ui)
    {
        var positional = new Argument<string[]>("IN [OUT] TYPE [NTHREADS]")
        {
            Description = "Input GGUF or Hugging Face model folder, optional output path (default: beside the input, named after TYPE), recipe name, optional thread count",
            Arity = new ArgumentArity(2, 4),
        };
        var threads = new Option<int?>("--threads", "-t") { Description = "Worker threads (default: all cores)" };
        var pure = new Option<bool>("--pure") { Description = "No mixture: every quantizable tensor gets the recipe's base type" };
        var outputType = new Option<string?>("--output-tensor-type") { Description = "Type for output.weight (a ggml type name, e.g. q8_0)" };
        var embeddingType = new Option<string?>("--token-embedding-type") { Description = "Type for token_embd.weight" };
        var tensorType = new Option<string[]>("--tensor-type") { Description = "REGEX=TYPE: type for tensors whose name matches (repeatable; first match wins)", AllowMultipleArgumentsPerToken = false };
        var tensorTypeFile = new Option<FileInfo?>("--tensor-type-file") { Description = "File of REGEX=TYPE entries separated by whitespace" };
        var leaveOutput = new Option<bool>("--leave-output-tensor") { Description = "Keep output.weight as stored" };
        var allowRequantize = new Option<bool>("--allow-requantize") { Description = "Accept already-quantized input tensors (dequantized first; loses quality)" };
        var imatrix = new Option<FileInfo?>("--imatrix") { Description = "Importance matrix (llama.cpp GGUF imatrix or legacy .dat)" };
        var include = new Option<string[]>("--include-weights") { Description = "Use the imatrix only for tensors whose name contains this (repeatable)" };
        var exclude = new Option<string[]>("--exclude-weights") { Description = "Do not use the imatrix for tensors whose name contains this (repeatable)" };
        var overrideKv = new Option<string[]>("--override-kv") { Description = "KEY=TYPE:VALUE metadata to set (TYPE: int, float, bool, str; repeatable)" };
        var dryRun = new Option<bool>("--dry-run") { Description = "Show the per-tensor plan, totals and exact output size; write nothing" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace the output file if it exists" };
        var rounding = RoundingOption();

        var command = new Command("quantize", "Quantize a GGUF model with one of llama.cpp's recipes (the same type per tensor as llama-quantize; with --rounding reference, the same bytes)\n\n" + RecipeList())
        {
            positional, threads, pure, outputType, embeddingType, tensorType, tensorTypeFile, leaveOutput, allowRequantize,
            imatrix, include, exclude, overrideKv, dryRun, overwrite, rounding,
        };
        command.SetAction((result, cancellation) => CliErrors.RunAsync(ui(), async () =>
        {
            var (input, output, recipe, positionalThreads) = ParsePositional(result.GetValue(positional)!);
            var overrides = (result.GetValue(tensorType) ?? []).Select(ParseTensorType).ToList();
            if (result.GetValue(tensorTypeFile) is { } file) overrides.AddRange(ReadTensorTypeFile(file));
            var request = new QuantizeRequest(input, output, recipe)
            {
                Threads = result.GetValue(threads) ?? positionalThreads ?? Environment.ProcessorCount,
                Pure = result.GetValue(pure),
                OutputTensorType = ParseGgmlType(result.GetValue(outputType), "--output-tensor-type"),
                TokenEmbeddingType = ParseGgmlType(result.GetValue(embeddingType), "--token-embedding-type"),
                TensorTypeOverrides = overrides,
                LeaveOutputTensor = result.GetValue(leaveOutput),
                AllowRequantize = result.GetValue(allowRequantize),
                ImatrixPath = result.GetValue(imatrix)?.ToString(),
                IncludeWeights = result.GetValue(include) ?? [],
                ExcludeWeights = result.GetValue(exclude) ?? [],
                MetadataOverrides = (result.GetValue(overrideKv) ?? []).Select(ParseOverride).ToList(),
                DryRun = result.GetValue(dryRun),
                Overwrite = result.GetValue(overwrite),
                Rounding = result.GetValue(rounding),
            };
            if (request.IncludeWeights.Count > 0 && request.ExcludeWeights.Count > 0)
                throw new UsageException("--include-weights and --exclude-weights cannot be used together");
            if (request.ImatrixPath is not null && !File.Exists(request.ImatrixPath))
                throw new FileNotFoundException($"importance matrix not found: {request.ImatrixPath}");
            if (!File.Exists(input) && !Directory.Exists(input)) throw new FileNotFoundException($"input model not found: {input}");
            if (!request.DryRun && !request.Overwrite && File.Exists(output))
                throw new OutputRefusedException($"{output} already exists; pass --overwrite to replace it");

            var console = ui();
            var result2 = request.DryRun
                ? ModelQuantizer.Run(request, cancellation: cancellation)
                : await console.WithProgressAsync($"quantizing to {recipe.Name}", InputBytes(input), sink =>
                    ModelQuantizer.RunAsync(request, new SyncProgress(p => sink.Report(p.BytesDone, $"[{p.TensorIndex}/{p.TensorCount}] {p.TensorName}", p.BytesTotal)), cancellation),
                    ProgressUnit.Bytes);
            Report(console, request, result2);
            return ExitCodes.Success;
        }));
        return command;
    }

    /// <summary>--rounding reference|optimal (quantize and evaluate).</summary>
    internal static Option<RoundingMode> RoundingOption() => new("--rounding")
    {
        HelpName = "optimal|reference",
        Description = "optimal (default): a search for quants and scales with a lower weighted error, from llama-quantize's (Q6_K, IQ4_XS and IQ4_NL, and without an imatrix Q2_K/Q3_K/Q4_K/Q5_K, from their own start), K-quant and IQ4 blocks rescaled to unit gain, same formats (lower KL divergence; about 0.9-1.5x the time of reference for K-quant and IQ4 recipes, 1.05-1.5x for Q4_0-Q8_0); reference: llama-quantize's bytes",
        DefaultValueFactory = _ => RoundingMode.Optimal,
        CustomParser = arg =>
        {
            switch (arg.Tokens.Single().Value.ToLowerInvariant())
            {
                case "reference": return RoundingMode.Reference;
                case "optimal": return RoundingMode.Optimal;
                case var other:
                    arg.AddError($"--rounding: '{other}' is not reference or optimal");
                    return RoundingMode.Reference;
            }
        },
    };

    /// <summary>The --rounding value that selects <paramref name="rounding"/>.</summary>
    internal static string RoundingName(RoundingMode rounding) => rounding == RoundingMode.Optimal ? "optimal" : "reference";

    /// <summary>The recipes, for --help and for the error on a wrong name.</summary>
    public static string RecipeList() =>
        "Types:\n" + string.Join("\n", QuantRecipe.All.Select(r => $"  {r.Name,-7} {r.NominalBitsPerWeight,5:0.00} bpw  {r.Description}"));

    private static (string Input, string Output, QuantRecipe Recipe, int? Threads) ParsePositional(string[] args)
    {
        // Like llama-quantize: if the second argument names a type, there is no output path.
        var input = args[0];
        int i;
        string? output = null;
        if (QuantRecipe.TryParse(args[1], out _)) i = 1;
        else { output = args[1]; i = 2; }
        if (i >= args.Length) throw new UsageException("missing TYPE: kquant quantize IN.gguf [OUT.gguf] TYPE [NTHREADS]");
        if (!QuantRecipe.TryParse(args[i], out var recipe))
            throw new UsageException($"unknown quantization type '{args[i]}'. {RecipeList()}");
        int? threads = null;
        if (i + 1 < args.Length)
        {
            if (!int.TryParse(args[i + 1], out var n) || n < 1) throw new UsageException($"NTHREADS must be a positive integer, got '{args[i + 1]}'");
            threads = n;
        }
        if (i + 2 < args.Length) throw new UsageException($"unexpected argument '{args[i + 2]}'");
        return (input, output ?? DefaultOutputPath(input, recipe), recipe, threads);
    }

    /// <summary>Beside the input, with a trailing precision tag (-F16, -f32, -BF16) replaced by the recipe name; a model
    /// folder gives its name (folder Llama-3-8B → Llama-3-8B-Q4_K_M.gguf beside it).</summary>
    public static string DefaultOutputPath(string input, QuantRecipe recipe)
    {
        input = Path.TrimEndingDirectorySeparator(Path.GetFullPath(input));
        var dir = Path.GetDirectoryName(input)!;
        var stem = Directory.Exists(input) ? Path.GetFileName(input) : Path.GetFileNameWithoutExtension(input);
        foreach (var tag in new[] { "-F32", "-F16", "-BF16", ".F32", ".F16", ".BF16", "-f32", "-f16", "-bf16" })
        {
            if (stem.EndsWith(tag, StringComparison.OrdinalIgnoreCase)) { stem = stem[..^tag.Length]; break; }
        }
        return Path.Combine(dir, $"{stem}-{recipe.Name}.gguf");
    }

    /// <summary>Bytes to read, for the progress bar: the file, or a folder's safetensors files.</summary>
    private static long InputBytes(string input) =>
        Directory.Exists(input)
            ? Directory.EnumerateFiles(input, "*.safetensors").Sum(f => new FileInfo(f).Length)
            : new FileInfo(input).Length;

    private static GgmlType? ParseGgmlType(string? name, string option)
    {
        if (name is null) return null;
        return GgmlTypeTraits.TryParse(name, out var type)
            ? type
            : throw new UsageException($"{option}: unknown ggml type '{name}' (e.g. f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K, q3_K, q4_K, q5_K, q6_K, iq4_nl, iq4_xs)");
    }

    private static TensorTypeOverride ParseTensorType(string text)
    {
        var eq = text.IndexOf('=');
        if (eq < 0) throw new UsageException($"--tensor-type: malformed '{text}', expected REGEX=TYPE");
        if (eq == 0) throw new UsageException($"--tensor-type: missing tensor name pattern in '{text}'");
        if (eq == text.Length - 1) throw new UsageException($"--tensor-type: missing type in '{text}'");
        // llama-quantize lower-cases the pattern.
        var pattern = text[..eq].ToLowerInvariant();
        var type = ParseGgmlType(text[(eq + 1)..], "--tensor-type")!.Value;
        try
        {
            return new TensorTypeOverride(pattern, type);
        }
        catch (ArgumentException e)
        {
            throw new UsageException($"--tensor-type: '{pattern}' is not a valid regular expression: {e.Message}");
        }
    }

    private static IEnumerable<TensorTypeOverride> ReadTensorTypeFile(FileInfo file)
    {
        if (!file.Exists) throw new FileNotFoundException($"--tensor-type-file: {file.FullName} not found");
        return File.ReadAllText(file.FullName).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Select(ParseTensorType).ToList();
    }

    private static MetadataOverride ParseOverride(string text)
    {
        try
        {
            return MetadataOverride.Parse(text);
        }
        catch (FormatException e)
        {
            throw new UsageException($"--override-kv: {e.Message}");
        }
    }

    private static void Report(IUi ui, QuantizeRequest request, QuantizeResult result)
    {
        foreach (var w in result.Warnings) ui.Warning(w);
        if (request.DryRun)
        {
            ui.Table($"Plan: {request.Recipe.Name}", ["tensor", "shape", "from", "to", "bytes", "note"],
                result.Plan.Tensors.Select(p => (IReadOnlyList<string>)[
                    p.Tensor.Name,
                    string.Join(" × ", p.Tensor.Shape),
                    GgmlTypeTraits.Of(p.Tensor.Type).Name,
                    GgmlTypeTraits.Of(p.TargetType).Name,
                    Units.Bytes(GgmlTypeTraits.Of(p.TargetType).RowBytes(p.Tensor.Shape[0]) * (p.Tensor.Shape.Aggregate(1L, (a, b) => a * b) / p.Tensor.Shape[0])),
                    p.Note ?? (p.Quantizable ? "" : "kept")]),
                new HashSet<int> { 4 });
        }
        ui.Table("Tensors per type", ["type", "tensors", "parameters", "bytes", "bpw"],
            result.Output.ByType.Select(t => (IReadOnlyList<string>)[GgmlTypeTraits.Of(t.Type).Name, t.Tensors.ToString(), Units.Count(t.Parameters), Units.Bytes(t.Bytes), t.BitsPerWeight.ToString("0.00")]),
            new HashSet<int> { 1, 2, 3, 4 });
        var verb = request.DryRun ? "would write" : "wrote";
        ui.Line($"{request.Recipe.Name}: {Units.Bytes(result.InputFileBytes)} -> {Units.Bytes(result.OutputFileBytes)} ({result.OutputFileBytes:N0} bytes), " +
                $"{result.Input.BitsPerWeight:0.00} -> {result.Output.BitsPerWeight:0.00} bits per weight, {result.Plan.FallbackCount} fallback(s), {RoundingName(request.Rounding)} rounding, {Progress.FormatDuration(result.Elapsed)}");
        ui.Line($"{verb} {(request.DryRun ? request.OutputPath : result.OutputPath)}");
    }

    /// <summary>Reports on the calling thread (Progress&lt;T&gt; would post to a thread pool and could arrive after the end).</summary>
    private sealed class SyncProgress(Action<QuantizeProgress> report) : IProgress<QuantizeProgress>
    {
        public void Report(QuantizeProgress value) => report(value);
    }
}
