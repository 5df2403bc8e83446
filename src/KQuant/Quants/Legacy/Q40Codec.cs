using KQuant.Gguf;

namespace KQuant.Quants.Legacy;

/// <summary>GGML_TYPE_Q4_0: 4-bit codes, weight = d·(code − 8).</summary>
internal sealed class Q40Codec : SymmetricLegacyCodec<BlockQ40>
{
    public Q40Codec() : this(VectorizedByDefault) { }

    internal Q40Codec(bool vectorized) : base(vectorized) { }

    public override GgmlType Type => GgmlType.Q4_0;
}
