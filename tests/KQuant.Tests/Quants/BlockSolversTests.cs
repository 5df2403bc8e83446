using KQuant.Quants;

namespace KQuant.Tests.Quants;

/// <summary>Properties of the shared rounding core. Byte identity with ggml is checked through the codecs
/// (the solvers are static in ggml-quants.c, so the oracle can only be reached through a format).</summary>
public class BlockSolversTests
{
    [Theory]
    [InlineData(0.5f, 0)]
    [InlineData(1.5f, 2)]
    [InlineData(2.5f, 2)]
    [InlineData(-0.5f, 0)]
    [InlineData(-1.5f, -2)]
    [InlineData(-2.5f, -2)]
    [InlineData(3.49999f, 3)]
    [InlineData(4194303f, 4194303)]
    [InlineData(-4194303f, -4194303)]
    public void NearestIntRoundsHalfToEvenInItsRange(float value, int expected) =>
        Assert.Equal(expected, BlockSolvers.NearestInt(value));

    [Fact]
    public void NearestIntOutsideItsRangeReturnsWhatTheBitTrickGives()
    {
        // ggml only asserts |x| <= 2^22 - 1 in debug builds; release builds read the mantissa of x + 1.5*2^23 regardless.
        foreach (var value in new[] { 4194304f, 5e6f, 1e7f, 16777216f, 3e9f, -5e6f, -1e7f, -3e9f, 1e30f, -1e30f,
                     float.PositiveInfinity, float.NegativeInfinity, float.NaN, float.MaxValue })
        {
            var biased = value + 12582912f;
            var expected = (BitConverter.SingleToInt32Bits(biased) & 0x7fffff) - 0x400000;
            Assert.Equal(expected, BlockSolvers.NearestInt(value));
        }
        Assert.Equal(0, BlockSolvers.NearestInt(float.NaN));
        Assert.Equal(-0x400000, BlockSolvers.NearestInt(float.PositiveInfinity));
    }

    [Fact]
    public void AllZeroGroupsGiveZeroScaleAndLevels()
    {
        var x = new float[16];
        var signed = new sbyte[16];
        var unsigned = new byte[16];
        Assert.Equal(0f, BlockSolvers.MakeQxQuants(32, x, signed, default));
        Assert.All(signed, l => Assert.Equal(0, l));
        Assert.Equal(0f, BlockSolvers.MakeQ3Quants(4, x, signed));
        Assert.Equal(0f, BlockSolvers.MakeQpQuants(15, x, unsigned, new float[16]));
        Assert.Equal(0f, BlockSolvers.MakeQkx3Quants(15, x, new float[16], unsigned, out var min, -0.9f, 0.05f, 36));
        Assert.Equal(0f, min);
    }

    [Fact]
    public void SolversReconstructAGroupClosely()
    {
        var rng = new Random(7);
        var x = new float[32];
        for (var i = 0; i < x.Length; i++) x[i] = (float)TestRows.Gaussian(rng);
        var weights = Enumerable.Repeat(1f, 32).ToArray();

        var signed = new sbyte[32];
        var d = BlockSolvers.MakeQxQuants(16, x, signed, weights);
        for (var i = 0; i < 32; i++) Assert.InRange(x[i] - d * (signed[i] - 16), -Math.Abs(d), Math.Abs(d));

        var unsigned = new byte[32];
        var scale = BlockSolvers.MakeQkx3Quants(15, x, weights, unsigned, out var min, -0.9f, 0.05f, 36);
        for (var i = 0; i < 32; i++) Assert.InRange(x[i] - (scale * unsigned[i] - min), -scale, scale);
    }
}
