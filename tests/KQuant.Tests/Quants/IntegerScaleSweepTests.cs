using KQuant.Quants;

namespace KQuant.Tests.Quants;

/// <summary>Q6_K's sweep of integer sub-block scales (IntegerScaleSweep): each sub-block's scale is the best of its window,
/// as a scalar sweep in double finds it, and its levels are the nearest for the scale it stores.</summary>
public sealed class IntegerScaleSweepTests
{
    private const int SubBlock = 16;

    /// <summary>The sweep sums its errors in float, the twin in double: a choice may differ only between scales whose
    /// errors are within float's rounding of the 16-term sums (10⁻⁵ relative, with room), or when both are far below
    /// the sub-block's signal (10⁻⁹ of Σw·x²).</summary>
    private const double SumTolerance = 1e-5;

    [Theory]
    [InlineData("gaussian")]
    [InlineData("student-t3")]
    [InlineData("outliers")]
    [InlineData("cosine")]
    [InlineData("constant")]
    [InlineData("tiny")]
    [InlineData("huge")]
    public void EachSubBlockTakesTheBestScaleOfItsWindow(string kind)
    {
        const int length = 4096;
        var x = TestRows.Make(kind, 1, length, seed: 11);
        foreach (var importance in new[] { null, TestRows.Importance(length, seed: 11) })
        {
            var w = importance ?? Enumerable.Repeat(1f, length).ToArray();
            var scales = new sbyte[16];
            var levels = new byte[256];
            var checkedSubBlocks = 0;
            for (var b = 0; b < length; b += 256)
            {
                var xb = x.AsSpan(b, 256);
                var wb = w.AsSpan(b, 256);
                if (!IntegerScaleSweep.Encode(xb, wb, scales, levels, out var dHalf))
                {
                    // Nothing to encode, or a D beyond fp16's range (65504).
                    var top = xb.ToArray().Max(MathF.Abs);
                    Assert.True(top < BlockSolvers.GroupMaxEps || top / 32 * IntegerScaleSweep.Headroom / 127 > 65504,
                        $"{kind} block {b / 256}: not encoded");
                    continue;
                }
                var d = (float)dHalf;
                var largest = xb.ToArray().Max(MathF.Abs);
                Assert.Equal((float)GgmlFp16.FromSingle(largest / 32 * IntegerScaleSweep.Headroom / 127), d);
                for (var j = 0; j < 16; j++)
                {
                    var xs = xb.Slice(SubBlock * j, SubBlock).ToArray();
                    var ws = wb.Slice(SubBlock * j, SubBlock).ToArray();
                    var chosen = scales[j];
                    // Levels: the nearest to x/(d·sc), clamped, stored as q + 32.
                    for (var i = 0; i < SubBlock; i++)
                    {
                        var expected = chosen == 0 ? 0 : Math.Clamp(MathF.Round(xs[i] * (1 / (d * chosen))), -32, 31);
                        Assert.Equal(expected + 32, levels[SubBlock * j + i]);
                    }
                    var signal = Error(xs, ws, d, 0);
                    var chosenError = Error(xs, ws, d, chosen);
                    var best = WindowOf(xs, d).Append(0).Min(sc => Error(xs, ws, d, sc));
                    Assert.True(chosenError <= best * (1 + SumTolerance) + 1e-9 * signal,
                        $"{kind} block {b / 256} sub-block {j}: scale {chosen} error {chosenError:R}, best of the window {best:R}");
                    Assert.Contains(chosen, WindowOf(xs, d).Append(0));
                    checkedSubBlocks++;
                }
            }
            Assert.True(checkedSubBlocks > 0 || kind is "huge" or "tiny");
        }
    }

    [Fact]
    public void AZeroBlockIsLeftToTheCodec()
    {
        Span<sbyte> scales = stackalloc sbyte[16];
        Span<byte> levels = stackalloc byte[256];
        var w = Enumerable.Repeat(1f, 256).ToArray();
        Assert.False(IntegerScaleSweep.Encode(new float[256], w, scales, levels, out _));
        // fp16 overflow: D would be about 2.8·10⁵.
        var huge = Enumerable.Repeat(1e9f, 256).ToArray();
        Assert.False(IntegerScaleSweep.Encode(huge, w, scales, levels, out _));
    }

    /// <summary>The scales the sweep tries for one sub-block, written independently: from the one that puts its value of
    /// largest magnitude on level −32, and from the one that puts it on 31, <see cref="IntegerScaleSweep.Candidates"/>
    /// each, away from zero, within −128..127.</summary>
    private static IEnumerable<int> WindowOf(float[] xs, float d)
    {
        var largest = xs.Aggregate(0f, (m, v) => MathF.Abs(v) > MathF.Abs(m) ? v : m);
        foreach (var endLevel in new[] { -32f, 31f })
        {
            var anchor = largest / (d * endLevel);
            var start = (int)MathF.Round(anchor);
            var step = anchor < 0 ? -1 : 1;
            for (var k = 0; k < IntegerScaleSweep.Candidates; k++)
            {
                var sc = Math.Clamp(start + step * k, -128, 127);
                if (sc != 0) yield return sc;
            }
        }
    }

    private static double Error(float[] xs, float[] ws, float d, int sc)
    {
        var scale = d * sc;
        double error = 0;
        for (var i = 0; i < xs.Length; i++)
        {
            var q = sc == 0 ? 0 : Math.Clamp(MathF.Round(xs[i] * (1 / scale)), -32, 31);
            var r = xs[i] - (double)scale * q;
            error += ws[i] * r * r;
        }
        return error;
    }
}
