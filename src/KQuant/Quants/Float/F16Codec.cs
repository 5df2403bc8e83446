using KQuant.Gguf;

namespace KQuant.Quants.Float;

/// <summary>GGML_TYPE_F16: IEEE binary16, as ggml_fp32_to_fp16_row / ggml_fp16_to_fp32_row compute it.</summary>
public sealed class F16Codec : HalfFloatCodec<Fp16>
{
    public override GgmlType Type => GgmlType.F16;
}
