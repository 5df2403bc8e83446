using KQuant.Quants;
using KQuant.Quants.IQ;
using Xunit;
using Xunit.Abstractions;

namespace KQuant.Tests.Quants;

/// <summary>The super-block search on seeded rows: <see cref="SuperBlockSearch.Encode"/> (its own start) with and without
/// <see cref="SuperBlockSpec.NeighbourIntegers"/>, and <see cref="SuperBlockSearch.Improve"/> from a simple starting
/// encoding (sub-block scales and mins from each sub-block's range, nearest levels).</summary>
public sealed class SuperBlockSearchTests(ITestOutputHelper output)
{
    private const int SuperBlock = 256;

    private static SuperBlockSpec Spec(string format) => format switch
    {
        "Q2_K" => new(16, SuperBlockSpec.IntegerLevels(0, 3), Affine: true, 0, 15, 15) { StartScales = SuperBlockSpec.SpanSteps(3, -0.5f, 16) },
        "Q3_K" => new(16, SuperBlockSpec.IntegerLevels(-4, 3), Affine: false, -32, 31) { StartScales = [0.93f, 1f, 1.07f] },
        "Q4_K" => new(32, SuperBlockSpec.IntegerLevels(0, 15), Affine: true, 0, 63, 63) { StartScales = SuperBlockSpec.SpanSteps(15, -1f, 21) },
        "Q5_K" => new(32, SuperBlockSpec.IntegerLevels(0, 31), Affine: true, 0, 63, 63) { StartScales = SuperBlockSpec.SpanSteps(31, -1f, 21) },
        "IQ4_XS" => new(32, IQ4Grid.Levels.ToArray().Select(v => (float)v).ToArray(), Affine: false, -32, 31)
        {
            FreeRounds = 4,
            StartScales = [0.95f, 1.05f],
        },
        _ => throw new ArgumentException(format),
    };

    /// <summary>
    /// Scoring each neighbouring integer scale (and min) after rounding at it must lower the weighted error of
    /// <see cref="SuperBlockSearch.Encode"/>'s result, summed over 3 × 96 super-blocks of Gaussian, Student-t (3) and
    /// outlier rows. Measured on these rows: Q2_K 0.873, Q4_K 0.851, Q5_K 0.755, IQ4_XS 0.644 of the error without it. The
    /// bound, 0.97, is above each with room, so the test fails when the neighbour search stops choosing better integers,
    /// not on the rows' noise.
    /// </summary>
    [Theory]
    [InlineData("Q2_K")]
    [InlineData("Q4_K")]
    [InlineData("Q5_K")]
    [InlineData("IQ4_XS")]
    public void NeighbourIntegersLowerTheEncodersError(string format)
    {
        var withNeighbours = Spec(format) with { NeighbourIntegers = true };
        var without = withNeighbours with { NeighbourIntegers = false };
        double errorWith = 0, errorWithout = 0;
        foreach (var kind in new[] { "gaussian", "student-t3", "outliers" })
        {
            var rows = TestRows.Make(kind, 96, SuperBlock, TestRows.Seed(kind + format, 0));
            for (var b = 0; b < 96; b++)
            {
                var x = rows.AsSpan(b * SuperBlock, SuperBlock);
                var w = Weights(x);
                errorWith += Encode(withNeighbours, x, w);
                errorWithout += Encode(without, x, w);
            }
        }
        var ratio = errorWith / errorWithout;
        output.WriteLine($"{format}: weighted error with neighbour integers / without = {ratio:0.0000}");
        Assert.True(ratio < 0.97, $"{format}: the neighbour integers gave {ratio:0.0000} of the error without them");
    }

    /// <summary>The search from the reference (the optimal path with an imatrix) rounds its integers whatever
    /// <see cref="SuperBlockSpec.NeighbourIntegers"/> says: the neighbour choice raised the KLD there.</summary>
    [Theory]
    [InlineData("Q4_K")]
    [InlineData("IQ4_XS")]
    public void ImproveIgnoresNeighbourIntegers(string format)
    {
        var rows = TestRows.Make("student-t3", 16, SuperBlock, seed: 3);
        for (var b = 0; b < 16; b++)
        {
            var x = rows.AsSpan(b * SuperBlock, SuperBlock);
            var w = Weights(x);
            Assert.Equal(Improve(Spec(format), x, w), Improve(Spec(format) with { NeighbourIntegers = true }, x, w));
        }
    }

    /// <summary>An all-zero super-block has no encoding with a scale to find (the optimal path then takes the reference's);
    /// one with a single non-zero sub-block is encoded, that sub-block closely and the rest at zero.</summary>
    [Theory]
    [InlineData("Q2_K")]
    [InlineData("Q3_K")]
    [InlineData("Q4_K")]
    [InlineData("Q5_K")]
    [InlineData("IQ4_XS")]
    public void EncodeHandlesZeroSubBlocks(string format)
    {
        var spec = Spec(format) with { NeighbourIntegers = true };
        var zero = new float[SuperBlock];
        var (levels, scales, mins) = (new byte[SuperBlock], new int[SuperBlock / spec.SubBlock], new int[SuperBlock / spec.SubBlock]);
        Assert.False(SuperBlockSearch.Encode(spec, zero, Weights(zero), levels, scales, spec.Affine ? mins : [], out _, out _));

        var x = new float[SuperBlock];
        var values = TestRows.Make("gaussian", 1, spec.SubBlock, seed: 9);
        values.CopyTo(x, spec.SubBlock);
        var w = Weights(x);
        Assert.True(SuperBlockSearch.Encode(spec, x, w, levels, scales, spec.Affine ? mins : [], out var d, out var dmin));
        var e = new Encoding(levels, scales, mins, d, dmin);
        double signal = 0;
        foreach (var v in values) signal += (double)v * v;
        // The one sub-block at 2-4 bits: its relative error is that of a few levels (Q2_K's 4 levels: about 0.1 of the signal).
        Assert.True(Error(spec, x, Enumerable.Repeat(1f, SuperBlock).ToArray(), e) < 0.15 * signal,
            $"{format}: error {Error(spec, x, Enumerable.Repeat(1f, SuperBlock).ToArray(), e)} of signal {signal}");
    }

    /// <summary>Q3_K's levels include 0, so a sub-block scale of ±1 is never worse than 0. Next to an outlier sub-block
    /// (one value of 100: D near 100/128), sub-blocks whose free scale is below D/2 (values of ±0.3) must keep a non-zero
    /// integer scale, and those with a value above D/2 then a level: their error must be below that of zeros.</summary>
    [Fact]
    public void EncodeKeepsSubBlocksBelowHalfTheSuperScale()
    {
        var spec = Spec("Q3_K");
        var x = new float[SuperBlock];
        var small = TestRows.Make("gaussian", 1, SuperBlock, seed: 11);
        for (var i = 0; i < SuperBlock; i++) x[i] = 0.3f * small[i];
        x[5] = 100f;
        var (levels, scales) = (new byte[SuperBlock], new int[SuperBlock / spec.SubBlock]);
        Assert.True(SuperBlockSearch.Encode(spec, x, Weights(x), levels, scales, [], out var d, out _));
        var e = new Encoding(levels, scales, new int[scales.Length], d, Half.Zero);
        var checkedSubBlocks = 0;
        for (var j = 1; j < scales.Length; j++)
        {
            var sub = x.AsSpan(j * spec.SubBlock, spec.SubBlock);
            var zerosError = 0.0;
            foreach (var v in sub) zerosError += (double)v * v;
            var mask = new float[SuperBlock];
            Array.Fill(mask, 1f, j * spec.SubBlock, spec.SubBlock);
            Assert.NotEqual(0, scales[j]);
            var largest = sub.ToArray().Max(MathF.Abs);
            if (largest > 0.6f * (float)d)
            {
                Assert.True(Error(spec, x, mask, e) < zerosError, $"sub-block {j}: error {Error(spec, x, mask, e)} against {zerosError} as zeros (D {d})");
                checkedSubBlocks++;
            }
        }
        Assert.True(checkedSubBlocks >= 8, $"only {checkedSubBlocks} sub-blocks reach 0.6·D"); // the rows must test something
    }

    /// <summary>The optimal path's default weighting without an imatrix for these formats: sqrt(σ² + x²), σ² = 2·mean(x²).</summary>
    private static float[] Weights(ReadOnlySpan<float> x)
    {
        double sum = 0;
        foreach (var v in x) sum += (double)v * v;
        var sigma2 = 2 * sum / x.Length;
        var w = new float[x.Length];
        for (var i = 0; i < x.Length; i++) w[i] = (float)Math.Sqrt(sigma2 + (double)x[i] * x[i]);
        return w;
    }

    private sealed record Encoding(byte[] Levels, int[] Scales, int[] Mins, Half D, Half DMin);

    private static double Encode(SuperBlockSpec spec, ReadOnlySpan<float> x, float[] w)
    {
        var subBlocks = x.Length / spec.SubBlock;
        var (levels, scales, mins) = (new byte[x.Length], new int[subBlocks], new int[subBlocks]);
        Assert.True(SuperBlockSearch.Encode(spec, x, w, levels, scales, spec.Affine ? mins : [], out var d, out var dmin));
        return Error(spec, x, w, new Encoding(levels, scales, mins, d, dmin));
    }

    private static double Improve(SuperBlockSpec spec, ReadOnlySpan<float> x, float[] w)
    {
        var e = Start(spec, x);
        var (d, dmin) = (e.D, e.DMin);
        SuperBlockSearch.Improve(spec, x, w, e.Levels, e.Scales, spec.Affine ? e.Mins : [], ref d, ref dmin);
        return Error(spec, x, w, e with { D = d, DMin = dmin });
    }

    /// <summary>Scales and mins from each sub-block's range under super-scales from the largest, nearest levels.</summary>
    private static Encoding Start(SuperBlockSpec spec, ReadOnlySpan<float> x)
    {
        var subBlocks = x.Length / spec.SubBlock;
        var levels = spec.Levels;
        var span = levels[^1] - levels[0];
        var (scale, offset) = (new float[subBlocks], new float[subBlocks]);
        for (var j = 0; j < subBlocks; j++)
        {
            var sub = x.Slice(j * spec.SubBlock, spec.SubBlock);
            if (spec.Affine)
            {
                var low = Math.Min(0, sub.ToArray().Min());
                (scale[j], offset[j]) = ((sub.ToArray().Max() - low) / span, low);
            }
            else scale[j] = sub.ToArray().Max(MathF.Abs) / Math.Max(-levels[0], levels[^1]);
        }
        var d = (Half)(scale.Max() / spec.ScaleHigh);
        var dmin = spec.Affine ? (Half)(offset.Select(o => -o).Max() / Math.Max(1, spec.MinHigh)) : Half.Zero;
        var scales = new int[subBlocks];
        var mins = new int[subBlocks];
        for (var j = 0; j < subBlocks; j++)
        {
            scales[j] = (float)d == 0 ? 0 : Math.Clamp((int)MathF.Round(scale[j] / (float)d), spec.ScaleLow, spec.ScaleHigh);
            mins[j] = spec.Affine && (float)dmin != 0 ? Math.Clamp((int)MathF.Round(-offset[j] / (float)dmin), 0, spec.MinHigh) : 0;
        }
        var indices = new byte[x.Length];
        for (var i = 0; i < x.Length; i++)
        {
            var j = i / spec.SubBlock;
            var (s, o) = ((float)d * scales[j], -(float)dmin * mins[j]);
            var best = 0;
            for (var k = 1; k < levels.Length; k++)
            {
                if (Math.Abs(s * levels[k] + o - x[i]) < Math.Abs(s * levels[best] + o - x[i])) best = k;
            }
            indices[i] = (byte)best;
        }
        return new Encoding(indices, scales, mins, d, dmin);
    }

    /// <summary>Σ w·(y − x)² with y = D·sc·Levels[q] − Dmin·m, in double.</summary>
    private static double Error(SuperBlockSpec spec, ReadOnlySpan<float> x, float[] w, Encoding e)
    {
        double error = 0;
        for (var i = 0; i < x.Length; i++)
        {
            var j = i / spec.SubBlock;
            var y = (float)e.D * e.Scales[j] * spec.Levels[e.Levels[i]] - (spec.Affine ? (float)e.DMin * e.Mins[j] : 0);
            var r = (double)y - x[i];
            error += w[i] * r * r;
        }
        return error;
    }
}
