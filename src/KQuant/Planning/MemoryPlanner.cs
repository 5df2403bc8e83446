using KQuant.Gguf;
using KQuant.Quantization;
using KQuant.Recipes;

namespace KQuant.Planning;

/// <summary>What running one recipe's file needs, as llama.cpp runs it on a CPU.</summary>
/// <param name="FileBytes">Exact size of the quantized file (weights are memory-mapped, so this much RAM to keep them resident).</param>
/// <param name="KvCacheBytes">K and V caches in F16 for the context length: layers × context × (K + V width) × 2 bytes.</param>
/// <param name="ComputeBytes">An estimate of llama.cpp's compute buffers for one 512-token micro-batch: the logits
/// (vocabulary × batch × 4 bytes) and the largest activations (batch × max(feed-forward, 4 × embedding) × 4 bytes × 4).</param>
public sealed record RecipeFootprint(QuantRecipe Recipe, long FileBytes, double BitsPerWeight, long KvCacheBytes, long ComputeBytes)
{
    public long TotalBytes => FileBytes + KvCacheBytes + ComputeBytes;
}

/// <summary>Sizes every recipe for a model without quantizing it, and says which fit a memory or file-size budget.</summary>
public static class MemoryPlanner
{
    private const int MicroBatch = 512;

    public static IReadOnlyList<RecipeFootprint> Plan(string modelPath, IEnumerable<QuantRecipe> recipes, int contextLength)
    {
        var footprints = new List<RecipeFootprint>();
        using var source = ModelSources.Open(modelPath);
        var shape = ModelShape.Read(source, modelPath);
        foreach (var recipe in recipes)
        {
            var dry = ModelQuantizer.Run(new QuantizeRequest(modelPath, Path.Combine(Path.GetTempPath(), "kquant-plan.gguf"), recipe) { DryRun = true });
            var kv = 2L * shape.Layers * contextLength * (shape.KeyWidth + shape.ValueWidth);
            var compute = 4L * MicroBatch * shape.Vocabulary + 4L * 4 * MicroBatch * Math.Max(shape.FeedForward, 4 * shape.Embedding);
            footprints.Add(new RecipeFootprint(recipe, dry.OutputFileBytes, dry.Output.BitsPerWeight, kv, compute));
        }
        return footprints;
    }

    /// <summary>The recipe with the most bits per weight whose footprint fits both budgets (null: none fits).</summary>
    public static RecipeFootprint? Best(IEnumerable<RecipeFootprint> footprints, long? memoryBudget, long? fileBudget) =>
        footprints
            .Where(f => (memoryBudget is null || f.TotalBytes <= memoryBudget) && (fileBudget is null || f.FileBytes <= fileBudget))
            .OrderByDescending(f => f.BitsPerWeight)
            .FirstOrDefault();

    /// <summary>Physical memory of this machine available to a new process (MemAvailable on Linux), or null when unknown.</summary>
    public static long? AvailableMemory()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
            {
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        var info = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        return info > 0 ? info : null;
    }

    /// <summary>Parses sizes like "8G", "7.5GiB", "500M", "1200000000" (powers of 1024 for suffixes).</summary>
    public static long ParseSize(string text)
    {
        var t = text.Trim().ToUpperInvariant().Replace("IB", "").Replace("B", "");
        var multiplier = 1L;
        if (t.Length > 0 && "KMGT".Contains(t[^1]))
        {
            multiplier = t[^1] switch { 'K' => 1L << 10, 'M' => 1L << 20, 'G' => 1L << 30, _ => 1L << 40 };
            t = t[..^1];
        }
        if (!double.TryParse(t, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var value) || value < 0)
            throw new FormatException($"'{text}' is not a size (expected e.g. 8G, 7.5GiB, 500M or a number of bytes)");
        return (long)(value * multiplier);
    }

    /// <summary>The dimensions the footprint depends on, from the model's metadata.</summary>
    private sealed record ModelShape(int Layers, int Embedding, int FeedForward, int Vocabulary, long KeyWidth, long ValueWidth)
    {
        public static ModelShape Read(IModelSource source, string path)
        {
            var metadata = new GgufMetadata(source.Metadata);
            var model = ModelQuantizer.ReadHyperparameters(metadata, path);
            var arch = model.Architecture;
            var embedding = metadata.GetInt32($"{arch}.embedding_length") ?? throw new InvalidDataException($"{path}: metadata has no {arch}.embedding_length");
            var feedForward = metadata.TryGetValue($"{arch}.feed_forward_length", out var ff) && ff.Type != GgufValueType.Array ? ff.AsInt32() : 4 * embedding;
            var vocabulary = metadata.GetArray("tokenizer.ggml.tokens")?.Count ?? metadata.GetInt32($"{arch}.vocab_size") ?? 0;
            var heads = Math.Max(1, model.HeadCount);
            var headDimK = metadata.GetInt32($"{arch}.attention.key_length") ?? embedding / heads;
            var headDimV = metadata.GetInt32($"{arch}.attention.value_length") ?? embedding / heads;
            return new ModelShape(model.LayerCount, embedding, feedForward, vocabulary, (long)headDimK * model.HeadCountKv, (long)headDimV * model.HeadCountKv);
        }
    }
}
