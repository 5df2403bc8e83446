using System.Globalization;
using KQuant.Gguf;

namespace KQuant.Model;

/// <summary>How RoPE pairs the values of a head: llama rotates adjacent pairs (2i, 2i+1), GPT-NeoX-style models such
/// as qwen2 rotate (i, i + d/2). llama.cpp fixes the style per architecture (llama_model_rope_type).</summary>
public enum RopeStyle
{
    Normal,
    NeoX,
}

/// <summary>{arch}.rope.scaling.type.</summary>
public enum RopeScaling
{
    None,
    Linear,
    Yarn,
}

/// <summary>RoPE as llama.cpp v0.5.0 applies it by default (no user overrides): the model's base and scaling, with
/// YaRN's extrapolation mix and magnitude factor derived as llama_context does.</summary>
/// <param name="Dimensions">Rotated values per head (n_rot).</param>
/// <param name="FreqBase">rope.freq_base (10000 when absent).</param>
/// <param name="FreqScale">1 / rope.scaling.factor (1 when absent or when scaling is none).</param>
/// <param name="OriginalContext">rope.scaling.original_context_length, else the training context.</param>
/// <param name="ExtFactor">YaRN extrapolation mix: 1 for YaRN, 0 otherwise.</param>
/// <param name="AttnFactor">Magnitude factor handed to the rotation.</param>
/// <param name="BetaFast">YaRN's low correction dimension (llama.cpp's default 32).</param>
/// <param name="BetaSlow">YaRN's high correction dimension (default 1).</param>
public sealed record RopeConfig(int Dimensions, RopeStyle Style, float FreqBase, float FreqScale, RopeScaling Scaling,
    int OriginalContext, float ExtFactor, float AttnFactor, float BetaFast = 32f, float BetaSlow = 1f);

/// <summary>The hyperparameters of a llama-family model (llama, mistral-style GQA, qwen2) read from GGUF metadata the way
/// llama.cpp v0.5.0 reads them (llama_model_base::load_hparams and the per-architecture loaders).</summary>
public sealed record LlamaConfig
{
    /// <summary>Architectures the forward pass runs, with the RoPE style llama.cpp uses for each.</summary>
    public static IReadOnlyDictionary<string, RopeStyle> SupportedArchitectures { get; } = new Dictionary<string, RopeStyle>
    {
        ["llama"] = RopeStyle.Normal,
        ["qwen2"] = RopeStyle.NeoX,
    };

    public required string Architecture { get; init; }
    public required int EmbeddingLength { get; init; }
    public required int LayerCount { get; init; }
    public required int FeedForwardLength { get; init; }
    public required int HeadCount { get; init; }
    public required int HeadCountKv { get; init; }
    /// <summary>Values per query/key head (attention.key_length, default embedding / heads).</summary>
    public required int HeadDimension { get; init; }
    public required float RmsNormEpsilon { get; init; }
    public required int TrainingContextLength { get; init; }
    public required RopeConfig Rope { get; init; }
    public required int ExpertCount { get; init; }
    public required int ExpertUsedCount { get; init; }

    /// <summary>Query heads sharing one KV head.</summary>
    public int GroupSize => HeadCount / HeadCountKv;

    public int QueryLength => HeadCount * HeadDimension;

    public int KvLength => HeadCountKv * HeadDimension;

    /// <summary>Scale of the attention scores: 1/sqrt(head dimension) (llama.cpp's kq_scale for llama and qwen2).</summary>
    public float AttentionScale => 1f / MathF.Sqrt(HeadDimension);

    /// <summary>Reads the configuration; throws <see cref="ModelNotSupportedException"/> for an architecture or a
    /// setting the forward pass does not implement, and <see cref="InvalidDataException"/> when a key it needs is
    /// missing or inconsistent.</summary>
    public static LlamaConfig Read(IGgufMetadataSource metadata)
    {
        var arch = metadata.GetArchitecture() ?? throw new InvalidDataException($"no {GgufMetadata.ArchitectureKey} in the metadata");
        if (!SupportedArchitectures.TryGetValue(arch, out var style))
        {
            throw new ModelNotSupportedException(
                $"architecture '{arch}' is not supported; KQuant runs {string.Join(", ", SupportedArchitectures.Keys)} (including mistral-style GQA models, which GGUF files label llama)");
        }
        string Key(string name) => $"{arch}.{name}";
        int Required(string name) => metadata.GetInt32(Key(name)) ?? throw new InvalidDataException($"missing metadata key '{Key(name)}'");

        var embedding = Required("embedding_length");
        var layers = Required("block_count");
        var heads = PerLayerConstant(metadata, Key("attention.head_count"), layers) ?? throw new InvalidDataException($"missing metadata key '{Key("attention.head_count")}'");
        var kvHeads = PerLayerConstant(metadata, Key("attention.head_count_kv"), layers) ?? heads;
        var feedForward = PerLayerConstant(metadata, Key("feed_forward_length"), layers) ?? throw new InvalidDataException($"missing metadata key '{Key("feed_forward_length")}'");
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0)
            throw new InvalidDataException($"{heads} attention heads cannot share {kvHeads} KV heads evenly");
        var headDim = metadata.GetInt32(Key("attention.key_length")) ?? embedding / heads;
        var valueDim = metadata.GetInt32(Key("attention.value_length")) ?? embedding / heads;
        if (valueDim != headDim)
            throw new ModelNotSupportedException($"key length {headDim} and value length {valueDim} differ; llama.cpp's {arch} graph requires them equal");
        var rot = metadata.GetInt32(Key("rope.dimension_count")) ?? headDim;
        if (rot != headDim)
            throw new ModelNotSupportedException($"RoPE over {rot} of {headDim} values per head is not supported for {arch} (llama.cpp requires all)");
        var trainingContext = Required("context_length");

        var expertCount = metadata.GetInt32(Key("expert_count")) ?? 0;
        if (expertCount <= 1) expertCount = 0;
        var expertUsed = expertCount == 0 ? 0 : PerLayerConstant(metadata, Key("expert_used_count"), layers) ?? 0;
        if (expertCount > 0 && (expertUsed <= 0 || expertUsed > expertCount))
            throw new InvalidDataException($"{Key("expert_used_count")} must be between 1 and {expertCount}, not {expertUsed}");
        if (expertCount > 0 && arch != "llama")
            throw new ModelNotSupportedException($"mixture-of-experts {arch} models are not supported; KQuant runs experts in the llama architecture only");
        if ((metadata.GetInt32(Key("expert_group_count")) ?? 0) > 1)
            throw new ModelNotSupportedException("grouped expert selection (expert_group_count) is not supported");
        if (metadata.TryGetValue(Key("attention.sliding_window"), out _))
            throw new ModelNotSupportedException("sliding-window attention is not supported");

        return new LlamaConfig
        {
            Architecture = arch,
            EmbeddingLength = embedding,
            LayerCount = layers,
            FeedForwardLength = feedForward,
            HeadCount = heads,
            HeadCountKv = kvHeads,
            HeadDimension = headDim,
            RmsNormEpsilon = metadata.GetSingle(Key("attention.layer_norm_rms_epsilon")) ?? throw new InvalidDataException($"missing metadata key '{Key("attention.layer_norm_rms_epsilon")}'"),
            TrainingContextLength = trainingContext,
            Rope = ReadRope(metadata, arch, style, rot, trainingContext),
            ExpertCount = expertCount,
            ExpertUsedCount = expertUsed,
        };
    }

    // llama_context's defaults: scaling type from the model, freq_scale = 1/factor, YaRN ext_factor 1 and its attention
    // factor mscale(factor)/(1 + 0.1 ln factor) (which cancels rope_yarn's own correction) times rope.scaling.attn_factor.
    private static RopeConfig ReadRope(IGgufMetadataSource metadata, string arch, RopeStyle style, int dimensions, int trainingContext)
    {
        string Key(string name) => $"{arch}.{name}";
        var freqBase = metadata.GetSingle(Key("rope.freq_base")) ?? 10000f;
        var scalingName = metadata.GetString(Key("rope.scaling.type")) ?? "linear";
        var scaling = scalingName switch
        {
            "none" => RopeScaling.None,
            "linear" => RopeScaling.Linear,
            "yarn" => RopeScaling.Yarn,
            _ => throw new ModelNotSupportedException($"RoPE scaling '{scalingName}' is not supported (KQuant applies none, linear and yarn)"),
        };
        var factor = metadata.GetSingle(Key("rope.scaling.factor")) ?? metadata.GetSingle(Key("rope.scale_linear")) ?? 0f;
        var freqScale = factor == 0f ? 1f : 1f / factor;
        if (scaling == RopeScaling.None) freqScale = 1f;
        var originalContext = metadata.GetInt32(Key("rope.scaling.original_context_length")) ?? trainingContext;
        var ropeAttnFactor = metadata.GetSingle(Key("rope.scaling.attn_factor")) ?? 1f;

        float extFactor = 0f, attnFactor = 1f;
        if (scaling == RopeScaling.Yarn)
        {
            extFactor = 1f;
            var f = 1f / freqScale;
            var mscale = f <= 1f ? 1f : 0.1f * MathF.Log(f) + 1f;
            attnFactor = mscale * (1f / (1f + 0.1f * MathF.Log(f)));
        }
        attnFactor *= ropeAttnFactor;
        return new RopeConfig(dimensions, style, freqBase, freqScale, scaling, originalContext, extFactor, attnFactor);
    }

    // llama.cpp's get_key_or_arr: a scalar, or an array with one value per layer. The forward pass needs one value.
    private static int? PerLayerConstant(IGgufMetadataSource metadata, string key, int layers)
    {
        if (!metadata.TryGetValue(key, out var value)) return null;
        if (value.Type != GgufValueType.Array) return value.AsInt32();
        var items = value.AsArray();
        if (items.Count != layers) throw new InvalidDataException($"metadata key '{key}' has {items.Count} values for {layers} layers");
        var first = items[0].AsInt32();
        for (var i = 1; i < items.Count; i++)
        {
            if (items[i].AsInt32() != first)
                throw new ModelNotSupportedException($"'{key}' varies across layers ({first}, {items[i].AsInt32().ToString(CultureInfo.InvariantCulture)}, ...), which KQuant does not run");
        }
        return first;
    }
}
