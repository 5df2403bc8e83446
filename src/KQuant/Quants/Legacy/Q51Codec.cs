using KQuant.Gguf;

namespace KQuant.Quants.Legacy;

/// <summary>GGML_TYPE_Q5_1: 5-bit codes, weight = d·code + m.</summary>
internal sealed class Q51Codec : AffineLegacyCodec<BlockQ51>
{
    public Q51Codec() : this(VectorizedByDefault) { }

    internal Q51Codec(bool vectorized) : base(vectorized) { }

    public override GgmlType Type => GgmlType.Q5_1;
}
