using System.Buffers.Binary;
using System.Numerics;
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
/// The super-block formats and IQ4_NL take it (<see cref="Applies"/>). The legacy formats do not: on stories260K, whose
/// recipes fall back to Q4_0, Q5_0, Q8_0 and IQ4_NL, unit gain on their 32-weight blocks raised the KLD of every row by
/// 0.1–1.5%. IQ4_NL, searched on c·sqrt(σ² + x²) since, gains from it (debdocs-llama-10m without an imatrix: ×1.003 of
/// the reference's KLD without unit gain, ×0.982 with it).
/// </summary>
internal static class UnitGain
{
    /// <summary>Gains outside this range are not corrected: a block that far from its data is degenerate (all but a few
    /// weights zero, or huge values that overflowed fp16), and rescaling would not help it.</summary>
    internal const double LowestGain = 0.8, HighestGain = 1.25;

    /// <summary>Whether the optimal path brings blocks of <paramref name="type"/> to unit gain: the super-block formats and
    /// IQ4_NL, the ones <see cref="ScaleOffsets"/> lists.</summary>
    public static bool Applies(GgmlType type) => !ScaleOffsets(type).IsEmpty;

    /// <summary>Byte offsets of the fp16 fields that scale a whole block of <paramref name="type"/> (d, and dmin for the
    /// formats with a min): multiplying each by f multiplies every dequantized weight by f. Empty for the formats that
    /// take no unit-gain correction.</summary>
    private static ReadOnlySpan<int> ScaleOffsets(GgmlType type) => type switch
    {
        GgmlType.IQ4_XS or GgmlType.IQ4_NL => [0],
        GgmlType.Q4_K or GgmlType.Q5_K => [0, 2],
        GgmlType.Q2_K => [80, 82],
        GgmlType.Q3_K => [108],
        GgmlType.Q6_K => [208],
        _ => [],
    };

    /// <summary>Multiplies the block's fp16 scales by <paramref name="factor"/> (each rounded to fp16 as ggml rounds).</summary>
    public static void Rescale(GgmlType type, Span<byte> block, float factor)
    {
        var offsets = ScaleOffsets(type);
        if (offsets.IsEmpty) throw new ArgumentOutOfRangeException(nameof(type), type, "no unit-gain correction for this format");
        foreach (var offset in offsets)
        {
            var field = block.Slice(offset, 2);
            var value = (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(field));
            BinaryPrimitives.WriteUInt16LittleEndian(field, BitConverter.HalfToUInt16Bits(GgmlFp16.FromSingle(value * factor)));
        }
    }

    /// <summary>Rescales one encoded block to unit gain against <paramref name="x"/> under importance <paramref name="c"/>
    /// (empty: 1), unless its gain is degenerate or a rescaled scale field would overflow fp16. On return
    /// <paramref name="decoded"/> (x.Length floats) holds the block as it now decodes, unless <paramref name="decodeResult"/>
    /// is false (then it holds the block as it decoded before). False when the block was left as it was for one of those
    /// reasons.</summary>
    public static bool Correct(IRowCodec codec, Span<byte> block, ReadOnlySpan<float> x, ReadOnlySpan<float> c, Span<float> decoded,
        bool decodeResult = true)
    {
        codec.Dequantize(block, decoded);
        var gain = Gain(x, decoded, c);
        if (gain == 1) return true;
        if (!(gain >= LowestGain && gain <= HighestGain)) return false;
        // Finite scale fields decode to finite weights (the largest fp16 times the largest sub-block scale and level is
        // far inside float's range), so the fields are what to check.
        if (!TryRescale(codec.Type, block, (float)(1 / gain))) return false;
        if (decodeResult) codec.Dequantize(block, decoded);
        return true;
    }

    /// <summary><see cref="Rescale"/>, unless a rescaled field would not be finite (then the block is left unchanged).</summary>
    private static bool TryRescale(GgmlType type, Span<byte> block, float factor)
    {
        foreach (var offset in ScaleOffsets(type))
        {
            var value = (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(block.Slice(offset, 2)));
            if (!float.IsFinite((float)GgmlFp16.FromSingle(value * factor))) return false;
        }
        Rescale(type, block, factor);
        return true;
    }

    /// <summary>Σc·x·y / Σc·x² (c empty: 1); NaN when x is all zero where c is not. The sums run in float over four sets
    /// of lanes (a few ulps of the gain, far below the fp16 rounding of the rescaled scales) and are added in double.</summary>
    public static double Gain(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> c)
    {
        var count = Vector<float>.Count;
        Vector<float> xy0 = default, xy1 = default, xx0 = default, xx1 = default;
        var j = 0;
        for (; j <= x.Length - 2 * count; j += 2 * count)
        {
            var (x0, x1) = (new Vector<float>(x[j..]), new Vector<float>(x[(j + count)..]));
            var (cx0, cx1) = c.IsEmpty ? (x0, x1) : (new Vector<float>(c[j..]) * x0, new Vector<float>(c[(j + count)..]) * x1);
            xy0 += cx0 * new Vector<float>(y[j..]);
            xy1 += cx1 * new Vector<float>(y[(j + count)..]);
            xx0 += cx0 * x0;
            xx1 += cx1 * x1;
        }
        double sumXy = Vector.Sum(xy0 + xy1), sumXx = Vector.Sum(xx0 + xx1);
        for (; j < x.Length; j++)
        {
            var cx = (c.IsEmpty ? 1.0 : c[j]) * x[j];
            sumXy += cx * y[j];
            sumXx += cx * x[j];
        }
        return sumXy / sumXx;
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
