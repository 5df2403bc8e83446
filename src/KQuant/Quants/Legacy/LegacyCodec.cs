using System.Diagnostics;

namespace KQuant.Quants.Legacy;

/// <summary>The code-path choice shared by the legacy codecs: with an importance vector, ggml's importance path; without
/// one, the reference quantizer on the AVX2 or the scalar path. Dequantization likewise picks its path.</summary>
internal abstract class LegacyCodec<TBlock> : BlockRowCodec<TBlock> where TBlock : unmanaged
{
    protected LegacyCodec(bool vectorized) : base(vectorized) { }

    protected sealed override void QuantizeBlocks(ReadOnlySpan<float> source, ReadOnlySpan<float> importance, Span<TBlock> blocks)
    {
        if (!importance.IsEmpty) QuantizeWeighted(source, importance, blocks);
        else if (Vectorized) QuantizeVector256(source, blocks);
        else QuantizeScalar(source, blocks);
    }

    protected sealed override void DequantizeBlocks(ReadOnlySpan<TBlock> blocks, Span<float> destination)
    {
        if (Vectorized) DequantizeVector256(blocks, destination);
        else DequantizeScalar(blocks, destination);
    }

    protected abstract void QuantizeScalar(ReadOnlySpan<float> source, Span<TBlock> blocks);

    protected abstract void QuantizeVector256(ReadOnlySpan<float> source, Span<TBlock> blocks);

    /// <summary>ggml's quantization with an importance vector. Codecs whose format ignores importance (Q8_0) say so with
    /// <see cref="BlockRowCodec{TBlock}.UsesImportance"/> = false and never get here.</summary>
    protected virtual void QuantizeWeighted(ReadOnlySpan<float> source, ReadOnlySpan<float> importance, Span<TBlock> blocks) =>
        throw new UnreachableException($"{Type} ignores importance, so it is never passed one");

    protected abstract void DequantizeScalar(ReadOnlySpan<TBlock> blocks, Span<float> destination);

    protected abstract void DequantizeVector256(ReadOnlySpan<TBlock> blocks, Span<float> destination);
}
