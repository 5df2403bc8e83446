using KQuant.Gguf;
using KQuant.Quants;

namespace KQuant.Tests.Quants;

/// <summary>What the lane-search tests (<see cref="BlockLaneSearchTests"/>, <see cref="ScaleTrialLaneSearchTests"/>) share:
/// the row shape and both rounding modes of the same rows.</summary>
internal static class LaneSearchRows
{
    /// <summary>41 blocks per row: five groups of eight, then one block with seven empty lanes.</summary>
    public const int Length = 41 * 32, Rows = 12;

    /// <summary>The rows quantized in both rounding modes: the reference's bytes, and both decoded.</summary>
    public static (byte[] Reference, float[] ReferenceValues, float[] OptimalValues) BothModes(GgmlType type, float[] x, float[]? importance = null)
    {
        var bytes = (int)GgmlTypeTraits.Of(type).RowBytes(Length) * Rows;
        var (reference, optimal) = (new byte[bytes], new byte[bytes]);
        RowQuantizer.Quantize(type, x, reference, Length, importance);
        RowQuantizer.Quantize(type, x, optimal, Length, importance, rounding: RoundingMode.Optimal);
        var (referenceValues, optimalValues) = (new float[x.Length], new float[x.Length]);
        RowQuantizer.Dequantize(type, reference, referenceValues);
        RowQuantizer.Dequantize(type, optimal, optimalValues);
        return (reference, referenceValues, optimalValues);
    }

    /// <summary>Σc·(y − x)² in double (c = 1 when empty).</summary>
    public static double Error(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> c = default)
    {
        double sum = 0;
        for (var j = 0; j < x.Length; j++) sum += (c.IsEmpty ? 1 : c[j]) * ((double)y[j] - x[j]) * ((double)y[j] - x[j]);
        return sum;
    }
}
