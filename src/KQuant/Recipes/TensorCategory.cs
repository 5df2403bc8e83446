namespace KQuant.Recipes;

/// <summary>The role of a weight tensor, as far as the recipes care. Decided from the name alone, by substring, the way
/// llama.cpp v0.5.0 does (tensor_get_category in src/llama-quant.cpp), so that architectures share the rules.</summary>
public enum TensorCategory
{
    TokenEmbedding,
    AttentionQ,
    AttentionV,
    AttentionK,
    AttentionQkv,
    AttentionKvB,
    AttentionOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

public static class TensorCategories
{
    // First match wins; the order matters (e.g. "attn_qkv" before "attn_q", "ffn_gate_inp" counts as ffn_gate).
    private static readonly (string Fragment, TensorCategory Category)[] ByFragment =
    [
        ("attn_qkv.weight", TensorCategory.AttentionQkv),
        ("attn_kv_b.weight", TensorCategory.AttentionKvB),
        ("attn_v.weight", TensorCategory.AttentionV),
        ("attn_k.weight", TensorCategory.AttentionK),
        ("attn_q.weight", TensorCategory.AttentionQ),
        ("attn_output.weight", TensorCategory.AttentionOutput),
        ("ffn_up", TensorCategory.FfnUp),
        ("ffn_gate", TensorCategory.FfnGate),
        ("ffn_down", TensorCategory.FfnDown),
    ];

    public static TensorCategory Of(string tensorName)
    {
        if (tensorName == "output.weight") return TensorCategory.Output;
        if (IsTokenEmbedding(tensorName)) return TensorCategory.TokenEmbedding;
        foreach (var (fragment, category) in ByFragment)
        {
            if (tensorName.Contains(fragment, StringComparison.Ordinal)) return category;
        }
        return TensorCategory.Other;
    }

    public static bool IsTokenEmbedding(string tensorName) =>
        tensorName is "token_embd.weight" or "per_layer_token_embd.weight";

    /// <summary>Value-projection-like tensors, which the recipes treat as the most sensitive attention weights.</summary>
    public static bool IsAttentionValueLike(this TensorCategory category) =>
        category is TensorCategory.AttentionV or TensorCategory.AttentionQkv or TensorCategory.AttentionKvB;
}
