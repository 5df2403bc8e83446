using KQuant.Gguf;

namespace KQuant.Quants;

/// <summary>Quantizes and dequantizes rows of one ggml block format. Implementations are stateless and thread-safe.</summary>
public interface IRowCodec
{
    GgmlType Type { get; }

    /// <summary>True when <see cref="Quantize"/> uses the importance vector (ggml ignores it for some formats, e.g. Q8_0).</summary>
    bool UsesImportance { get; }

    /// <summary>Quantizes one row. <paramref name="source"/>.Length is a multiple of the block size; <paramref name="destination"/>
    /// holds exactly the row's bytes. <paramref name="importance"/> is empty (no importance matrix) or one weight per column.
    /// Inputs are finite (the caller checks).</summary>
    void Quantize(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance);

    /// <summary>Dequantizes one row: <paramref name="destination"/>.Length weights from their stored bytes.</summary>
    void Dequantize(ReadOnlySpan<byte> source, Span<float> destination);
}
