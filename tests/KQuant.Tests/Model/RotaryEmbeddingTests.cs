using KQuant.Model;
using KQuant.Tests.Reference;
using Xunit.Abstractions;

namespace KQuant.Tests.Model;

/// <summary>RoPE against ggml_rope_ext run by llama.cpp's AVX2 CPU backend, bit for bit, over thousands of positions
/// and random rows: none, linear and YaRN scaling, both pair styles, frequency factors. A YaRN angle that differs by
/// one rounding in the pairs between the correction dimensions shows up here for every input, where the end-to-end
/// logit comparisons see it only when it survives the rest of the forward pass.</summary>
public sealed class RotaryEmbeddingTests(ITestOutputHelper output)
{
    public static TheoryData<string> Cases => ["none", "linear", "yarn", "yarn-neox-long", "yarn-attn-beta", "yarn-freq-factors"];

    private static (RopeConfig Rope, int HeadDimension, int Heads, int Positions, int Step, bool Factors) Case(string name)
    {
        static float YarnAttnFactor(float factor) =>
            (0.1f * MathF.Log(factor) + 1f) * (1f / (1f + 0.1f * MathF.Log(factor)));
        return name switch
        {
            "none" => (new RopeConfig(32, RopeStyle.Normal, 10000f, 1f, RopeScaling.None, 2048, 0f, 1f), 32, 4, 2048, 1, false),
            "linear" => (new RopeConfig(64, RopeStyle.NeoX, 500000f, 0.5f, RopeScaling.Linear, 2048, 0f, 1f), 64, 2, 4096, 3, false),
            // The synthetic rope-yarn model's shape: factor 4, original context 64.
            "yarn" => (new RopeConfig(32, RopeStyle.Normal, 10000f, 0.25f, RopeScaling.Yarn, 64, 1f, YarnAttnFactor(4f)), 32, 4, 2048, 1, false),
            "yarn-neox-long" => (new RopeConfig(128, RopeStyle.NeoX, 1000000f, 1f / 40, RopeScaling.Yarn, 4096, 1f, YarnAttnFactor(40f)), 128, 2, 16384, 7, false),
            "yarn-attn-beta" => (new RopeConfig(64, RopeStyle.Normal, 10000f, 1f / 8, RopeScaling.Yarn, 512, 1f, 0.7f, 24f, 2f), 64, 3, 4096, 2, false),
            "yarn-freq-factors" => (new RopeConfig(64, RopeStyle.Normal, 10000f, 1f / 8, RopeScaling.Yarn, 256, 1f, YarnAttnFactor(8f)), 64, 2, 4096, 5, true),
            _ => throw new ArgumentException(name),
        };
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void MatchesGgmlRope(string name)
    {
        GgmlReference.RequireCpu();
        var (rope, headDimension, heads, positions, step, withFactors) = Case(name);
        var random = new Random(1234);
        var factors = withFactors
            ? Enumerable.Range(0, rope.Dimensions / 2).Select(_ => (float)Math.Exp(random.NextDouble() * 4 - 1)).ToArray()
            : [];
        var sampled = Enumerable.Range(0, (positions + step - 1) / step).Select(i => i * step).ToArray();
        var width = heads * headDimension;
        var x = new float[sampled.Length * width];
        for (var i = 0; i < x.Length; i++)
            x[i] = (float)((random.NextDouble() * 2 - 1) * Math.Pow(10, random.NextDouble() * 4 - 2));

        var theirs = GgmlReference.CpuRope(x, heads, headDimension, sampled, new GgmlReference.RopeParameters(
            rope.Dimensions, rope.Style == RopeStyle.NeoX ? 2 : 0, rope.OriginalContext, rope.FreqBase, rope.FreqScale,
            rope.ExtFactor, rope.AttnFactor, rope.BetaFast, rope.BetaSlow), factors);

        var embedding = new RotaryEmbedding(rope, positions, factors);
        var ours = (float[])x.Clone();
        for (var r = 0; r < sampled.Length; r++) embedding.Apply(ours.AsSpan(r * width, width), heads, headDimension, sampled[r]);

        int differing = 0, first = -1;
        for (var i = 0; i < ours.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(ours[i]) == BitConverter.SingleToInt32Bits(theirs[i])) continue;
            differing++;
            if (first < 0) first = i;
        }
        output.WriteLine($"{name}: {sampled.Length} positions × {heads} heads × {headDimension}: {differing} of {ours.Length} values differ");
        if (differing > 0)
            Assert.Fail($"{differing} values differ; first at position {sampled[first / width]}, head {first % width / headDimension}, " +
                $"value {first % headDimension}: {ours[first]:R} vs ggml's {theirs[first]:R}");
    }
}
