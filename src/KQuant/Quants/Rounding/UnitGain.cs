using System.Buffers.Binary;
using KQuant.Gguf;

namespace KQuant.Quants;

/// <summary>
/// The optimal path's last step for every block: rescale the block's fp16 scale(s) so that its dequantized weights y have
/// unit gain against the original x, Σ c·x·y = Σ c·x² (c the column importance, 1 without an imatrix).
/// A least-squares fit is a projection: it shrinks, Σ c·x·y = Σ c·y² &lt; Σ c·x², by exactly the error it leaves. The
/// shrink is the same sign in every block of every matrix, so unlike the rest of the error it does not average out in a
/// product: it scales every layer's output down a little and flattens the logits. On debdocs-llama-10m the searched
/// encodings had gains of 0.994–0.998 (IQ4_XS, Q4_K) against the reference's 0.997–1.000, which is why their perplexity
/// came out above the reference's although their KL divergence was lower; at unit gain both fall
/// (src/KQuant/Quants/README.md). The weighted error grows by about (1 − g)² of the signal, a fraction of a percent.
/// </summary>
internal static class UnitGain
{
    /// <summary>Gains outside this range are not corrected: a block that far from its data is degenerate (all but a few
    /// weights zero, or huge values that overflowed fp16), and rescaling would not help it.</summary>
    private const double LowestGain = 0.8, HighestGain = 1.25;

    /// <summary>Byte offsets of the fp16 fields that scale a whole block of <paramref name="type"/> (d, and dmin or m for the
    /// formats with a min): multiplying each by f multiplies every dequantized weight by f.</summary>
    public static ReadOnlySpan<int> ScaleOffsets(GgmlType type) => type switch
    {
        GgmlType.Q4_0 or GgmlType.Q5_0 or GgmlType.Q8_0 or GgmlType.IQ4_NL or GgmlType.IQ4_XS => [0],
        GgmlType.Q4_1 or GgmlType.Q5_1 or GgmlType.Q4_K or GgmlType.Q5_K => [0, 2],
        GgmlType.Q2_K => [80, 82],
        GgmlType.Q3_K => [108],
        GgmlType.Q6_K => [208],
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "no unit-gain correction for this format"),
    };

    /// <summary>Multiplies the block's fp16 scales by <paramref name="factor"/> (each rounded to fp16 as ggml rounds).</summary>
    public static void Rescale(GgmlType type, Span<byte> block, float factor)
    {
        foreach (var offset in ScaleOffsets(type))
        {
            var field = block.Slice(offset, 2);
            var value = (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(field));
            BinaryPrimitives.WriteUInt16LittleEndian(field, BitConverter.HalfToUInt16Bits(GgmlFp16.FromSingle(value * factor)));
        }
    }

    /// <summary>Rescales one encoded block to unit gain against <paramref name="x"/> under importance <paramref name="c"/>
    /// (empty: 1), unless its gain is degenerate or the rescaled block would not decode to finite values.
    /// <paramref name="scratch"/> holds x.Length floats.</summary>
    public static void Correct(IRowCodec codec, Span<byte> block, ReadOnlySpan<float> x, ReadOnlySpan<float> c, Span<float> scratch)
    {
        codec.Dequantize(block, scratch);
        double xy = 0, xx = 0;
        for (var j = 0; j < x.Length; j++)
        {
            double cj = c.IsEmpty ? 1 : c[j];
            xy += cj * x[j] * scratch[j];
            xx += cj * x[j] * x[j];
        }
        var gain = xy / xx;
        if (!(gain >= LowestGain && gain <= HighestGain) || gain == 1) return;
        Span<byte> original = stackalloc byte[block.Length];
        block.CopyTo(original);
        Rescale(codec.Type, block, (float)(1 / gain));
        codec.Dequantize(block, scratch);
        foreach (var value in scratch)
        {
            if (!float.IsFinite(value))
            {
                original.CopyTo(block);
                return;
            }
        }
    }

    /// <summary>Applies <see cref="Correct"/> to every block of an encoded row: the reference encoding at unit gain, which the
    /// optimal path's result is never worse than.</summary>
    public static void CorrectRow(IRowCodec codec, Span<byte> row, ReadOnlySpan<float> x, ReadOnlySpan<float> importance)
    {
        var traits = GgmlTypeTraits.Of(codec.Type);
        var blockBytes = (int)traits.RowBytes(traits.BlockSize);
        Span<float> scratch = stackalloc float[traits.BlockSize];
        for (var b = 0; b < x.Length / traits.BlockSize; b++)
        {
            Correct(codec, row.Slice(b * blockBytes, blockBytes), x.Slice(b * traits.BlockSize, traits.BlockSize),
                importance.IsEmpty ? default : importance.Slice(b * traits.BlockSize, traits.BlockSize), scratch);
        }
    }
}
