using System.Diagnostics;
using KQuant.Gguf;

namespace KQuant.Conversion;

/// <summary>What to convert and where to.</summary>
/// <param name="ModelFolder">A Hugging Face model folder (config.json, safetensors, tokenizer).</param>
public sealed record ConvertRequest(string ModelFolder)
{
    /// <summary>The GGUF file to write; null for <c>&lt;folder name&gt;-&lt;OUTTYPE&gt;.gguf</c> beside the folder.</summary>
    public string? OutputPath { get; init; }

    /// <summary>The type of 2-D weights; null chooses as convert_hf_to_gguf.py's "auto" does (BF16 for a BF16
    /// checkpoint, otherwise F16).</summary>
    public ConvertOutputType? OutputType { get; init; }

    /// <summary>Take the tokenizer from this GGUF file instead of the folder.</summary>
    public string? VocabularyFrom { get; init; }

    /// <summary>general.name to write instead of the derived one.</summary>
    public string? ModelName { get; init; }

    public bool Overwrite { get; init; }
}

public sealed record ConvertProgress(int TensorIndex, int TensorCount, string TensorName, long BytesDone, long BytesTotal);

public sealed record ConvertResult(string OutputPath, ConvertOutputType OutputType, int TensorCount, long ParameterCount, long OutputBytes,
    IReadOnlyList<string> Warnings, TimeSpan Elapsed);

/// <summary>Writes a Hugging Face folder as a GGUF file, one tensor at a time (a few rows in memory at once), to a
/// temporary file renamed onto the target at the end.</summary>
public static class ModelConverter
{
    private const int ChunkBytes = 8 << 20;

    public static Task<ConvertResult> RunAsync(ConvertRequest request, IProgress<ConvertProgress>? progress = null, CancellationToken cancellation = default) =>
        Task.Run(() => Run(request, progress, cancellation), cancellation);

    public static ConvertResult Run(ConvertRequest request, IProgress<ConvertProgress>? progress = null, CancellationToken cancellation = default)
    {
        var clock = Stopwatch.StartNew();
        using var source = Open(request);
        var output = request.OutputPath ?? DefaultOutputPath(request.ModelFolder, source.OutputType);
        using var writer = new GgufWriter(output, source.Metadata, source.Tensors, overwrite: request.Overwrite, inputPaths: source.InputFiles);
        var total = ((IModelSource)source).TensorBytes;
        var buffer = new byte[(int)Math.Min(ChunkBytes, Math.Max(1, source.Tensors.Max(t => t.ByteSize)))];
        long done = 0;
        for (var i = 0; i < source.Tensors.Count; i++)
        {
            var tensor = source.Tensors[i];
            progress?.Report(new ConvertProgress(i, source.Tensors.Count, tensor.Name, done, total));
            for (long offset = 0; offset < tensor.ByteSize; offset += buffer.Length)
            {
                cancellation.ThrowIfCancellationRequested();
                var part = buffer.AsSpan(0, (int)Math.Min(buffer.Length, tensor.ByteSize - offset));
                source.ReadTensorBytes(tensor, offset, part);
                writer.WriteTensorData(part);
            }
            done += tensor.ByteSize;
        }
        progress?.Report(new ConvertProgress(source.Tensors.Count, source.Tensors.Count, "", done, total));
        writer.Commit();
        return new ConvertResult(writer.Path, source.OutputType, source.Tensors.Count, source.Tensors.Sum(t => t.ElementCount),
            new FileInfo(writer.Path).Length, source.Warnings, clock.Elapsed);
    }

    /// <summary>The source the request converts from, its output type resolved.</summary>
    public static HuggingFaceModelSource Open(ConvertRequest request)
    {
        var options = new HuggingFaceSourceOptions { OutputType = request.OutputType, VocabularyFrom = request.VocabularyFrom, ModelName = request.ModelName };
        var source = HuggingFaceModelSource.Open(request.ModelFolder, options);
        if (request.OutputType is not null) return source;
        // "auto": the checkpoint's 16-bit type, or F16 for an F32 one (as convert_hf_to_gguf.py chooses).
        var auto = source.OutputType == ConvertOutputType.BF16 ? ConvertOutputType.BF16 : ConvertOutputType.F16;
        if (auto == source.OutputType) return source;
        source.Dispose();
        return HuggingFaceModelSource.Open(request.ModelFolder, options with { OutputType = auto });
    }

    /// <summary><c>&lt;folder name&gt;-&lt;OUTTYPE&gt;.gguf</c> beside the folder, e.g. Mistral-7B → Mistral-7B-F16.gguf.</summary>
    public static string DefaultOutputPath(string modelFolder, ConvertOutputType type)
    {
        var folder = Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelFolder));
        var parent = Path.GetDirectoryName(folder) ?? folder;
        return Path.Combine(parent, $"{Path.GetFileName(folder)}-{type.ToString().ToUpperInvariant()}.gguf");
    }
}
