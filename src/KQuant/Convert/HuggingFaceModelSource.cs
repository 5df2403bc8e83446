using System.Buffers;
using System.Collections.ObjectModel;
using System.Runtime.InteropServices;
using KQuant.Gguf;
using KQuant.Quants;
using KQuant.Recipes;

namespace KQuant.Conversion;

/// <summary>The output precision of a conversion (convert_hf_to_gguf.py's --outtype).</summary>
public enum ConvertOutputType
{
    F32,
    F16,
    BF16,
    Q8_0,
}

/// <summary>How to present a Hugging Face folder as a GGUF model.</summary>
public sealed record HuggingFaceSourceOptions
{
    /// <summary>The type of 2-D weights; null keeps the checkpoint's own precision (F32, F16 or BF16; F32 when its
    /// weights mix types), so nothing is lost on the way into a quantizer.</summary>
    public ConvertOutputType? OutputType { get; init; }

    /// <summary>A GGUF file whose tokenizer.* metadata replaces the folder's tokenizer (for folders without one).</summary>
    public string? VocabularyFrom { get; init; }

    /// <summary>general.name to write instead of the one derived from config.json or the folder name.</summary>
    public string? ModelName { get; init; }
}

/// <summary>A Hugging Face model folder (config.json, safetensors weights, tokenizer) seen as the GGUF file
/// convert_hf_to_gguf.py of llama.cpp v0.5.0 would write from it: llama.cpp tensor names in the converter's order,
/// GGUF shapes, the converter's per-tensor output types, q/k rows permuted for Llama-family models, and the converter's
/// metadata. Tensor data is converted on read from the memory-mapped checkpoint, a few rows at a time, so neither
/// `kquant convert` nor `kquant quantize DIR` holds a whole tensor in memory.</summary>
public sealed class HuggingFaceModelSource : IModelSource
{
    // Rows converted per step of a read; bounds the scratch memory of one call.
    private const int ScratchFloats = 1 << 18;

    private readonly SafetensorsCheckpoint _checkpoint;
    private readonly Dictionary<string, TensorPlan> _plans;

    private HuggingFaceModelSource(string folder, SafetensorsCheckpoint checkpoint, HfConfig config, ConvertOutputType outputType,
        List<TensorPlan> plans, GgufMetadata metadata, List<string> warnings)
    {
        Path = folder;
        _checkpoint = checkpoint;
        Config = config;
        OutputType = outputType;
        _plans = plans.ToDictionary(p => p.Info.Name, StringComparer.Ordinal);
        Tensors = new ReadOnlyCollection<GgufTensorInfo>([.. plans.Select(p => p.Info)]);
        Metadata = new ReadOnlyCollection<GgufMetadataEntry>([.. metadata]);
        Warnings = warnings;
        InputFiles = [.. checkpoint.Files.Select(f => f.Path)];
    }

    public string Path { get; }

    public HfConfig Config { get; }

    /// <summary>The type 2-D weights are presented in.</summary>
    public ConvertOutputType OutputType { get; }

    public IReadOnlyList<GgufMetadataEntry> Metadata { get; }

    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    public IReadOnlyList<string> InputFiles { get; }

    /// <summary>What the converter would log as a warning (e.g. a Q8_0 tensor kept in F16 because its rows do not
    /// divide into blocks).</summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>The file type written as general.file_type for <paramref name="type"/>.</summary>
    public static LlamaFileType FileTypeOf(ConvertOutputType type) => type switch
    {
        ConvertOutputType.F32 => LlamaFileType.AllF32,
        ConvertOutputType.F16 => LlamaFileType.MostlyF16,
        ConvertOutputType.BF16 => LlamaFileType.MostlyBF16,
        _ => LlamaFileType.MostlyQ8_0,
    };

    public static GgmlType GgmlTypeOf(ConvertOutputType type) => type switch
    {
        ConvertOutputType.F32 => GgmlType.F32,
        ConvertOutputType.F16 => GgmlType.F16,
        ConvertOutputType.BF16 => GgmlType.BF16,
        _ => GgmlType.Q8_0,
    };

    public static HuggingFaceModelSource Open(string folder, HuggingFaceSourceOptions? options = null)
    {
        options ??= new HuggingFaceSourceOptions();
        folder = System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(folder));
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"model folder not found: {folder}");
        var config = HfConfig.Load(folder);
        var checkpoint = SafetensorsCheckpoint.Open(folder);
        try
        {
            var warnings = new List<string>();
            var outputType = options.OutputType ?? NativeOutputType(checkpoint);
            var plans = PlanTensors(checkpoint, config, outputType, warnings);
            var vocabSize = VocabularySize(config, plans);
            var parameters = plans.Sum(p => p.Info.ElementCount);
            var metadata = HfModelMetadata.Build(folder, config, FileTypeOf(outputType), parameters, vocabSize, options.ModelName);
            IEnumerable<GgufMetadataEntry> tokenizer = options.VocabularyFrom is { } gguf ? TokenizerFromGguf(gguf, vocabSize) : HfTokenizer.Read(folder, config, vocabSize);
            foreach (var entry in tokenizer) metadata.Set(entry.Key, entry.Value);
            return new HuggingFaceModelSource(folder, checkpoint, config, outputType, plans, metadata, warnings);
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    public void ReadTensorBytes(GgufTensorInfo tensor, long offset, Span<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!_plans.TryGetValue(tensor.Name, out var plan) || !ReferenceEquals(plan.Info, tensor))
            throw new ArgumentException($"tensor '{tensor.Name}' is not from {Path}", nameof(tensor));
        if (offset < 0 || offset > tensor.ByteSize - destination.Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"bytes {offset} to {offset + destination.Length} are outside tensor '{tensor.Name}' ({tensor.ByteSize} bytes)");
        if (destination.IsEmpty) return;

        if (plan.Generated is { } generated)
        {
            MemoryMarshal.AsBytes(generated.AsSpan()).Slice((int)offset, destination.Length).CopyTo(destination);
            return;
        }
        if (plan.CopiesBytes)
        {
            CopySourceBytes(plan, offset, destination);
            return;
        }

        // Convert whole output rows (Q8_0 blocks must not be split) and copy the part asked for.
        var rowBytes = tensor.RowByteSize;
        var rowLength = checked((int)tensor.RowLength);
        var rowsPerStep = Math.Max(1, ScratchFloats / rowLength);
        var floats = ArrayPool<float>.Shared.Rent(rowsPerStep * rowLength);
        var encoded = ArrayPool<byte>.Shared.Rent(checked((int)(rowsPerStep * rowBytes)));
        try
        {
            var codec = RowCodecs.Get(tensor.Type);
            var position = offset;
            var end = offset + destination.Length;
            while (position < end)
            {
                var firstRow = position / rowBytes;
                var rows = (int)Math.Min(rowsPerStep, (end - 1) / rowBytes - firstRow + 1);
                var values = floats.AsSpan(0, rows * rowLength);
                ReadSourceAsFloat(plan, firstRow * rowLength, values);
                for (var r = 0; r < rows; r++)
                    codec.Quantize(values.Slice(r * rowLength, rowLength), encoded.AsSpan((int)(r * rowBytes), (int)rowBytes), ReadOnlySpan<float>.Empty);
                var skip = (int)(position - firstRow * rowBytes);
                var take = (int)Math.Min(rows * rowBytes - skip, end - position);
                encoded.AsSpan(skip, take).CopyTo(destination[(int)(position - offset)..]);
                position += take;
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(floats);
            ArrayPool<byte>.Shared.Return(encoded);
        }
    }

    public void Dispose() => _checkpoint.Dispose();

    /// <summary>One output tensor: its GGUF description and where its values come from.</summary>
    private sealed class TensorPlan(GgufTensorInfo info, SafetensorsTensor? source, int permutationHeads, float[]? generated)
    {
        public GgufTensorInfo Info { get; } = info;
        public SafetensorsTensor? Source { get; } = source;

        /// <summary>Heads of the q/k row permutation; 0 for none.</summary>
        public int PermutationHeads { get; } = permutationHeads;

        /// <summary>Data computed by the converter rather than read (rope_freqs).</summary>
        public float[]? Generated { get; } = generated;

        /// <summary>Elements of one unit of the permutation: one slice along the checkpoint's first dimension.</summary>
        public long UnitLength => Source!.ShapeArray.Length == 0 ? 1 : Source.ElementCount / Math.Max(1, Source.ShapeArray[0]);

        /// <summary>The source bytes are the output bytes (same type), possibly reordered.</summary>
        public bool CopiesBytes => Source is not null && SameType(Source.Dtype, Info.Type);
    }

    private static bool SameType(SafetensorsDtype dtype, GgmlType type) =>
        (dtype, type) is (SafetensorsDtype.F32, GgmlType.F32) or (SafetensorsDtype.F16, GgmlType.F16) or (SafetensorsDtype.BF16, GgmlType.BF16);

    /// <summary>The checkpoint's own precision, judged by its 2-D tensors.</summary>
    private static ConvertOutputType NativeOutputType(SafetensorsCheckpoint checkpoint)
    {
        var types = checkpoint.Tensors.Where(t => t.ShapeArray.Length >= 2).Select(t => t.Dtype).Distinct().ToList();
        return types switch
        {
            [SafetensorsDtype.F16] => ConvertOutputType.F16,
            [SafetensorsDtype.BF16] => ConvertOutputType.BF16,
            _ => ConvertOutputType.F32,
        };
    }

    private static List<TensorPlan> PlanTensors(SafetensorsCheckpoint checkpoint, HfConfig config, ConvertOutputType outputType, List<string> warnings)
    {
        var plans = new List<TensorPlan>();
        var blockCount = config.BlockCount;
        if (LlamaRopeFrequencies.Compute(config) is { } ropeFactors)
            plans.Add(new TensorPlan(new GgufTensorInfo("rope_freqs.weight", GgmlType.F32, [ropeFactors.Length]), null, 0, ropeFactors));
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var source in checkpoint.Tensors)
        {
            var name = HfTensorNames.Map(source.Name, blockCount, source.FilePath, out var role);
            if (name is null) continue;
            if (!source.Dtype.IsConvertible())
                throw new SafetensorsFormatException(source.FilePath, $"tensor '{source.Name}' is {source.Dtype.Name()}; KQuant converts {SafetensorsDtypes.ConvertibleNames} tensors only");
            var hfShape = source.ShapeArray;
            if (hfShape.Length is < 1 or > GgufTensorInfo.MaxDimensions || hfShape.Any(d => d <= 0))
                throw new SafetensorsFormatException(source.FilePath, $"tensor '{source.Name}' has shape [{string.Join(", ", hfShape)}]; GGUF holds 1 to {GgufTensorInfo.MaxDimensions} non-empty dimensions");
            if (!names.Add(name)) throw new InvalidDataException($"{source.FilePath}: tensor {source.Name} maps to {name}, which another tensor already maps to");

            var heads = 0;
            if (config.Architecture.PermutesQueryKey && role != HfTensorNames.Role.Plain)
            {
                heads = role == HfTensorNames.Role.Query ? config.HeadCount : config.KeyValueHeadCount;
                if (hfShape[0] % (2L * heads) != 0)
                    throw new InvalidDataException($"{source.FilePath}: tensor {source.Name} has {hfShape[0]} rows, which do not split into {heads} heads of two rotary halves");
            }
            var shape = hfShape.Reverse().ToArray(); // GGUF lists the contiguous dimension first
            var type = OutputTypeOf(name, shape, outputType, warnings);
            plans.Add(new TensorPlan(new GgufTensorInfo(name, type, shape), source, heads, null));
        }
        if (plans.Count == 0) throw new InvalidDataException($"{checkpoint.Folder}: the checkpoint holds no tensors to convert");
        return plans;
    }

    /// <summary>convert_hf_to_gguf.py's choice: 1-D tensors, norms and anything but a .weight stay F32; the rest takes
    /// the output type, Q8_0 falling back to F16 when rows are not whole blocks.</summary>
    private static GgmlType OutputTypeOf(string name, long[] shape, ConvertOutputType outputType, List<string> warnings)
    {
        if (shape.Length <= 1 || name.EndsWith("_norm.weight", StringComparison.Ordinal) || !name.EndsWith(".weight", StringComparison.Ordinal))
            return GgmlType.F32;
        var type = GgmlTypeOf(outputType);
        var blockSize = GgmlTypeTraits.Of(type).BlockSize;
        if (shape[0] % blockSize == 0) return type;
        warnings.Add($"{name}: rows of {shape[0]} are not a multiple of {blockSize}, so it stays F16 (as convert_hf_to_gguf.py does)");
        return GgmlType.F16;
    }

    /// <summary>config.json's vocab_size, else the embedding's row count.</summary>
    private static int VocabularySize(HfConfig config, List<TensorPlan> plans)
    {
        if (config.FindInteger("vocab_size") is { } size) return checked((int)size);
        var embedding = plans.FirstOrDefault(p => p.Info.Name == "token_embd.weight")
            ?? throw new InvalidDataException($"{config.Path}: no vocab_size, and the checkpoint has no model.embed_tokens.weight to count tokens from");
        return checked((int)embedding.Info.Shape[^1]);
    }

    /// <summary>Every tokenizer.* entry of <paramref name="path"/>, in its order.</summary>
    private static List<GgufMetadataEntry> TokenizerFromGguf(string path, int vocabSize)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"--vocab-from: {path} not found", path);
        using var file = GgufFile.Open(path);
        var entries = file.Metadata.Where(e => e.Key.StartsWith("tokenizer.", StringComparison.Ordinal)).ToList();
        var tokens = file.GetArray("tokenizer.ggml.tokens") ?? throw new InvalidDataException($"{path}: no tokenizer.ggml.tokens; it has no tokenizer to take");
        if (tokens.Count != vocabSize)
            throw new InvalidDataException($"{path}: its tokenizer has {tokens.Count} tokens, but the model's vocabulary has {vocabSize}");
        return entries;
    }

    /// <summary>Copies raw bytes (source and output of one type), applying the q/k permutation if any.</summary>
    private void CopySourceBytes(TensorPlan plan, long offset, Span<byte> destination)
    {
        var elementSize = plan.Source!.Dtype.ElementSize();
        for (var written = 0; written < destination.Length;)
        {
            var (from, run) = SourceRun(plan, offset + written, destination.Length - written, elementSize);
            _checkpoint.GetBytes(plan.Source, from, run).CopyTo(destination[written..]);
            written += run;
        }
    }

    /// <summary>Output elements [first, first + values.Length) as floats, in output order.</summary>
    private void ReadSourceAsFloat(TensorPlan plan, long first, Span<float> values)
    {
        var source = plan.Source!;
        var elementSize = source.Dtype.ElementSize();
        for (var done = 0; done < values.Length;)
        {
            var (from, run) = SourceRun(plan, first + done, values.Length - done, 1);
            var bytes = _checkpoint.GetBytes(source, from * elementSize, run * elementSize);
            var target = values.Slice(done, run);
            switch (source.Dtype)
            {
                case SafetensorsDtype.F32: MemoryMarshal.Cast<byte, float>(bytes).CopyTo(target); break;
                case SafetensorsDtype.F16: RowCodecs.Get(GgmlType.F16).Dequantize(bytes, target); break;
                default: RowCodecs.Get(GgmlType.BF16).Dequantize(bytes, target); break;
            }
            done += run;
        }
    }

    /// <summary>Where output position <paramref name="position"/> (in units of <paramref name="scale"/>: 1 for
    /// elements, the element size for bytes) comes from in the checkpoint tensor, and how many positions from there on
    /// are contiguous in both, up to <paramref name="remaining"/>. Permuted units are whole rows (or single elements of
    /// a 1-D bias), so only a unit boundary can break a run.</summary>
    private static (long From, int Run) SourceRun(TensorPlan plan, long position, int remaining, int scale)
    {
        if (plan.PermutationHeads == 0) return (position, remaining);
        var unitSize = plan.UnitLength * scale;
        var unit = position / unitSize;
        var within = position % unitSize;
        var sourceUnit = PermutedSourceUnit(unit, plan.Source!.ShapeArray[0], plan.PermutationHeads);
        return (sourceUnit * unitSize + within, (int)Math.Min(unitSize - within, remaining));
    }

    /// <summary>LlamaModel.permute: within each head, HF keeps the two rotary halves apart (rows 0..d/2-1, then d/2..d-1);
    /// llama.cpp wants them interleaved (row 2i from the first half, 2i+1 from the second). Returns the checkpoint row
    /// that becomes output row <paramref name="outputUnit"/>.</summary>
    internal static long PermutedSourceUnit(long outputUnit, long units, int heads)
    {
        var headSize = units / heads;
        var half = headSize / 2;
        var head = outputUnit / headSize;
        var within = outputUnit % headSize;
        return head * headSize + (within % 2) * half + within / 2;
    }
}
