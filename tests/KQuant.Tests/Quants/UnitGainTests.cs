using KQuant.Gguf;
using KQuant.Quants;

namespace KQuant.Tests.Quants;

/// <summary>The optimal path's unit-gain step: the fp16 scale fields it rescales are the right bytes of every format that
/// takes it, and the optimal path's blocks of those formats come out at unit gain.</summary>
public sealed class UnitGainTests
{
    public static TheoryData<GgmlType> UnitGainTypes()
    {
        var data = new TheoryData<GgmlType>();
        foreach (var type in RowCodecs.Supported.Where(UnitGain.Applies)) data.Add(type);
        return data;
    }

    /// <summary>Doubling every scale field doubles every dequantized weight exactly (a power of two is exact in fp16 and
    /// in float): a wrong offset would change the codes or leave a scale alone.</summary>
    [Theory]
    [MemberData(nameof(UnitGainTypes))]
    public void RescalingTheScaleFieldsScalesEveryWeight(GgmlType type)
    {
        var codec = RowCodecs.Get(type);
        var traits = GgmlTypeTraits.Of(type);
        const int length = 512;
        var x = TestRows.Make("gaussian", 1, length, seed: 11);
        var bytes = new byte[traits.RowBytes(length)];
        codec.Quantize(x, bytes, default);
        var before = new float[length];
        codec.Dequantize(bytes, before);
        var blockBytes = (int)traits.RowBytes(traits.BlockSize);
        for (var b = 0; b < length / traits.BlockSize; b++) UnitGain.Rescale(type, bytes.AsSpan(b * blockBytes, blockBytes), 2f);
        var after = new float[length];
        codec.Dequantize(bytes, after);
        Assert.Equal(before.Select(v => 2 * v), after);
    }

    /// <summary>A block whose scale fields are near fp16's largest value, against data it would have to grow by 1/0.82 to
    /// reach: the rescaled field would overflow, so the block is left as it was and Correct says so.</summary>
    [Theory]
    [MemberData(nameof(UnitGainTypes))]
    public void ABlockWhoseRescaledScaleWouldOverflowIsLeftAsItIs(GgmlType type)
    {
        var codec = RowCodecs.Get(type);
        var length = GgmlTypeTraits.Of(type).BlockSize;
        var bytes = new byte[GgmlTypeTraits.Of(type).RowBytes(length)];
        codec.Quantize(TestRows.Make("gaussian", 1, length, seed: 3), bytes, default);
        // Grow the scale fields by 1.2 while they stay finite: the largest ends in (65504/1.2, 65504].
        var y = new float[length];
        while (true)
        {
            var grown = (byte[])bytes.Clone();
            UnitGain.Rescale(type, grown, 1.2f);
            codec.Dequantize(grown, y);
            if (!y.All(float.IsFinite)) break;
            bytes = grown;
        }
        codec.Dequantize(bytes, y);
        var x = y.Select(v => v / 0.82f).ToArray(); // gain 0.82: the fields would grow by 1.22, past 65504
        var before = (byte[])bytes.Clone();
        Assert.False(UnitGain.Correct(codec, bytes, x, default, new float[length]));
        Assert.Equal(before, bytes);
    }

    /// <summary>Per block Σc·x·y / Σc·x² = 1 up to the fp16 rounding of the rescaled scales: each is off by at most 2⁻¹¹
    /// relative, and the formats with a min round two fields, hence 1.5·10⁻³.</summary>
    [Theory]
    [MemberData(nameof(UnitGainTypes))]
    public void OptimalBlocksHaveUnitGain(GgmlType type)
    {
        var codec = (IOptimalRowCodec)RowCodecs.Get(type);
        var traits = GgmlTypeTraits.Of(type);
        const int length = 4096;
        foreach (var withImportance in new[] { false, true })
        {
            foreach (var kind in new[] { "gaussian", "student-t3" })
            {
                var x = TestRows.Make(kind, 1, length, seed: 5);
                var importance = withImportance ? TestRows.Importance(length, seed: 5) : null;
                var bytes = new byte[traits.RowBytes(length)];
                codec.QuantizeOptimal(x, bytes, importance, RowRole.Product);
                var y = new float[length];
                codec.Dequantize(bytes, y);
                for (var b = 0; b < length; b += traits.BlockSize)
                {
                    double xy = 0, xx = 0;
                    for (var j = b; j < b + traits.BlockSize; j++)
                    {
                        double c = importance?[j] ?? 1;
                        xy += c * x[j] * y[j];
                        xx += c * x[j] * x[j];
                    }
                    Assert.True(Math.Abs(xy / xx - 1) <= 1.5e-3,
                        $"{traits.Name} {kind}{(withImportance ? " with importance" : "")} block {b / traits.BlockSize}: gain {xy / xx:R}");
                }
            }
        }
    }
}
