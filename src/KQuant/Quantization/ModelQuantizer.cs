using System.Diagnostics;
using System.Runtime.InteropServices;
using KQuant.Gguf;
using KQuant.Importance;
using KQuant.Quants;
using KQuant.Recipes;

namespace KQuant.Quantization;

/// <summary>Quantizes a GGUF model the way llama-quantize of llama.cpp v0.5.0 does (same tensor types, same bytes, same
/// metadata), streaming: one slab of rows in memory at a time, output written to a temporary file and renamed at the end.</summary>
public static class ModelQuantizer
{
    /// <summary>ggml's GGML_QNT_VERSION, written as general.quantization_version.</summary>
    public const uint QuantizationVersion = 2;

    public const string ImatrixFileKey = "quantize.imatrix.file";
    public const string ImatrixDatasetKey = "quantize.imatrix.dataset";
    public const string ImatrixEntriesKey = "quantize.imatrix.entries_count";
    public const string ImatrixChunksKey = "quantize.imatrix.chunks_count";

    public static Task<QuantizeResult> RunAsync(QuantizeRequest request, IProgress<QuantizeProgress>? progress = null, CancellationToken cancellation = default) =>
        Task.Run(() => Run(request, progress, cancellation), cancellation);

    public static QuantizeResult Run(QuantizeRequest request, IProgress<QuantizeProgress>? progress = null, CancellationToken cancellation = default)
    {
        var clock = Stopwatch.StartNew();
        using var input = ModelSources.Open(request.InputPath);
        var warnings = new List<string>();
        var importance = LoadImportance(request);
        var metadata = OutputMetadata(input, request, importance);
        var model = ReadHyperparameters(metadata, input.Path);
        var inputBytes = input.InputFiles.Sum(f => new FileInfo(f).Length);
        var options = new RecipeOptions(request.Recipe.FileType)
        {
            Pure = request.Pure,
            OutputTensorType = request.OutputTensorType,
            TokenEmbeddingType = request.TokenEmbeddingType,
            TensorTypeOverrides = request.TensorTypeOverrides,
            QuantizeOutputTensor = !request.LeaveOutputTensor,
            HasImportanceMatrix = importance is not null,
        };
        var plan = TensorTypePlanner.Plan(model, input.Tensors.Select(t => new PlannerTensor(t.Name, t.Shape, t.Type)), options);
        warnings.AddRange(plan.Warnings);
        if (plan.FallbackCount > 0) warnings.Add($"{plan.FallbackCount} of {plan.Tensors.Count} tensor(s) required fallback quantization");

        var byName = input.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var jobs = plan.Tensors.Select(p => new TensorJob(byName[p.Tensor.Name], p)).ToList();
        foreach (var job in jobs) Check(job, request, importance, warnings);
        var outputTensors = jobs.Select(j => j.Source.WithType(j.Plan.TargetType)).ToList();
        var inputTotals = TensorTotals.Of(input.Tensors);
        var outputTotals = TensorTotals.Of(outputTensors);

        if (request.DryRun)
        {
            var size = GgufWriter.MeasureFile(metadata, outputTensors);
            return new QuantizeResult(plan, inputTotals, outputTotals, inputBytes, size, null, warnings, clock.Elapsed);
        }

        using var writer = new GgufWriter(request.OutputPath, metadata, outputTensors, overwrite: request.Overwrite, inputPaths: input.InputFiles);
        var buffers = new SlabBuffers();
        long done = 0;
        for (var i = 0; i < jobs.Count; i++)
        {
            cancellation.ThrowIfCancellationRequested();
            var job = jobs[i];
            progress?.Report(new QuantizeProgress(i, jobs.Count, job.Source.Name, done, inputTotals.Bytes));
            if (job.Plan.Converts) Convert(input, writer, job, request, buffers, cancellation);
            else Copy(input, writer, job.Source, buffers, cancellation);
            done += job.Source.ByteSize;
        }
        progress?.Report(new QuantizeProgress(jobs.Count, jobs.Count, "", done, inputTotals.Bytes));
        writer.Commit();
        return new QuantizeResult(plan, inputTotals, outputTotals, inputBytes, new FileInfo(writer.Path).Length, writer.Path, warnings, clock.Elapsed);
    }

    /// <summary>One tensor's work: where it comes from, what it becomes, and the importance weights it uses (if any).</summary>
    private sealed class TensorJob(GgufTensorInfo source, TensorPlan plan)
    {
        public GgufTensorInfo Source { get; } = source;
        public TensorPlan Plan { get; } = plan;
        public float[]? Importance { get; set; }
    }

    private static void Check(TensorJob job, QuantizeRequest request, LoadedImportance? importance, List<string> warnings)
    {
        var t = job.Source;
        var target = job.Plan.TargetType;
        if (!job.Plan.Converts) return;
        var targetTraits = GgmlTypeTraits.Of(target);
        if (!RowCodecs.TryGet(target, out _))
            throw new NotSupportedException($"{t.Name}: KQuant cannot write {targetTraits.Name} yet (supported: {string.Join(", ", RowCodecs.Supported.Select(s => GgmlTypeTraits.Of(s).Name))})");
        if (t.Type != GgmlType.F32 && !RowCodecs.TryGet(t.Type, out _))
            throw new NotSupportedException($"{t.Name}: KQuant cannot read {t.Traits.Name} tensors yet");
        if (t.Traits.IsQuantized && !request.AllowRequantize)
            throw new InvalidDataException($"{t.Name} is already quantized ({t.Traits.Name}); requantizing loses quality, pass --allow-requantize to do it anyway");
        if (t.RowLength % targetTraits.BlockSize != 0)
            throw new InvalidDataException($"{t.Name}: rows of {t.RowLength} are not a multiple of {targetTraits.Name}'s block size {targetTraits.BlockSize}; choose another type for it");

        if (importance is not null && targetTraits.IsQuantized)
        {
            var weights = importance.WeightsFor(t.Name);
            var experts = t.Shape.Length > 2 ? t.Shape[2] : 1;
            if (weights is null)
            {
                warnings.Add($"{t.Name}: no importance data for this tensor; quantizing it without");
            }
            else if (weights.Length != t.RowLength * experts)
            {
                // llama-quantize tolerates this only for token_embd, which imatrix tools never see as a matrix multiplication.
                if (!TensorCategories.IsTokenEmbedding(t.Name))
                    throw new InvalidDataException($"{t.Name}: the importance matrix has {weights.Length} values for it, expected {t.RowLength * experts} ({t.RowLength} columns × {experts} expert(s))");
                warnings.Add($"{t.Name}: importance data has {weights.Length} values, expected {t.RowLength * experts}; quantizing it without");
            }
            else
            {
                job.Importance = weights;
            }
        }
        if (job.Importance is null && job.Plan.RequiresImportanceMatrix)
        {
            var problem = $"{t.Name}: {targetTraits.Name} in a {request.Recipe.Name} file needs an importance matrix (--imatrix); without one the result is garbage";
            if (!request.DryRun) throw new InvalidDataException(problem);
            // As llama-quantize's --dry-run: size the file, and say once that the real run will need an imatrix.
            const string dryRunNote = "this quantization will require an importance matrix (--imatrix)";
            if (!warnings.Contains(dryRunNote)) warnings.Add(dryRunNote);
        }
    }

    private static void Copy(IModelSource input, GgufWriter writer, GgufTensorInfo t, SlabBuffers buffers, CancellationToken cancellation)
    {
        var chunk = buffers.Source(checked((int)Math.Min(t.ByteSize, 8L << 20)));
        for (long offset = 0; offset < t.ByteSize; offset += chunk.Length)
        {
            cancellation.ThrowIfCancellationRequested();
            var part = chunk.AsSpan(0, (int)Math.Min(chunk.Length, t.ByteSize - offset));
            input.ReadTensorBytes(t, offset, part);
            writer.WriteTensorData(part);
        }
    }

    private static void Convert(IModelSource input, GgufWriter writer, TensorJob job, QuantizeRequest request,
        SlabBuffers buffers, CancellationToken cancellation)
    {
        var t = job.Source;
        var target = job.Plan.TargetType;
        var rowLength = checked((int)t.RowLength);
        var sourceRowBytes = checked((int)t.RowByteSize);
        var targetRowBytes = checked((int)GgmlTypeTraits.Of(target).RowBytes(rowLength));
        var rowsPerExpert = t.Shape.Length > 1 ? t.Shape[1] : 1;
        var maxRows = (int)Math.Clamp(request.SlabBytes / (4L * rowLength), 1, int.MaxValue);

        for (long expertStart = 0; expertStart < t.RowCount; expertStart += rowsPerExpert)
        {
            var expertImportance = job.Importance is null
                ? ReadOnlySpan<float>.Empty
                : job.Importance.AsSpan(checked((int)(expertStart / rowsPerExpert * rowLength)), rowLength);
            var expertEnd = Math.Min(t.RowCount, expertStart + rowsPerExpert);
            for (var row = expertStart; row < expertEnd; row += maxRows)
            {
                cancellation.ThrowIfCancellationRequested();
                var rows = (int)Math.Min(maxRows, expertEnd - row);
                var raw = buffers.Source(checked(rows * sourceRowBytes)).AsSpan(0, rows * sourceRowBytes);
                input.ReadTensorBytes(t, row * sourceRowBytes, raw);
                ReadOnlySpan<float> floats;
                if (t.Type == GgmlType.F32)
                {
                    floats = MemoryMarshal.Cast<byte, float>(raw);
                }
                else
                {
                    var f = buffers.Floats(rows * rowLength).AsSpan(0, rows * rowLength);
                    RowCodecs.Get(t.Type).Dequantize(raw, f);
                    floats = f;
                }
                var outBytes = buffers.Target(checked(rows * targetRowBytes)).AsSpan(0, rows * targetRowBytes);
                try
                {
                    RowQuantizer.Quantize(target, floats, outBytes, rowLength, expertImportance, request.Threads, request.Rounding,
                        TensorCategories.IsTokenEmbedding(t.Name) ? RowRole.Lookup : RowRole.Product);
                }
                catch (NonFiniteInputException e)
                {
                    throw new InvalidDataException($"{input.Path}: tensor {t.Name}, row {row + e.Row}: {e.Message[(e.Message.IndexOf(':') + 1)..].Trim()}; refusing to quantize it");
                }
                writer.WriteTensorData(outBytes);
            }
        }
    }

    /// <summary>Reused buffers; sized by the largest slab, so memory stays bounded whatever the model's size.</summary>
    private sealed class SlabBuffers
    {
        private byte[] _source = [];
        private float[] _floats = [];
        private byte[] _target = [];

        public byte[] Source(int bytes) => _source.Length >= bytes ? _source : _source = GC.AllocateUninitializedArray<byte>(bytes);
        public float[] Floats(int count) => _floats.Length >= count ? _floats : _floats = GC.AllocateUninitializedArray<float>(count);
        public byte[] Target(int bytes) => _target.Length >= bytes ? _target : _target = GC.AllocateUninitializedArray<byte>(bytes);
    }

    /// <summary>The importance matrix as llama-quantize uses it: filtered by --include-weights / --exclude-weights.</summary>
    private sealed class LoadedImportance(ImportanceMatrix matrix, IReadOnlyList<string> names)
    {
        public ImportanceMatrix Matrix { get; } = matrix;
        public IReadOnlyList<string> Names { get; } = names;
        private readonly HashSet<string> _names = new(names, StringComparer.Ordinal);
        public float[]? WeightsFor(string name) => _names.Contains(name) ? Matrix.WeightsFor(name) : null;
    }

    private static LoadedImportance? LoadImportance(QuantizeRequest request)
    {
        if (request.ImatrixPath is null) return null;
        if (request.IncludeWeights.Count > 0 && request.ExcludeWeights.Count > 0)
            throw new ArgumentException("--include-weights and --exclude-weights cannot be used together");
        var matrix = ImportanceMatrix.Load(request.ImatrixPath);
        foreach (var (name, entry) in matrix.Entries)
        {
            foreach (var v in entry.Sums)
            {
                if (!float.IsFinite(v)) throw new InvalidDataException($"{request.ImatrixPath}: entry {name} holds a non-finite value ({v})");
            }
        }
        IEnumerable<string> names = matrix.Entries.Keys;
        if (request.ExcludeWeights.Count > 0) names = names.Where(n => !request.ExcludeWeights.Any(x => n.Contains(x, StringComparison.Ordinal)));
        if (request.IncludeWeights.Count > 0) names = names.Where(n => request.IncludeWeights.Any(x => n.Contains(x, StringComparison.Ordinal)));
        var kept = names.ToList();
        return kept.Count == 0 ? null : new LoadedImportance(matrix, kept);
    }

    /// <summary>The input's metadata with llama-quantize's changes, in its order: changed keys move to the end.</summary>
    private static GgufMetadata OutputMetadata(IModelSource input, QuantizeRequest request, LoadedImportance? importance)
    {
        var metadata = new GgufMetadata(input.Metadata);
        void SetAtEnd(string key, GgufValue value)
        {
            metadata.Remove(key);
            metadata.Add(key, value);
        }
        SetAtEnd("general.quantization_version", GgufValue.FromUInt32(QuantizationVersion));
        SetAtEnd("general.file_type", GgufValue.FromUInt32((uint)request.Recipe.FileType));
        metadata.Remove("split.no");
        metadata.Remove("split.count");
        metadata.Remove("split.tensors.count");
        foreach (var o in request.MetadataOverrides) SetAtEnd(o.Key, o.Value);
        if (importance is not null)
        {
            var path = request.ImatrixPath!;
            SetAtEnd(ImatrixFileKey, GgufValue.FromString(path.Length > 127 ? path[..127] : path));
            if (importance.Matrix.Datasets.Count > 0)
            {
                var dataset = importance.Matrix.Datasets[0];
                SetAtEnd(ImatrixDatasetKey, GgufValue.FromString(dataset.Length > 127 ? dataset[..127] : dataset));
            }
            SetAtEnd(ImatrixEntriesKey, GgufValue.FromUInt32((uint)importance.Names.Count));
            if (importance.Matrix.ChunkCount > 0) SetAtEnd(ImatrixChunksKey, GgufValue.FromUInt32((uint)importance.Matrix.ChunkCount));
        }
        return metadata;
    }

    /// <summary>Reads what the recipes need from (overridden) metadata, naming the file and key when something is missing.</summary>
    public static ModelHyperparameters ReadHyperparameters(IGgufMetadataSource metadata, string path)
    {
        var arch = metadata.GetArchitecture() ?? throw new InvalidDataException($"{path}: no general.architecture in the metadata; is this a model file?");
        var blockCountKey = $"{arch}.block_count";
        var layers = metadata.TryGetValue(blockCountKey, out var bc) ? bc.AsInt32()
            : throw new InvalidDataException($"{path}: metadata has no {blockCountKey}");
        int FirstOrScalar(string key, int fallback)
        {
            if (!metadata.TryGetValue(key, out var v)) return fallback;
            if (v.Type != GgufValueType.Array) return v.AsInt32();
            var array = v.AsArray();
            return array.Count == 0 ? fallback : array[0].AsInt32();
        }
        var heads = FirstOrScalar($"{arch}.attention.head_count", 0);
        var kvHeads = FirstOrScalar($"{arch}.attention.head_count_kv", heads);
        var experts = FirstOrScalar($"{arch}.expert_count", 0);
        return new ModelHyperparameters(arch, layers, heads, kvHeads, experts);
    }
}
