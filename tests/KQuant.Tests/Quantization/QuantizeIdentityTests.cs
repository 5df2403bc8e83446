using KQuant.Recipes;
using KQuant.Tests.Fixtures;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Quantization;

/// <summary>kquant quantize writes what llama-quantize (llama.cpp v0.5.0) writes: same tensor types, same bytes, same metadata.</summary>
public class QuantizeIdentityTests
{
    public static readonly string[] Recipes =
    [
        "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L",
        "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS",
    ];

    public static TheoryData<string> RecipeNames() => new(Recipes);

    private static string Sample => Path.Combine(TestPaths.Samples, "debdocs-tiny-F16.gguf");

    private static QuantRecipe Recipe(string name) => QuantRecipe.TryParse(name, out var r) ? r : throw new ArgumentException(name);

    [SkippableTheory]
    [MemberData(nameof(RecipeNames))]
    public void SampleModelMatchesLlamaQuantize(string recipe)
    {
        LlamaReference.Require();
        Assert.True(QuantizeComparison.AssertSame(Sample, Recipe(recipe)), "files differ outside tensor data and metadata");
    }

    [SkippableTheory]
    [MemberData(nameof(RecipeNames))]
    public void SampleModelWithImatrixMatchesLlamaQuantize(string recipe)
    {
        LlamaReference.Require();
        Assert.True(QuantizeComparison.AssertSame(Sample, Recipe(recipe), withImatrix: true), "files differ outside tensor data and metadata");
    }

    [SkippableFact]
    public void Q2KSRequiresAndUsesAnImatrix()
    {
        LlamaReference.Require();
        Assert.True(QuantizeComparison.AssertSame(Sample, Recipe("Q2_K_S"), withImatrix: true));
        Assert.True(QuantizeComparison.AssertSame(Sample, Recipe("Q4_K_M"), withImatrix: true, legacyImatrix: true));
    }
}
