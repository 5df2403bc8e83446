using System.Text.Json;

namespace KQuant.Conversion;

/// <summary>A Hugging Face architecture KQuant converts, and what convert_hf_to_gguf.py (llama.cpp v0.5.0) does for it.</summary>
/// <param name="HfName">The class named in config.json's "architectures", e.g. LlamaForCausalLM.</param>
/// <param name="GgufName">general.architecture of the output, e.g. llama.</param>
/// <param name="PermutesQueryKey">Llama-family checkpoints store q/k rows in the rotate-half order of HF's RoPE; llama.cpp
/// wants each head's two halves interleaved, so their rows are permuted (LlamaModel.permute).</param>
/// <param name="WritesVocabSizeAndRopeDimensions">LlamaModel adds {arch}.vocab_size and {arch}.rope.dimension_count;
/// Qwen2Model does not.</param>
/// <param name="Defaults">config.json values that transformers' config class (4.57, the version llama.cpp's converter
/// pins) fills in when the file leaves them out; the converter reads the filled-in config.</param>
/// <param name="HeadDimDefaultsToEmbeddingPerHead">The config class sets head_dim = hidden_size / num_attention_heads when
/// absent (LlamaConfig, MistralConfig), so the converter writes key/value lengths even for configs without one.</param>
public sealed record HfArchitecture(string HfName, string GgufName, bool PermutesQueryKey, bool WritesVocabSizeAndRopeDimensions,
    IReadOnlyDictionary<string, double> Defaults, bool HeadDimDefaultsToEmbeddingPerHead)
{
    public static IReadOnlyList<HfArchitecture> Supported { get; } =
    [
        new("LlamaForCausalLM", "llama", true, true,
            new Dictionary<string, double> { ["max_position_embeddings"] = 2048, ["rms_norm_eps"] = 1e-6, ["rope_theta"] = 10000 }, true),
        // convert_hf_to_gguf.py registers MistralForCausalLM with LlamaModel: the same tensors, permutation and keys.
        new("MistralForCausalLM", "llama", true, true,
            new Dictionary<string, double> { ["max_position_embeddings"] = 4096 * 32, ["rms_norm_eps"] = 1e-6, ["rope_theta"] = 10000 }, true),
        // Qwen2 keeps HF's q/k layout (llama.cpp runs it with NEOX-style RoPE) and has q/k/v biases.
        new("Qwen2ForCausalLM", "qwen2", false, false,
            new Dictionary<string, double> { ["max_position_embeddings"] = 32768, ["rms_norm_eps"] = 1e-6, ["rope_theta"] = 10000 }, false),
    ];

    public static string SupportedNames => string.Join(", ", Supported.Select(a => a.HfName));
}

/// <summary>config.json of a Hugging Face model folder: the architecture and the hyper-parameters the converter needs,
/// with transformers' defaults for values the file leaves out.</summary>
public sealed class HfConfig
{
    private readonly JsonElement _root;

    private HfConfig(string path, JsonElement root, HfArchitecture architecture)
    {
        Path = path;
        _root = root;
        Architecture = architecture;
    }

    public string Path { get; }

    public HfArchitecture Architecture { get; }

    /// <summary>The parsed JSON (a detached copy), for keys this class does not wrap.</summary>
    public JsonElement Root => _root;

    public static HfConfig Load(string folder)
    {
        var path = System.IO.Path.Combine(folder, "config.json");
        if (!File.Exists(path))
            throw new FileNotFoundException($"{folder} has no config.json; a Hugging Face model folder needs one (supported architectures: {HfArchitecture.SupportedNames})", path);
        var root = HfJson.ReadObject(path);
        if (!root.TryGetProperty("architectures", out var list) || list.ValueKind != JsonValueKind.Array || list.GetArrayLength() == 0
            || list[0].ValueKind != JsonValueKind.String)
            throw new InvalidDataException($"{path}: no \"architectures\" list naming the model class (supported: {HfArchitecture.SupportedNames})");
        var name = list[0].GetString()!;
        var architecture = HfArchitecture.Supported.FirstOrDefault(a => a.HfName == name)
            ?? throw new InvalidDataException($"{path}: architecture {name} is not supported; kquant convert supports {HfArchitecture.SupportedNames}");
        return new HfConfig(path, root, architecture);
    }

    /// <summary>The first of <paramref name="keys"/> present as an integer, else the architecture's default, else null
    /// (convert_hf_to_gguf.py's find_hparam).</summary>
    public long? FindInteger(params string[] keys)
    {
        foreach (var key in keys)
        {
            if (!_root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) continue;
            if (v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var n)) return n;
            throw new InvalidDataException($"{Path}: \"{key}\" is {v.GetRawText()}, expected an integer");
        }
        foreach (var key in keys)
        {
            if (Architecture.Defaults.TryGetValue(key, out var d)) return (long)d;
        }
        return null;
    }

    public double? FindNumber(params string[] keys)
    {
        foreach (var key in keys)
        {
            if (!_root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) continue;
            if (v.ValueKind == JsonValueKind.Number) return v.GetDouble();
            throw new InvalidDataException($"{Path}: \"{key}\" is {v.GetRawText()}, expected a number");
        }
        foreach (var key in keys)
        {
            if (Architecture.Defaults.TryGetValue(key, out var d)) return d;
        }
        return null;
    }

    public long RequireInteger(params string[] keys) =>
        FindInteger(keys) ?? throw new InvalidDataException($"{Path}: missing \"{keys[0]}\"");

    public int BlockCount => checked((int)RequireInteger("num_hidden_layers", "n_layers", "n_layer", "num_layers"));

    public int HeadCount => checked((int)RequireInteger("num_attention_heads", "n_head", "n_heads"));

    /// <summary>num_key_value_heads; transformers' configs default it to the head count.</summary>
    public int KeyValueHeadCount => checked((int)(FindInteger("num_key_value_heads", "n_kv_heads") ?? HeadCount));

    public long EmbeddingLength => RequireInteger("hidden_size", "n_embd", "dim");

    /// <summary>head_dim as the converter sees it: from the file, or hidden_size / heads where transformers fills it in.</summary>
    public long? HeadDim => FindInteger("head_dim") ?? (Architecture.HeadDimDefaultsToEmbeddingPerHead ? EmbeddingLength / HeadCount : null);

    /// <summary>The rope scaling dictionary (rope_scaling, or transformers 5's rope_parameters), or null.</summary>
    public JsonElement? RopeScaling =>
        (_root.TryGetProperty("rope_parameters", out var p) && p.ValueKind == JsonValueKind.Object) ? p
        : (_root.TryGetProperty("rope_scaling", out var s) && s.ValueKind == JsonValueKind.Object) ? s
        : null;
}

/// <summary>Reading the JSON files of a model folder, with errors that name the file.</summary>
internal static class HfJson
{
    private static readonly JsonDocumentOptions Options = new() { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip };

    /// <summary>The file's root object (detached from the document).</summary>
    public static JsonElement ReadObject(string path)
    {
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(path), Options);
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{path}: expected a JSON object, found {document.RootElement.ValueKind}");
            return document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON (line {e.LineNumber + 1}): {e.Message}", e);
        }
    }

    /// <summary>The root object of <paramref name="folder"/>/<paramref name="name"/>, or null when the file is absent.</summary>
    public static JsonElement? ReadOptional(string folder, string name)
    {
        var path = System.IO.Path.Combine(folder, name);
        return File.Exists(path) ? ReadObject(path) : null;
    }

    public static string? GetString(this JsonElement element, string key) =>
        element.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    public static bool? GetBool(this JsonElement element, string key) =>
        element.TryGetProperty(key, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;
}
