using KQuant.Gguf;
using KQuant.Quants;
using KQuant.Quants.Float;
using KQuant.Quants.IQ;
using Xunit.Abstractions;
using static KQuant.Tests.Quants.LaneSearchRows;

namespace KQuant.Tests.Quants;

/// <summary>The greedy lane search (eight blocks per SIMD vector, float sums) of Q4_0 and Q5_0 with importance, Q4_1, Q5_1 and
/// IQ4_NL against the scalar step search in double it was derived from, on the same reference start.</summary>
public sealed class BlockLaneSearchTests(ITestOutputHelper output)
{
    /// <summary>Q4_0 and Q5_0 with importance (without it they take <see cref="ScaleTrialLaneSearch"/>): per block, the
    /// scalar <see cref="ScalarStepSearch.RefineScale"/> from the reference levels under the same weights c, its scale to
    /// fp16, every weight re-rounded, and the better of that and the reference, exactly as the lane path does it. Both
    /// searches take the same best step per round, so their totals may differ only where float and double rank two
    /// near-equal steps differently: 0.2% allows that (measured: equal to 4 digits on debdocs-llama-10m).</summary>
    [Theory]
    [InlineData(GgmlType.Q4_0, 8)]
    [InlineData(GgmlType.Q5_0, 16)]
    public void LaneSearchMatchesTheScalarSearchInDouble(GgmlType type, int nmax)
    {
        var x = TestRows.Make("gaussian", Rows, Length, seed: 11);
        var importance = TestRows.Importance(Length, seed: 11);
        var (reference, referenceValues, optimalValues) = BothModes(type, x, importance);
        var blockBytes = reference.Length / (x.Length / 32);

        var levels = Enumerable.Range(-nmax, 2 * nmax).Select(v => (float)v).ToArray();
        var indices = new int[32];
        double referenceTotal = 0, scalarTotal = 0, laneTotal = 0;
        for (var b = 0; b < x.Length / 32; b++)
        {
            var block = x.AsSpan(b * 32, 32);
            var c = importance.AsSpan(b * 32 % Length, 32);
            var d = Fp16.ToFloat(BitConverter.ToUInt16(reference, b * blockBytes));
            var referenceError = Error(block, referenceValues.AsSpan(b * 32, 32), c);
            for (var j = 0; j < 32; j++) indices[j] = (int)MathF.Round(referenceValues[b * 32 + j] / d) + nmax;
            var scale = Fp16.ToFloat(Fp16.FromFloat(ScalarStepSearch.RefineScale(block, c, levels, indices)));
            var searched = new float[32];
            for (var j = 0; j < 32; j++) searched[j] = Math.Clamp(MathF.Round(block[j] / scale), -nmax, nmax - 1) * scale;
            referenceTotal += referenceError;
            scalarTotal += Math.Min(referenceError, Error(block, searched, c));
            laneTotal += Error(block, optimalValues.AsSpan(b * 32, 32), c);
        }
        output.WriteLine($"{type}: weighted error against the reference's: scalar search {scalarTotal / referenceTotal:F5}, lanes {laneTotal / referenceTotal:F5}");
        Assert.InRange(laneTotal / scalarTotal, 0.998, 1.002);
        Assert.True(scalarTotal < 0.99 * referenceTotal, "the scalar search found too little to compare with");
    }

    /// <summary>Q4_1 and Q5_1 with importance (scale and offset fitted together; without importance they take
    /// <see cref="ScaleTrialLaneSearch"/>): no scalar twin remains, so the gain itself. These Gaussian rows measured
    /// 0.961 and 0.959 of the reference's (make_qkx3_quants') weighted error, where no step at all leaves 1; a search
    /// that lost most of its steps to float rounding (as the first lane version did on Q5_1) would not get below 0.98.</summary>
    [Theory]
    [InlineData(GgmlType.Q4_1)]
    [InlineData(GgmlType.Q5_1)]
    public void AffineLaneSearchLowersTheWeightedError(GgmlType type)
    {
        var x = TestRows.Make("gaussian", Rows, Length, seed: 12);
        var importance = TestRows.Importance(Length, seed: 12);
        var (_, referenceValues, optimalValues) = BothModes(type, x, importance);
        double referenceError = 0, optimalError = 0;
        for (var b = 0; b < x.Length / 32; b++)
        {
            var c = importance.AsSpan(b * 32 % Length, 32);
            referenceError += Error(x.AsSpan(b * 32, 32), referenceValues.AsSpan(b * 32, 32), c);
            optimalError += Error(x.AsSpan(b * 32, 32), optimalValues.AsSpan(b * 32, 32), c);
        }
        output.WriteLine($"{type} with importance: weighted error optimal/reference {optimalError / referenceError:F5}");
        Assert.True(optimalError < 0.98 * referenceError, $"{type}: optimal/reference {optimalError / referenceError:F4}");
    }

    /// <summary>IQ4_NL (a table of levels, unit gain, error weights c·sqrt(σ² + x²)): the lane path against the scalar frame
    /// it replaced, <see cref="KeepBestBlocks.Quantize"/> with <see cref="ScalarStepSearch.RefineScale"/> in double over the
    /// grid and every index re-chosen at the fp16 scale, on the same rows, with and without importance. Same tolerance as
    /// the linear case, for the same reason (measured on debdocs-llama-10m: 0.9808 and 0.9838 of the reference's weighted
    /// error before and after, to 4 digits; these Gaussian rows: 0.99174 and 0.97621 both ways).</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TableLaneSearchMatchesTheScalarFrame(bool withImportance)
    {
        var x = TestRows.Make("gaussian", Rows, Length, seed: 13);
        var importance = withImportance ? TestRows.Importance(Length, seed: 13) : null;
        var codec = RowCodecs.Get(GgmlType.IQ4_NL);
        var rowBytes = (int)GgmlTypeTraits.Of(GgmlType.IQ4_NL).RowBytes(Length);
        var (lanes, scalar, reference) = (new byte[rowBytes * Rows], new byte[rowBytes * Rows], new byte[rowBytes * Rows]);
        var table = IQ4Grid.Levels.ToArray().Select(v => (float)v).ToArray();
        for (var r = 0; r < Rows; r++)
        {
            var row = x.AsSpan(r * Length, Length);
            var laneRow = lanes.AsSpan(r * rowBytes, rowBytes);
            var scalarRow = scalar.AsSpan(r * rowBytes, rowBytes);
            codec.Quantize(row, reference.AsSpan(r * rowBytes, rowBytes), importance);
            ((IOptimalRowCodec)codec).QuantizeOptimal(row, laneRow, importance, RowRole.Product);
            KeepBestBlocks.Quantize<BlockIQ4NL>(codec, 32, row, scalarRow, importance, RowRole.Product, (block, w, ref encoded) =>
            {
                var indices = new int[32];
                for (var j = 0; j < 16; j++) (indices[j], indices[j + 16]) = (encoded.Qs[j] & 0xF, encoded.Qs[j] >> 4);
                var stored = Fp16.FromFloat(ScalarStepSearch.RefineScale(block, w, table, indices));
                if (Fp16.ToFloat(stored) == 0) return;
                encoded.D = stored;
                IQ4Grid.QuantizeGroup(block, 1 / Fp16.ToFloat(stored), encoded.Qs);
            });
        }
        var (laneError, scalarError, referenceError) = (WeightedError(lanes), WeightedError(scalar), WeightedError(reference));
        output.WriteLine($"IQ4_NL{(withImportance ? " with importance" : "")}: weighted error against the reference's: scalar frame {scalarError / referenceError:F5}, lanes {laneError / referenceError:F5}");
        Assert.InRange(laneError / scalarError, 0.998, 1.002);
        Assert.True(scalarError < 0.995 * referenceError, "the scalar search found too little to compare with"); // 0.992 and 0.976 measured

        double WeightedError(byte[] encoded)
        {
            var decoded = new float[x.Length];
            RowQuantizer.Dequantize(GgmlType.IQ4_NL, encoded, decoded);
            var w = new float[32];
            double sum = 0;
            for (var b = 0; b < x.Length / 32; b++)
            {
                var block = x.AsSpan(b * 32, 32);
                KeepBestBlocks.ErrorWeights(ErrorWeighting.ImportanceTimesMagnitude, block,
                    importance is null ? default : importance.AsSpan(b * 32 % Length, 32), w);
                sum += KeepBestBlocks.WeightedSquaredError(block, decoded.AsSpan(b * 32, 32), w);
            }
            return sum;
        }
    }
}
