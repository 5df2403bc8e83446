using System.Runtime.InteropServices;
using KQuant.Gguf;

namespace KQuant.Quants.Float;

/// <summary>Rows stored as 16-bit floats: a plain element-wise conversion, no blocks, no importance.</summary>
public abstract class HalfFloatCodec<TFormat> : IRowCodec where TFormat : IHalfFloatFormat
{
    public abstract GgmlType Type { get; }

    public bool UsesImportance => false;

    public void Quantize(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance) =>
        HalfFloatRows.FromFloat<TFormat>(source, MemoryMarshal.Cast<byte, ushort>(destination));

    public void Dequantize(ReadOnlySpan<byte> source, Span<float> destination) =>
        HalfFloatRows.ToFloat<TFormat>(MemoryMarshal.Cast<byte, ushort>(source), destination);
}
