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

/// <summary>A codec that detects non-finite input in the same pass that encodes it. Worth it only where encoding costs no
/// more than reading the row (F32, a copy): there a separate scan first would double the time. <see cref="RowQuantizer"/>
/// calls <see cref="TryQuantizeFinite"/> instead of scanning and then calling <see cref="IRowCodec.Quantize"/>.</summary>
public interface IFiniteCheckingRowCodec : IRowCodec
{
    /// <summary>Quantizes the row like <see cref="IRowCodec.Quantize"/> and returns true if every value was finite;
    /// otherwise returns false, and the destination holds unspecified bytes.</summary>
    bool TryQuantizeFinite(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance);
}
