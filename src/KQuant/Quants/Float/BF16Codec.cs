using KQuant.Gguf;

namespace KQuant.Quants.Float;

/// <summary>GGML_TYPE_BF16: bfloat16, as ggml_fp32_to_bf16_row_ref / ggml_bf16_to_fp32_row compute it.</summary>
public sealed class BF16Codec : HalfFloatCodec<Bf16>
{
    public override GgmlType Type => GgmlType.BF16;
}
