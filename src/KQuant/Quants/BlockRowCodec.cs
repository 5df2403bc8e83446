using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using KQuant.Gguf;

namespace KQuant.Quants;

/// <summary>Base of the codecs whose rows are arrays of fixed-size blocks (<typeparamref name="TBlock"/>, laid out byte for
/// byte as ggml's block struct). It reinterprets the row bytes as blocks and picks the code path once, at construction:
/// the AVX2 path when the CPU has it, otherwise the scalar one. Both produce the same bytes; tests build each explicitly.</summary>
internal abstract class BlockRowCodec<TBlock> : IRowCodec where TBlock : unmanaged
{
    protected BlockRowCodec(bool vectorized)
    {
        if (vectorized && !Avx2.IsSupported) throw new PlatformNotSupportedException("the vectorized path needs AVX2");
        Vectorized = vectorized;
    }

    /// <summary>True when the default constructor of a codec picks its AVX2 path.</summary>
    protected static bool VectorizedByDefault => Avx2.IsSupported;

    /// <summary>Whether this instance runs the AVX2 path.</summary>
    public bool Vectorized { get; }

    public abstract GgmlType Type { get; }

    public virtual bool UsesImportance => true;

    public override string ToString() => $"{GetType().Name} ({(Vectorized ? "AVX2" : "scalar")} path)";

    public void Quantize(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance) =>
        QuantizeBlocks(source, UsesImportance ? importance : default, MemoryMarshal.Cast<byte, TBlock>(destination));

    public void Dequantize(ReadOnlySpan<byte> source, Span<float> destination) =>
        DequantizeBlocks(MemoryMarshal.Cast<byte, TBlock>(source), destination);

    /// <summary>Quantizes one row into its blocks; <paramref name="importance"/> is empty or one weight per value.</summary>
    protected abstract void QuantizeBlocks(ReadOnlySpan<float> source, ReadOnlySpan<float> importance, Span<TBlock> blocks);

    protected abstract void DequantizeBlocks(ReadOnlySpan<TBlock> blocks, Span<float> destination);
}
