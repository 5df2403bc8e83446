using System.Runtime.InteropServices;
using KQuant.Gguf;

namespace KQuant.Quants.Float;

/// <summary>GGML_TYPE_F32: the floats themselves, copied (ggml_quantize_chunk memcpys them).</summary>
public sealed class F32Codec : IRowCodec
{
    public GgmlType Type => GgmlType.F32;

    public bool UsesImportance => false;

    public void Quantize(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance) =>
        MemoryMarshal.AsBytes(source).CopyTo(destination);

    public void Dequantize(ReadOnlySpan<byte> source, Span<float> destination) =>
        MemoryMarshal.Cast<byte, float>(source).CopyTo(destination);
}
