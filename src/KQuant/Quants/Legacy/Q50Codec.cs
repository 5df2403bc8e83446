using KQuant.Gguf;

namespace KQuant.Quants.Legacy;

/// <summary>GGML_TYPE_Q5_0: 5-bit codes, weight = d·(code − 16).</summary>
internal sealed class Q50Codec : SymmetricLegacyCodec<BlockQ50>
{
    public Q50Codec() : this(VectorizedByDefault) { }

    internal Q50Codec(bool vectorized) : base(vectorized) { }

    public override GgmlType Type => GgmlType.Q5_0;
}
