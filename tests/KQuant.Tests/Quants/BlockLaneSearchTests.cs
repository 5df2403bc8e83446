using KQuant.Gguf;
using KQuant.Quants;
using KQuant.Quants.Float;
using KQuant.Quants.IQ;
using KQuant.Quants.Legacy;
using Xunit.Abstractions;
using static KQuant.Tests.Quants.LaneSearchRows;

namespace KQuant.Tests.Quants;

/// <summary>The greedy lane search (eight blocks per SIMD vector, float sums) of Q4_0 and Q5_0 with importance, Q4_1, Q5_1 and
/// IQ4_NL against the scalar step search in double it was derived from, on the same start (the reference's; IQ4_NL's
/// trial start).</summary>
public sealed class BlockLaneSearchTests(ITestOutputHelper output)
{
    /// <summary>Q4_0 and Q5_0 with importance (without it they take <see cref="ScaleTrialLaneSearch"/>): per block, the
    /// start — Q4_0's trial start in double (the largest value on −nmax ± 0.9 in steps of 0.3 and on nmax − 1; the
    /// reference's levels where the importance sits on fewer than four values), Q5_0's the reference's levels — then the scalar <see cref="ScalarStepSearch.RefineScale"/>
    /// from it under the same weights c (Q5_0's at most four steps: its lanes stop after four rounds, and a block steps in
    /// every round until it has no step left), its scale to fp16, every weight re-rounded, and the better of that and the
    /// start, as the lane path does it. Float and double may rank two near-equal trials or steps differently, so the
    /// totals may differ slightly: 0.2% allows that (measured: equal to 5 digits on these rows).</summary>
    [Theory]
    [InlineData(GgmlType.Q4_0, 8, true, int.MaxValue)]
    [InlineData(GgmlType.Q5_0, 16, false, 4)]
    public void LaneSearchMatchesTheScalarSearchInDouble(GgmlType type, int nmax, bool trialStart, int maxSteps)
    {
        var x = TestRows.Make("gaussian", Rows, Length, seed: 11);
        var importance = TestRows.Importance(Length, seed: 11);
        var (reference, referenceValues, optimalValues) = BothModes(type, x, importance);
        var blockBytes = reference.Length / (x.Length / 32);

        var levels = Enumerable.Range(-nmax, 2 * nmax).Select(v => (float)v).ToArray();
        float[] trials = [-(nmax + 0.9f), -(nmax + 0.6f), -(nmax + 0.3f), -nmax, -(nmax - 0.3f), -(nmax - 0.6f), -(nmax - 0.9f), nmax - 1];
        var indices = new int[32];
        double referenceTotal = 0, scalarTotal = 0, laneTotal = 0;
        for (var b = 0; b < x.Length / 32; b++)
        {
            var block = x.AsSpan(b * 32, 32);
            var c = importance.AsSpan(b * 32 % Length, 32);
            var referenceError = Error(block, referenceValues.AsSpan(b * 32, 32), c);
            float start;
            if (!trialStart || Concentrated(c))
            {
                start = Fp16.ToFloat(BitConverter.ToUInt16(reference, b * blockBytes));
                for (var j = 0; j < 32; j++) indices[j] = (int)MathF.Round(referenceValues[b * 32 + j] / start) + nmax;
            }
            else
            {
                start = Fp16.ToFloat(Fp16.FromFloat(TrialScale(block, c, trials, scaled => Math.Clamp(MathF.Round(scaled), -nmax, nmax - 1))));
                for (var j = 0; j < 32; j++) indices[j] = (int)Math.Clamp(MathF.Round(block[j] / start), -nmax, nmax - 1) + nmax;
            }
            var startValues = indices.Select(k => levels[k] * start).ToArray();
            var scale = Fp16.ToFloat(Fp16.FromFloat(ScalarStepSearch.RefineScale(block, c, levels, indices, maxSteps)));
            var searched = new float[32];
            for (var j = 0; j < 32; j++) searched[j] = Math.Clamp(MathF.Round(block[j] / scale), -nmax, nmax - 1) * scale;
            referenceTotal += referenceError;
            scalarTotal += Math.Min(Error(block, startValues, c), Error(block, searched, c));
            laneTotal += Error(block, optimalValues.AsSpan(b * 32, 32), c);
        }
        output.WriteLine($"{type}: weighted error against the reference's: scalar search {scalarTotal / referenceTotal:F5}, lanes {laneTotal / referenceTotal:F5}");
        Assert.InRange(laneTotal / scalarTotal, 0.998, 1.002);
        Assert.True(scalarTotal < 0.99 * referenceTotal, "the scalar search found too little to compare with");
    }

    /// <summary>The least-squares scale of the best trial by (Σw·x·v)²/Σw·v², in double: for each trial n, every value put
    /// on its nearest level, <paramref name="level"/>(x·n/m), m the value of largest magnitude (the first of equal ones).</summary>
    private static float TrialScale(ReadOnlySpan<float> x, ReadOnlySpan<float> w, float[] trials, Func<float, double> level)
    {
        var largest = 0f;
        foreach (var v in x) if (MathF.Abs(v) > MathF.Abs(largest)) largest = v;
        double bestF = -1, bestD = 0;
        foreach (var n in trials)
        {
            double xv = 0, vv = 0;
            for (var j = 0; j < x.Length; j++)
            {
                var v = level(x[j] * (n / largest));
                xv += w[j] * x[j] * v;
                vv += w[j] * v * v;
            }
            if (vv > 0 && xv * xv / vv > bestF) (bestF, bestD) = (xv * xv / vv, xv / vv);
        }
        return (float)bestD;
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

    /// <summary>IQ4_NL (a table of levels, unit gain, error weights c·sqrt(σ² + x²), no reference encoding): the lane path
    /// against the same path written out per block in double — the trial start (the value of largest magnitude on each
    /// trial level value, the best trial by F, its least-squares scale to fp16, every index re-chosen; the codec's
    /// encoding where the weights are concentrated on a few values, as about half the blocks under these test rows' importance are), then
    /// <see cref="ScalarStepSearch.RefineScale"/> from it, its scale to fp16, every index re-chosen, and the better of the
    /// two at unit gain by <see cref="KeepBestBlocks.KeepCandidate"/>. Float and double may rank two near-equal trials or
    /// steps differently, so the totals may differ slightly: 0.2%, as for the linear case (these Gaussian rows measured
    /// the lanes equal to the double path to 5 digits, at 0.984 and 0.978 of the reference's weighted error without and
    /// with importance).</summary>
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
        var (w, y, yCandidate) = (new float[32], new float[32], new float[32]);
        var indices = new int[32];
        for (var r = 0; r < Rows; r++)
        {
            var row = x.AsSpan(r * Length, Length);
            codec.Quantize(row, reference.AsSpan(r * rowBytes, rowBytes), importance);
            ((IOptimalRowCodec)codec).QuantizeOptimal(row, lanes.AsSpan(r * rowBytes, rowBytes), importance, RowRole.Product);
            var blocks = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, BlockIQ4NL>(scalar.AsSpan(r * rowBytes, rowBytes));
            for (var b = 0; b < blocks.Length; b++)
            {
                var block = row.Slice(b * 32, 32);
                var c = importance is null ? default : importance.AsSpan(b * 32, 32);
                KeepBestBlocks.ErrorWeights(ErrorWeighting.ImportanceTimesMagnitude, block, c, w);
                blocks[b] = TrialStart(block, w, table);
                if (Concentrated(w)) codec.Quantize(block, System.Runtime.InteropServices.MemoryMarshal.AsBytes(blocks.Slice(b, 1)), c);
                var candidate = blocks[b];
                for (var j = 0; j < 16; j++) (indices[j], indices[j + 16]) = (candidate.Qs[j] & 0xF, candidate.Qs[j] >> 4);
                var stored = Fp16.FromFloat(ScalarStepSearch.RefineScale(block, w, table, indices));
                if (Fp16.ToFloat(stored) != 0)
                {
                    candidate.D = stored;
                    IQ4Grid.QuantizeGroup(block, 1 / Fp16.ToFloat(stored), candidate.Qs);
                }
                if (KeepBestBlocks.KeepCandidate(codec, unitGain: true, ref blocks[b], ref candidate, block, c, w, y, yCandidate)) blocks[b] = candidate;
            }
        }
        var (laneError, scalarError, referenceError) = (WeightedError(lanes), WeightedError(scalar), WeightedError(reference));
        output.WriteLine($"IQ4_NL{(withImportance ? " with importance" : "")}: weighted error against the reference's: scalar frame {scalarError / referenceError:F5}, lanes {laneError / referenceError:F5}");
        Assert.InRange(laneError / scalarError, 0.998, 1.002);
        Assert.True(scalarError < 0.99 * referenceError, "the scalar search found too little to compare with");

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

    /// <summary>Whether the weights sit on fewer than four of the 32 values, (Σw)² &lt; 4·Σw²: such a block starts from the
    /// codec's encoding instead of the trials.</summary>
    private static bool Concentrated(ReadOnlySpan<float> w)
    {
        double sum = 0, squares = 0;
        foreach (var v in w) (sum, squares) = (sum + v, squares + (double)v * v);
        return sum * sum < 4 * squares;
    }

    /// <summary>The trial start of IQ4_NL's optimal path in double: m the value of largest magnitude (the first of equal
    /// ones), the levels nearest to x·n/m for each trial n, the trial with the largest (Σw·x·v)²/Σw·v², its
    /// least-squares scale as fp16 and every index re-chosen against it.</summary>
    private static BlockIQ4NL TrialStart(ReadOnlySpan<float> x, ReadOnlySpan<float> w, float[] table)
    {
        var block = new BlockIQ4NL
        {
            D = Fp16.FromFloat(TrialScale(x, w, [127, -134, -132, -130, -128, -126, -124, -121], scaled => table[IQ4Grid.NearestLevel(scaled)])),
        };
        IQ4Grid.QuantizeGroup(x, 1 / Fp16.ToFloat(block.D), block.Qs);
        return block;
    }
    /// <summary>Q5_0's search with importance starts from make_qx_quants' encoding computed in its own lanes; that start must
    /// be the codec's, bit for bit, so the output must equal the search from the codec's packed encoding read back (its
    /// start before session 15) on every kind of test row: zero blocks and scales that underflow or overflow fp16 must be
    /// written as the codec writes them, ties of magnitude (a constant row, ±v) pick the first value as ggml does, and
    /// the row-wide σ² of the weights c·√(σ² + x²) must be the codec's.</summary>
    [Theory]
    [MemberData(nameof(RowCases))]
    public void Q5StartInTheLanesIsTheCodecEncoding(string kind)
    {
        var x = kind switch
        {
            "ties" => Enumerable.Range(0, Rows * Length).Select(i => (i % 7 == 0 ? 1 : -1) * (i % 5 == 0 ? 0.5f : 0.25f * (i % 3))).ToArray(),
            // Every third block far below the rest: its scale rounds to 0 in fp16, and its weights' σ² is the row's.
            "underflow" => TestRows.Make("gaussian", Rows, Length, seed: 14).Select((v, i) => i / 32 % 3 == 0 ? v * 1e-9f : v).ToArray(),
            _ => TestRows.Make(kind, Rows, Length, seed: 14),
        };
        var importance = TestRows.Importance(Length, seed: 14);
        var codec = (SymmetricLegacyCodec<BlockQ50>)RowCodecs.Get(GgmlType.Q5_0);
        var rowBytes = (int)GgmlTypeTraits.Of(GgmlType.Q5_0).RowBytes(Length);
        var (lanes, fromCodec) = (new byte[rowBytes], new byte[rowBytes]);
        for (var r = 0; r < Rows; r++)
        {
            var row = x.AsSpan(r * Length, Length);
            codec.QuantizeOptimal(row, lanes, importance, RowRole.Product);
            codec.QuantizeOptimalFromCodecEncoding(row, fromCodec, importance);
            Assert.True(lanes.AsSpan().SequenceEqual(fromCodec), $"{kind}, row {r}: the lane start gave other bytes");
        }
    }

    public static TheoryData<string> RowCases() => new([.. TestRows.Cases, "ties", "underflow"]);
}
