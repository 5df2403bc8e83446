using System.Text.RegularExpressions;

namespace KQuant.Conversion;

/// <summary>Hugging Face tensor names of Llama, Mistral and Qwen2 checkpoints and their llama.cpp (GGUF) names, as
/// gguf-py's tensor_mapping.py maps them for these architectures.</summary>
public static partial class HfTensorNames
{
    private static readonly Dictionary<string, string> Global = new(StringComparer.Ordinal)
    {
        ["model.embed_tokens"] = "token_embd",
        ["model.norm"] = "output_norm",
        ["lm_head"] = "output",
    };

    private static readonly Dictionary<string, string> PerLayer = new(StringComparer.Ordinal)
    {
        ["input_layernorm"] = "attn_norm",
        ["self_attn.q_proj"] = "attn_q",
        ["self_attn.k_proj"] = "attn_k",
        ["self_attn.v_proj"] = "attn_v",
        ["self_attn.o_proj"] = "attn_output",
        ["post_attention_layernorm"] = "ffn_norm",
        ["mlp.gate_proj"] = "ffn_gate",
        ["mlp.up_proj"] = "ffn_up",
        ["mlp.down_proj"] = "ffn_down",
    };

    /// <summary>What the converter does with one checkpoint tensor.</summary>
    public enum Role
    {
        /// <summary>Any tensor written as it is (after dtype conversion).</summary>
        Plain,
        /// <summary>attn_q: rows permuted with the attention head count.</summary>
        Query,
        /// <summary>attn_k: rows permuted with the key/value head count.</summary>
        Key,
    }

    /// <summary>The GGUF name of <paramref name="hfName"/>, or null for tensors the converter drops (RoPE inverse
    /// frequencies, attention masks). Throws <see cref="InvalidDataException"/> for names it cannot map.</summary>
    public static string? Map(string hfName, int blockCount, string checkpointPath, out Role role)
    {
        role = Role.Plain;
        // convert_hf_to_gguf.py skips these: HF recomputes them, llama.cpp does not use them.
        if (hfName.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal) || hfName.EndsWith(".attention.masked_bias", StringComparison.Ordinal)
            || hfName.EndsWith(".attention.bias", StringComparison.Ordinal))
            return null;
        var suffix = hfName.EndsWith(".weight", StringComparison.Ordinal) ? ".weight"
            : hfName.EndsWith(".bias", StringComparison.Ordinal) ? ".bias"
            : throw Unmapped(hfName, checkpointPath);
        var stem = hfName[..^suffix.Length];
        if (Global.TryGetValue(stem, out var global)) return global + suffix;

        var match = LayerName().Match(stem);
        if (!match.Success || !PerLayer.TryGetValue(match.Groups[2].Value, out var part)) throw Unmapped(hfName, checkpointPath);
        var digits = match.Groups[1].Value;
        if (digits.Length > 1 && digits[0] == '0' || !int.TryParse(digits, out var block) || block >= blockCount)
            throw new InvalidDataException($"{checkpointPath}: tensor {hfName} belongs to layer {digits}, but config.json has {blockCount} layers");
        role = part switch
        {
            "attn_q" => Role.Query,
            "attn_k" => Role.Key,
            _ => Role.Plain,
        };
        return $"blk.{block}.{part}{suffix}";
    }

    private static InvalidDataException Unmapped(string hfName, string checkpointPath) =>
        new($"{checkpointPath}: cannot map tensor {hfName} to a llama.cpp name (expected model.embed_tokens, model.layers.N.{{{string.Join(",", PerLayer.Keys)}}}, model.norm, lm_head)");

    [GeneratedRegex(@"^model\.layers\.([0-9]+)\.(.+)$", RegexOptions.CultureInvariant)]
    private static partial Regex LayerName();
}
