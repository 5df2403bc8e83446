using KQuant.Gguf;
using KQuant.Recipes;

namespace KQuant.Quantization;

/// <summary>What to quantize, into what, and how: the options of llama-quantize.</summary>
public sealed record QuantizeRequest(string InputPath, string OutputPath, QuantRecipe Recipe)
{
    /// <summary>Worker threads for row quantization (default: all cores).</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;
    /// <summary>Every quantizable tensor gets the recipe's default type.</summary>
    public bool Pure { get; init; }
    public GgmlType? OutputTensorType { get; init; }
    public GgmlType? TokenEmbeddingType { get; init; }
    /// <summary>Per-tensor type overrides by regular expression; the first match wins.</summary>
    public IReadOnlyList<TensorTypeOverride> TensorTypeOverrides { get; init; } = [];
    /// <summary>Keep output.weight as stored.</summary>
    public bool LeaveOutputTensor { get; init; }
    /// <summary>Allow input tensors that are already quantized (they are dequantized, then quantized).</summary>
    public bool AllowRequantize { get; init; }
    /// <summary>An importance matrix (llama.cpp GGUF imatrix or legacy .dat).</summary>
    public string? ImatrixPath { get; init; }
    /// <summary>Use the importance matrix only for tensors whose name contains one of these.</summary>
    public IReadOnlyList<string> IncludeWeights { get; init; } = [];
    /// <summary>Do not use the importance matrix for tensors whose name contains one of these.</summary>
    public IReadOnlyList<string> ExcludeWeights { get; init; } = [];
    /// <summary>Metadata to set in the output (and to read the model's hyper-parameters through), in order.</summary>
    public IReadOnlyList<MetadataOverride> MetadataOverrides { get; init; } = [];
    /// <summary>How the block formats round: the optimal search (the default; same formats, lower error), or
    /// <see cref="Quants.RoundingMode.Reference"/> for llama-quantize's bytes.</summary>
    public Quants.RoundingMode Rounding { get; init; } = Quants.RoundingMode.Optimal;
    /// <summary>Plan and size the output without writing it.</summary>
    public bool DryRun { get; init; }
    /// <summary>Replace an existing output file.</summary>
    public bool Overwrite { get; init; }
    /// <summary>Rows quantized per slab are bounded by this many bytes of float32, which bounds memory use.</summary>
    public long SlabBytes { get; init; } = 32L << 20;
}

/// <summary>A --override-kv KEY=TYPE:VALUE: set a metadata key in the output.</summary>
public sealed record MetadataOverride(string Key, GgufValue Value)
{
    /// <summary>Parses llama.cpp's syntax: KEY=int:N, KEY=float:X, KEY=bool:true|false, KEY=str:TEXT (at most 127 characters).
    /// Integers are written as uint32 of their absolute value, floats as float32, as llama-quantize writes them.</summary>
    public static MetadataOverride Parse(string text)
    {
        var eq = text.IndexOf('=');
        if (eq <= 0 || eq >= 128) throw new FormatException($"malformed metadata override '{text}': expected KEY=TYPE:VALUE with a key under 128 characters");
        var key = text[..eq];
        var rest = text[(eq + 1)..];
        var colon = rest.IndexOf(':');
        var kind = colon < 0 ? "" : rest[..colon];
        var value = colon < 0 ? "" : rest[(colon + 1)..];
        return kind switch
        {
            "int" when long.TryParse(value, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var i)
                => new(key, GgufValue.FromUInt32((uint)Math.Abs(i))),
            "float" when double.TryParse(value, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var f)
                => new(key, GgufValue.FromFloat32((float)f)),
            "bool" when value is "true" or "false" => new(key, GgufValue.FromBool(value == "true")),
            "str" when value.Length <= 127 => new(key, GgufValue.FromString(value)),
            "str" => throw new FormatException($"metadata override '{key}': a string value cannot exceed 127 characters"),
            "int" or "float" or "bool" => throw new FormatException($"metadata override '{key}': '{value}' is not a valid {kind}"),
            _ => throw new FormatException($"metadata override '{text}': type must be int, float, bool or str (KEY=TYPE:VALUE)"),
        };
    }
}

/// <summary>How far a quantization has got.</summary>
public sealed record QuantizeProgress(int TensorIndex, int TensorCount, string TensorName, long BytesDone, long BytesTotal);

/// <summary>What a quantization produced.</summary>
public sealed record QuantizeResult(
    ModelPlan Plan,
    TensorTotals Input,
    TensorTotals Output,
    long InputFileBytes,
    long OutputFileBytes,
    string? OutputPath,
    IReadOnlyList<string> Warnings,
    TimeSpan Elapsed);
