using KQuant.Gguf;

namespace KQuant.Quants.Legacy;

/// <summary>GGML_TYPE_Q4_1: 4-bit codes, weight = d·code + m.</summary>
internal sealed class Q41Codec : AffineLegacyCodec<BlockQ41>
{
    public Q41Codec() : this(VectorizedByDefault) { }

    internal Q41Codec(bool vectorized) : base(vectorized) { }

    public override GgmlType Type => GgmlType.Q4_1;
}
