namespace KQuant.Recipes;

/// <summary>The few model facts the recipes depend on, read from a GGUF's metadata.</summary>
/// <param name="Architecture">general.architecture, e.g. "llama".</param>
/// <param name="LayerCount">{arch}.block_count.</param>
/// <param name="HeadCount">{arch}.attention.head_count of layer 0.</param>
/// <param name="HeadCountKv">{arch}.attention.head_count_kv of layer 0 (defaults to the head count).</param>
/// <param name="ExpertCount">{arch}.expert_count, 0 for dense models.</param>
public sealed record ModelHyperparameters(string Architecture, int LayerCount, int HeadCount, int HeadCountKv, int ExpertCount)
{
    /// <summary>Query heads per KV head (0 when there are no KV heads), as llama.cpp's n_gqa().</summary>
    public int GroupedQueryFactor => HeadCountKv == 0 ? 0 : HeadCount / HeadCountKv;

    public bool IsFalcon => Architecture == "falcon";

    /// <summary>llama.cpp's LLM_TYPE_70B, the one model size its recipes single out (8 query heads per attn_v).</summary>
    public bool Is70B => Architecture switch
    {
        "llama" => ExpertCount != 8 && LayerCount == 80 && HeadCount != HeadCountKv,
        "qwen2" or "deci" or "olmo" => LayerCount == 80,
        "jais2" => LayerCount == 68,
        _ => false,
    };
}
