using System.CommandLine;
using KQuant.Cli.Ui;
using KQuant.Conversion;
using KQuant.Gguf;

namespace KQuant.Cli.Commands;

/// <summary><c>kquant convert DIR [-o OUT.gguf] [--outtype T] [--vocab-from FILE.gguf]</c>: a Hugging Face folder to GGUF,
/// as llama.cpp's convert_hf_to_gguf.py writes it.</summary>
public static class ConvertCommand
{
    public static Command Create(Func<IUi> ui)
    {
        var folder = new Argument<string>("DIR") { Description = $"Hugging Face model folder: config.json, model.safetensors (or shards with {SafetensorsCheckpoint.IndexFileName}), tokenizer" };
        var output = new Option<string?>("--outfile", "-o") { Description = "Output GGUF (default: <DIR name>-<OUTTYPE>.gguf beside DIR)" };
        var outtype = new Option<string?>("--outtype") { Description = "Type of 2-D weights: f32, f16, bf16 or q8_0 (default: bf16 for a BF16 checkpoint, else f16); norms and 1-D tensors stay f32" };
        var vocabFrom = new Option<string?>("--vocab-from") { Description = "Take the tokenizer metadata from this GGUF file (for folders without a tokenizer)" };
        var name = new Option<string?>("--model-name") { Description = "general.name to write (default: from config.json's _name_or_path or the folder name)" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace the output file if it exists" };
        var command = new Command("convert",
            $"Convert a Hugging Face safetensors folder to GGUF, as llama.cpp's convert_hf_to_gguf.py does (architectures: {HfArchitecture.SupportedNames})")
        {
            folder, output, outtype, vocabFrom, name, overwrite,
        };
        command.SetAction((result, cancellation) => CliErrors.RunAsync(ui(), async () =>
        {
            var request = new ConvertRequest(result.GetValue(folder)!)
            {
                OutputPath = result.GetValue(output),
                OutputType = ParseOutputType(result.GetValue(outtype)),
                VocabularyFrom = result.GetValue(vocabFrom),
                ModelName = result.GetValue(name),
                Overwrite = result.GetValue(overwrite),
            };
            if (File.Exists(request.ModelFolder))
                throw new InvalidDataException($"{request.ModelFolder} is a file; kquant convert takes a Hugging Face model folder");
            if (!Directory.Exists(request.ModelFolder)) throw new DirectoryNotFoundException($"model folder not found: {request.ModelFolder}");
            if (request.OutputPath is { } path && !request.Overwrite && File.Exists(path))
                throw new OutputRefusedException($"{path} already exists; pass --overwrite to replace it");

            var console = ui();
            var total = Directory.EnumerateFiles(request.ModelFolder, "*.safetensors").Sum(f => new FileInfo(f).Length);
            var converted = await console.WithProgressAsync("converting", total, sink =>
                ModelConverter.RunAsync(request, new SyncProgress(p => sink.Report(p.BytesDone, $"[{p.TensorIndex}/{p.TensorCount}] {p.TensorName}")), cancellation));
            foreach (var warning in converted.Warnings) console.Warning(warning);
            console.Line($"{converted.OutputType.ToString().ToUpperInvariant()}: {converted.TensorCount} tensors, {Units.Count(converted.ParameterCount)} parameters, " +
                         $"{Units.Bytes(converted.OutputBytes)} ({converted.OutputBytes:N0} bytes), {Progress.FormatDuration(converted.Elapsed)}");
            console.Line($"wrote {converted.OutputPath}");
            return ExitCodes.Success;
        }));
        return command;
    }

    private static ConvertOutputType? ParseOutputType(string? text) => text?.ToLowerInvariant() switch
    {
        null or "auto" => null,
        "f32" => ConvertOutputType.F32,
        "f16" => ConvertOutputType.F16,
        "bf16" => ConvertOutputType.BF16,
        "q8_0" => ConvertOutputType.Q8_0,
        _ => throw new UsageException($"--outtype: unknown type '{text}' (expected f32, f16, bf16 or q8_0)"),
    };

    private sealed class SyncProgress(Action<ConvertProgress> report) : IProgress<ConvertProgress>
    {
        public void Report(ConvertProgress value) => report(value);
    }
}
