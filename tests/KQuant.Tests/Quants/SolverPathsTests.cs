using KQuant.Gguf;
using KQuant.Quants;
using KQuant.Quants.K;

namespace KQuant.Tests.Quants;

/// <summary>
/// The SIMD solvers and dequantizers against the scalar ones, bit for bit. The byte-identity tests check against ggml
/// whichever path this machine runs (the SIMD one on AVX2); these close the loop for the scalar paths that machines
/// without AVX2 run. Inputs cover the TestRows cases plus NaN and signed-zero corner cases of the lane reductions.
/// </summary>
public class SolverPathsTests
{
    private static readonly string[] Kinds = ["gaussian", "student-t3", "outliers", "zeros", "constant", "tiny", "subnormal", "huge", "cosine"];

    public static TheoryData<string, int> KindsAndGroupSizes()
    {
        var data = new TheoryData<string, int>();
        foreach (var kind in Kinds)
        {
            data.Add(kind, 16);
            data.Add(kind, 32);
        }
        return data;
    }

    private static (float[] X, float[] Weights) Groups(string kind, int groupSize, int seed)
    {
        const int groups = 8 * 24 + 3; // whole vectors of eight groups and a scalar remainder
        var x = TestRows.Make(kind, 1, groups * groupSize, seed);
        // Knock some groups down to all zeros or a single sign, where the range and zero checks trigger.
        var rng = new Random(seed);
        for (var g = 0; g < groups; g++)
        {
            var group = x.AsSpan(g * groupSize, groupSize);
            switch (rng.Next(6))
            {
                case 0: group.Clear(); break;
                case 1: foreach (ref var v in group) v = MathF.Abs(v); break;
                case 2: foreach (ref var v in group) v = -MathF.Abs(v); break;
            }
        }
        var weights = TestRows.Importance(x.Length, seed);
        return (x, weights);
    }

    [SkippableTheory]
    [MemberData(nameof(KindsAndGroupSizes))]
    public void AsymmetricSolversOnEightGroupsMatchTheScalarOnes(string kind, int groupSize)
    {
        Skip.IfNot(BlockSolvers.UseVector256, "no AVX2 here: only the scalar path runs");
        var (x, weights) = Groups(kind, groupSize, 11);
        var groups = x.Length / groupSize;
        foreach (var (nmax, rmin, rdelta, nstep, useMad, qkx3) in new[]
                 {
                     (3, -0.5f, 0.1f, 15, true, false), (15, -1f, 0.1f, 20, false, false), (31, -0.5f, 0.1f, 15, false, false),
                     (3, -0.9f, 0.05f, 36, false, true), (15, -0.9f, 0.05f, 36, false, true), (31, -0.9f, 0.05f, 36, false, true),
                 })
        {
            var levels = new byte[x.Length];
            var scales = new float[groups];
            var mins = new float[groups];
            if (qkx3) BlockSolvers.MakeQkx3QuantsForGroups(nmax, x, weights, groupSize, levels, scales, mins, rmin, rdelta, nstep);
            else BlockSolvers.MakeQkx2QuantsForGroups(nmax, x, weights, groupSize, levels, scales, mins, rmin, rdelta, nstep, useMad);

            var expectedLevels = new byte[groupSize];
            for (var g = 0; g < groups; g++)
            {
                var span = new Range(g * groupSize, (g + 1) * groupSize);
                var scale = qkx3
                    ? BlockSolvers.MakeQkx3Quants(nmax, x[span], weights[span], expectedLevels, out var min, rmin, rdelta, nstep)
                    : BlockSolvers.MakeQkx2Quants(nmax, x[span], weights[span], expectedLevels, out min, rmin, rdelta, nstep, useMad);
                var where = $"{(qkx3 ? "qkx3" : "qkx2")} nmax {nmax}, {kind}, group {g}";
                AssertSameBits(scale, scales[g], $"{where}: scale");
                AssertSameBits(min, mins[g], $"{where}: min");
                Assert.True(expectedLevels.AsSpan().SequenceEqual(levels.AsSpan(span)), $"{where}: levels");
            }
        }
    }

    [SkippableTheory]
    [MemberData(nameof(KindsAndGroupSizes))]
    public void SymmetricSolversMatchTheScalarOnes(string kind, int groupSize)
    {
        Skip.IfNot(BlockSolvers.UseVector256, "no AVX2 here: only the scalar path runs");
        var (x, weights) = Groups(kind, groupSize, 12);
        var groups = x.Length / groupSize;
        foreach (var nmax in new[] { 4, 8, 16, 32 })
        {
            foreach (var weighted in new[] { false, true })
            {
                var w = weighted ? weights : [];
                var levels = new sbyte[x.Length];
                var scales = new float[groups];
                BlockSolvers.MakeQxQuantsForGroups(nmax, x, w, groupSize, levels, scales);
                var expected = new sbyte[groupSize];
                var single = new sbyte[groupSize];
                for (var g = 0; g < groups; g++)
                {
                    var span = new Range(g * groupSize, (g + 1) * groupSize);
                    var groupWeights = weighted ? w.AsSpan(span) : default;
                    var scale = BlockSolvers.MakeQxQuantsScalar(nmax, x.AsSpan(span), expected, groupWeights);
                    var where = $"qx nmax {nmax}, {(weighted ? "weighted" : "x²")}, {kind}, group {g}";
                    AssertSameBits(scale, scales[g], $"{where}: scale (eight groups)");
                    Assert.True(expected.AsSpan().SequenceEqual(levels.AsSpan(span)), $"{where}: levels (eight groups)");
                    AssertSameBits(scale, BlockSolvers.MakeQxQuantsVector256(nmax, x.AsSpan(span), single, groupWeights), $"{where}: scale (candidate lanes)");
                    Assert.True(expected.AsSpan().SequenceEqual(single), $"{where}: levels (candidate lanes)");
                }
            }
        }

        var q3Levels = new sbyte[x.Length];
        var q3Scales = new float[groups];
        BlockSolvers.MakeQ3QuantsForGroups(4, x, groupSize, q3Levels, q3Scales);
        var q3Expected = new sbyte[groupSize];
        for (var g = 0; g < groups; g++)
        {
            var span = new Range(g * groupSize, (g + 1) * groupSize);
            AssertSameBits(BlockSolvers.MakeQ3Quants(4, x.AsSpan(span), q3Expected), q3Scales[g], $"q3 {kind}, group {g}: scale");
            Assert.True(q3Expected.AsSpan().SequenceEqual(q3Levels.AsSpan(span)), $"q3 {kind}, group {g}: levels");
        }
    }

    [SkippableFact]
    public void LaneReductionsKeepGgmlsTieAndNaNRules()
    {
        Skip.IfNot(BlockSolvers.UseVector256, "no AVX2 here: only the scalar path runs");
        List<float[]> cases =
        [
            new float[16],
            [-0f, 0f, -0f, 0f, 0f, 0f, 0f, 0f, -0f, 0f, 0f, 0f, 0f, 0f, 0f, -0f],
            [1, -3, 3, 2, -3, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1],
            [float.NaN, 1, 2, -5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            [1, 2, float.NaN, -5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, float.NaN, 0],
            [0, 1, 2, 3, 4, 5, 6, 7, -0f, 1, 2, 3, 4, 5, 6, 7],
            [5, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, -0f],
            [-2, -1, -2, -3, -4, -5, -6, -7, -8, -1, -2, -3, -4, -5, -6, 0f],
        ];
        var rng = new Random(5);
        for (var k = 0; k < 200; k++) cases.Add(Enumerable.Range(0, 32).Select(_ => (float)rng.Next(-3, 4)).ToArray());
        foreach (var x in cases)
        {
            var where = string.Join(",", x);
            var (max, amax) = BlockSolvers.SignedAbsMaxScalar(x);
            var (vmax, vamax) = BlockSolvers.SignedAbsMaxVector256(x);
            AssertSameBits(max, vmax, $"signed abs max of {where}");
            AssertSameBits(amax, vamax, $"abs max of {where}");
            var (min, mx) = BlockSolvers.RangeScalar(x);
            var (vmin, vmx) = BlockSolvers.RangeVector256(x);
            AssertSameBits(min, vmin, $"min of {where}");
            AssertSameBits(mx, vmx, $"max of {where}");
        }
    }

    [SkippableTheory]
    [InlineData(GgmlType.Q2_K)]
    [InlineData(GgmlType.Q3_K)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.Q8_K)]
    public void VectorDequantizersMatchTheScalarOnes(GgmlType type)
    {
        Skip.IfNot(KDequantize.UseVector256, "no AVX2 here: only the scalar path runs");
        var traits = GgmlTypeTraits.Of(type);
        const int count = 256 * 200;
        var bytes = new byte[traits.RowBytes(count)];
        new Random((int)type).NextBytes(bytes);
        var scalar = new float[count];
        var vector = new float[count];
        switch (type)
        {
            case GgmlType.Q2_K: Q2KCodec.DequantizeScalar(bytes, scalar); Q2KCodec.DequantizeVector256(bytes, vector); break;
            case GgmlType.Q3_K: Q3KCodec.DequantizeScalar(bytes, scalar); Q3KCodec.DequantizeVector256(bytes, vector); break;
            case GgmlType.Q4_K: Q4KCodec.DequantizeScalar(bytes, scalar); Q4KCodec.DequantizeVector256(bytes, vector); break;
            case GgmlType.Q5_K: Q5KCodec.DequantizeScalar(bytes, scalar); Q5KCodec.DequantizeVector256(bytes, vector); break;
            case GgmlType.Q6_K: Q6KCodec.DequantizeScalar(bytes, scalar); Q6KCodec.DequantizeVector256(bytes, vector); break;
            default: Q8KCodec.DequantizeScalar(bytes, scalar); Q8KCodec.DequantizeVector256(bytes, vector); break;
        }
        for (var i = 0; i < count; i++) AssertSameBits(scalar[i], vector[i], $"{traits.Name} element {i} (block {i / 256})");
    }

    private static void AssertSameBits(float expected, float actual, string what)
    {
        if (BitConverter.SingleToInt32Bits(expected) != BitConverter.SingleToInt32Bits(actual))
        {
            Assert.Fail($"{what}: scalar {expected:R} (0x{BitConverter.SingleToInt32Bits(expected):x8}), SIMD {actual:R} (0x{BitConverter.SingleToInt32Bits(actual):x8})");
        }
    }
}
