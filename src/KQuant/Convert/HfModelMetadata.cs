using System.Text.Json;
using KQuant.Gguf;
using KQuant.Recipes;

namespace KQuant.Conversion;

/// <summary>The metadata convert_hf_to_gguf.py (llama.cpp v0.5.0) writes for a Llama, Mistral or Qwen2 folder, before
/// the tokenizer: general.* (ModelBase.prepare_metadata and gguf-py's Metadata), then the hyper-parameters
/// (TextModel.set_gguf_parameters, plus LlamaModel's vocab size and RoPE dimensions), in that order.</summary>
/// <remarks>Not reproduced: model-card (README.md front matter) fields such as license, tags, languages and base models,
/// and --metadata override files.</remarks>
public static class HfModelMetadata
{
    /// <summary>ggml's GGML_QNT_VERSION, which the converter writes into every file.</summary>
    public const uint QuantizationVersion = 2;

    public static GgufMetadata Build(string folder, HfConfig config, LlamaFileType fileType, long parameterCount, int vocabSize, string? nameOverride)
    {
        var arch = config.Architecture.GgufName;
        var metadata = new GgufMetadata();
        metadata.Add(GgufMetadata.ArchitectureKey, GgufValue.FromString(arch));
        metadata.Add("general.type", GgufValue.FromString("model"));
        AddSampling(metadata, folder);
        AddNaming(metadata, folder, config, parameterCount, nameOverride);

        var k = (string name) => $"{arch}.{name}";
        metadata.Add(k("block_count"), GgufValue.FromUInt32((uint)config.BlockCount));
        if (config.FindInteger("max_position_embeddings", "n_ctx", "n_positions", "max_length", "max_sequence_length", "model_max_length") is { } context)
            metadata.Add(k("context_length"), GgufValue.FromUInt32(checked((uint)context)));
        metadata.Add(k("embedding_length"), GgufValue.FromUInt32(checked((uint)config.EmbeddingLength)));
        if (config.FindInteger("intermediate_size", "n_inner", "hidden_dim") is { } feedForward)
            metadata.Add(k("feed_forward_length"), GgufValue.FromUInt32(checked((uint)feedForward)));
        metadata.Add(k("attention.head_count"), GgufValue.FromUInt32((uint)config.HeadCount));
        metadata.Add(k("attention.head_count_kv"), GgufValue.FromUInt32((uint)config.KeyValueHeadCount));
        AddRopeScaling(metadata, config, k);
        if (RopeTheta(config) is { } theta) metadata.Add(k("rope.freq_base"), GgufValue.FromFloat32((float)theta));
        if (config.FindNumber("rms_norm_eps", "norm_eps") is { } eps) metadata.Add(k("attention.layer_norm_rms_epsilon"), GgufValue.FromFloat32((float)eps));
        if (config.HeadDim is { } headDim)
        {
            metadata.Add(k("attention.key_length"), GgufValue.FromUInt32(checked((uint)headDim)));
            metadata.Add(k("attention.value_length"), GgufValue.FromUInt32(checked((uint)headDim)));
        }
        metadata.Add("general.file_type", GgufValue.FromUInt32((uint)fileType));
        if (config.Architecture.WritesVocabSizeAndRopeDimensions)
        {
            metadata.Add(k("vocab_size"), GgufValue.FromUInt32((uint)vocabSize));
            var ropeDimensions = config.FindInteger("head_dim") ?? config.EmbeddingLength / config.HeadCount;
            metadata.Add(k("rope.dimension_count"), GgufValue.FromUInt32(checked((uint)ropeDimensions)));
        }
        metadata.Add("general.quantization_version", GgufValue.FromUInt32(QuantizationVersion));
        return metadata;
    }

    /// <summary>rope_theta, from the rope parameters when they carry one (transformers 5), else config.json.</summary>
    private static double? RopeTheta(HfConfig config)
    {
        if (config.RopeScaling is { } rope && rope.TryGetProperty("rope_theta", out var t) && t.ValueKind == JsonValueKind.Number) return t.GetDouble();
        return config.FindNumber("rope_theta", "rotary_emb_base");
    }

    /// <summary>Linear and YaRN scaling become metadata; llama3 scaling becomes the rope_freqs tensor instead.</summary>
    private static void AddRopeScaling(GgufMetadata metadata, HfConfig config, Func<string, string> k)
    {
        if (config.RopeScaling is not { } rope) return;
        var type = rope.GetString("rope_type") ?? rope.GetString("type");
        double? Number(string key) => rope.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;
        var factor = Number("factor");
        if (type == "linear" && factor is { } linear)
        {
            metadata.Add(k("rope.scaling.type"), GgufValue.FromString("linear"));
            metadata.Add(k("rope.scaling.factor"), GgufValue.FromFloat32((float)linear));
        }
        else if (type == "yarn" && factor is { } yarn)
        {
            metadata.Add(k("rope.scaling.type"), GgufValue.FromString("yarn"));
            metadata.Add(k("rope.scaling.factor"), GgufValue.FromFloat32((float)yarn));
            var original = Number("original_max_position_embeddings")
                ?? throw new InvalidDataException($"{config.Path}: YaRN rope_scaling needs original_max_position_embeddings");
            metadata.Add(k("rope.scaling.original_context_length"), GgufValue.FromUInt32(checked((uint)original)));
            if (Number("extrapolation_factor") is { } ext) metadata.Add(k("rope.scaling.yarn_ext_factor"), GgufValue.FromFloat32((float)ext));
            if ((Number("attention_factor") ?? Number("attn_factor")) is { } attn) metadata.Add(k("rope.scaling.yarn_attn_factor"), GgufValue.FromFloat32((float)attn));
            if (Number("beta_fast") is { } fast) metadata.Add(k("rope.scaling.yarn_beta_fast"), GgufValue.FromFloat32((float)fast));
            if (Number("beta_slow") is { } slow) metadata.Add(k("rope.scaling.yarn_beta_slow"), GgufValue.FromFloat32((float)slow));
        }
        else if (type is "su" or "longrope")
        {
            metadata.Add(k("rope.scaling.type"), GgufValue.FromString("longrope"));
        }
    }

    /// <summary>general.sampling.* from generation_config.json (Metadata.load).</summary>
    private static void AddSampling(GgufMetadata metadata, string folder)
    {
        JsonElement generation;
        try
        {
            if (HfJson.ReadOptional(folder, "generation_config.json") is not { } g) return;
            generation = g;
        }
        catch (InvalidDataException)
        {
            return; // the converter ignores a generation_config.json it cannot parse
        }
        double? Number(params string[] keys)
        {
            foreach (var key in keys)
            {
                if (generation.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number) return v.GetDouble();
            }
            return null;
        }
        if (generation.GetString("sequence") is { } sequence) metadata.Add("general.sampling.sequence", GgufValue.FromString(sequence));
        if (Number("top_k") is { } topK) metadata.Add("general.sampling.top_k", GgufValue.FromInt32((int)topK));
        if (Number("top_p") is { } topP) metadata.Add("general.sampling.top_p", GgufValue.FromFloat32((float)topP));
        if (Number("min_p") is { } minP) metadata.Add("general.sampling.min_p", GgufValue.FromFloat32((float)minP));
        if (Number("xtc_probability") is { } xtcP) metadata.Add("general.sampling.xtc_probability", GgufValue.FromFloat32((float)xtcP));
        if (Number("xtc_threshold") is { } xtcT) metadata.Add("general.sampling.xtc_threshold", GgufValue.FromFloat32((float)xtcT));
        if (Number("temperature") is { } temp) metadata.Add("general.sampling.temp", GgufValue.FromFloat32((float)temp));
        if (Number("penalty_last_n") is { } lastN) metadata.Add("general.sampling.penalty_last_n", GgufValue.FromInt32((int)lastN));
        if (Number("penalty_repeat", "repetition_penalty") is { } repeat) metadata.Add("general.sampling.penalty_repeat", GgufValue.FromFloat32((float)repeat));
        if (Number("mirostat") is { } mirostat) metadata.Add("general.sampling.mirostat", GgufValue.FromInt32((int)mirostat));
        if (Number("mirostat_tau") is { } tau) metadata.Add("general.sampling.mirostat_tau", GgufValue.FromFloat32((float)tau));
        if (Number("mirostat_eta") is { } eta) metadata.Add("general.sampling.mirostat_eta", GgufValue.FromFloat32((float)eta));
    }

    /// <summary>Name and its parts from config.json's _name_or_path when it is an "org/name" id, else the folder name.</summary>
    private static void AddNaming(GgufMetadata metadata, string folder, HfConfig config, long parameterCount, string? nameOverride)
    {
        var nameOrPath = config.Root.GetString("_name_or_path");
        var folderName = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder)));
        string[] ids = nameOrPath is { Length: > 0 } && nameOrPath.Count(c => c == '/') <= 1 ? [nameOrPath, folderName] : [folderName];
        var naming = ModelNaming.FromModelIds(ids, parameterCount);
        metadata.Add("general.name", GgufValue.FromString(nameOverride ?? naming.Name));
        if (naming.Version is { } version) metadata.Add("general.version", GgufValue.FromString(version));
        if (naming.Organization is { } organization) metadata.Add("general.organization", GgufValue.FromString(organization));
        if (naming.Finetune is { } finetune) metadata.Add("general.finetune", GgufValue.FromString(finetune));
        if (naming.Basename is { } basename) metadata.Add("general.basename", GgufValue.FromString(basename));
        metadata.Add("general.size_label", GgufValue.FromString(naming.SizeLabel));
    }
}
