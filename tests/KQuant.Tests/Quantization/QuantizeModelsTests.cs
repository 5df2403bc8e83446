using KQuant.Gguf;
using KQuant.Quantization;
using KQuant.Recipes;
using KQuant.Testing;
using KQuant.Tests.Fixtures;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Quantization;

/// <summary>The recipes on every kind of model the issue names, against llama_model_quantize.</summary>
public class QuantizeModelsTests
{
    public static readonly SyntheticLlama GqaUntied = new("gqa-untied", 256, 768, 8, 4, 1);
    public static readonly SyntheticLlama NoGqaTied = new("mha-tied", 256, 512, 8, 4, 4, Untied: false);
    public static readonly SyntheticLlama FallbackShapes = new("fallback-320x864", 320, 864, 8, 5, 1, F16: false);
    public static readonly SyntheticLlama MixtureOfExperts = new("moe-8x", 256, 256, 8, 4, 2, Experts: 8);
    // llama.cpp calls a llama model "70B" when it has 80 layers and fewer KV heads than heads; the size does not matter.
    public static readonly SyntheticLlama Shaped70B = new("shaped-70b", 256, 256, 80, 8, 1);

    public static TheoryData<string, string> SyntheticCases()
    {
        var data = new TheoryData<string, string>();
        foreach (var model in new[] { GqaUntied, NoGqaTied, FallbackShapes, MixtureOfExperts })
            foreach (var recipe in new[] { "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_S", "Q6_K", "IQ4_XS", "Q4_0" })
                data.Add(model.Name, recipe);
        return data;
    }

    private static SyntheticLlama ByName(string name) =>
        new[] { GqaUntied, NoGqaTied, FallbackShapes, MixtureOfExperts }.Single(m => m.Name == name);

    private static QuantRecipe Recipe(string name) => QuantRecipe.TryParse(name, out var r) ? r : throw new ArgumentException(name);

    [SkippableTheory]
    [MemberData(nameof(SyntheticCases))]
    public void SyntheticModelsMatchLlamaQuantize(string model, string recipe)
    {
        LlamaReference.Require();
        var path = SyntheticModels.Get(ByName(model));
        Assert.True(QuantizeComparison.AssertSame(path, Recipe(recipe)));
        Assert.True(QuantizeComparison.AssertSame(path, Recipe(recipe), withImatrix: true));
    }

    [SkippableTheory]
    [InlineData("models/stories260K-F32.gguf", "Q4_K_M")]
    [InlineData("models/stories260K-F32.gguf", "IQ4_XS")]
    [InlineData("models/stories260K-F16.gguf", "Q3_K_S")]
    [InlineData("models/debdocs/debdocs-llama-10m-F16.gguf", "Q4_K_M")]
    [InlineData("models/debdocs/debdocs-llama-10m-F16.gguf", "Q2_K")]
    public void SharedModelsMatchLlamaQuantize(string model, string recipe)
    {
        LlamaReference.Require();
        var path = TestPaths.RequireShared(model);
        Assert.True(QuantizeComparison.AssertSame(path, Recipe(recipe)));
        Assert.True(QuantizeComparison.AssertSame(path, Recipe(recipe), withImatrix: true));
    }

    [SkippableFact]
    public void FallbacksAreCountedAndWarnedAsLlamaDoes()
    {
        LlamaReference.Require();
        var path = SyntheticModels.Get(FallbackShapes);
        var result = ModelQuantizer.Run(new QuantizeRequest(path, "unused", Recipe("Q4_K_M")) { DryRun = true });
        // 864 columns are not a multiple of 256: Q4_K falls back to Q5_0 and Q6_K to Q8_0; 320 columns likewise.
        Assert.All(result.Plan.Tensors.Where(t => t.Tensor.Name.EndsWith("ffn_down.weight")),
            t => Assert.Contains(t.TargetType, new[] { GgmlType.Q5_0, GgmlType.Q8_0 }));
        var dir = TestPaths.NewTempDir();
        var log = LlamaReference.Quantize(path, Path.Combine(dir, "llama.gguf"), new LlamaReference.QuantizeOptions(LlamaFileType.MostlyQ4_K_M));
        var summary = System.Text.RegularExpressions.Regex.Match(log, @"WARNING: (\d+) of (\d+) tensor\(s\) required fallback quantization");
        Assert.True(summary.Success, "llama.cpp printed no fallback summary");
        Assert.Equal(int.Parse(summary.Groups[1].Value), result.Plan.FallbackCount);
        Assert.Contains($"{summary.Groups[1].Value} of {summary.Groups[2].Value} tensor(s) required fallback quantization", result.Warnings);
        var perTensor = System.Text.RegularExpressions.Regex.Matches(log, @"warning: (\S+)\s+- ncols").Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(perTensor, result.Warnings.Where(w => w.Contains("falling back")).Select(w => w[..w.IndexOf(':')]).ToList());
    }

    [SkippableTheory]
    [InlineData("Q3_K_M")]
    [InlineData("Q4_K_S")]
    public void The70BRuleMatchesLlamaQuantize(string recipe)
    {
        LlamaReference.Require();
        var path = SyntheticModels.Get(Shaped70B);
        var plan = ModelQuantizer.Run(new QuantizeRequest(path, "unused", Recipe(recipe)) { DryRun = true }).Plan;
        // Q3_K and Q4_K attn_v become Q5_K in a 70B model.
        Assert.All(plan.Tensors.Where(t => t.Category == TensorCategory.AttentionV), t => Assert.Equal(GgmlType.Q5_K, t.TargetType));
        Assert.True(QuantizeComparison.AssertSame(path, Recipe(recipe)));
    }

    [SkippableFact]
    public void OptionsMatchLlamaQuantize()
    {
        LlamaReference.Require();
        var model = SyntheticModels.Get(GqaUntied);
        var q4km = Recipe("Q4_K_M");
        Assert.True(QuantizeComparison.AssertSame(model, q4km, configure: r => r with { Pure = true }, configureReference: o => o with { Pure = true }));
        Assert.True(QuantizeComparison.AssertSame(model, q4km,
            configure: r => r with { OutputTensorType = GgmlType.Q8_0, TokenEmbeddingType = GgmlType.Q4_0 },
            configureReference: o => o with { OutputTensorType = GgmlType.Q8_0, TokenEmbeddingType = GgmlType.Q4_0 }));
        Assert.True(QuantizeComparison.AssertSame(model, q4km,
            configure: r => r with { TensorTypeOverrides = [new("attn_q", GgmlType.Q8_0), new("blk\\.[0-3]\\.ffn", GgmlType.Q5_K), new("ffn", GgmlType.IQ4_NL)] },
            configureReference: o => o with { TensorTypes = [("attn_q", GgmlType.Q8_0), ("blk\\.[0-3]\\.ffn", GgmlType.Q5_K), ("ffn", GgmlType.IQ4_NL)] }));
        Assert.True(QuantizeComparison.AssertSame(model, q4km, configure: r => r with { LeaveOutputTensor = true }, configureReference: o => o with { LeaveOutputTensor = true }));
        Assert.True(QuantizeComparison.AssertSame(model, q4km,
            configure: r => r with { MetadataOverrides = [MetadataOverride.Parse("general.name=str:renamed"), MetadataOverride.Parse("llama.context_length=int:1024"), MetadataOverride.Parse("kquant.flag=bool:true"), MetadataOverride.Parse("kquant.scale=float:0.5")] },
            configureReference: o => o with { KvOverrides = [("general.name", "renamed"), ("llama.context_length", 1024L), ("kquant.flag", true), ("kquant.scale", 0.5)] }));
    }

    [SkippableFact]
    public void RequantizingNeedsPermissionAndThenMatches()
    {
        LlamaReference.Require();
        var dir = TestPaths.NewTempDir();
        var q8 = Path.Combine(dir, "q8.gguf");
        ModelQuantizer.Run(new QuantizeRequest(SyntheticModels.Get(GqaUntied), q8, Recipe("Q8_0")));
        var refused = Assert.Throws<InvalidDataException>(() => ModelQuantizer.Run(new QuantizeRequest(q8, Path.Combine(dir, "x.gguf"), Recipe("Q4_K_M"))));
        Assert.Contains("--allow-requantize", refused.Message);
        Assert.False(File.Exists(Path.Combine(dir, "x.gguf")));
        Assert.True(QuantizeComparison.AssertSame(q8, Recipe("Q4_K_M"), configure: r => r with { AllowRequantize = true }, configureReference: o => o with { AllowRequantize = true }));
    }

    [SkippableFact]
    public void FilesWeWriteLoadInLlamaCpp()
    {
        LlamaReference.Require();
        var dir = TestPaths.NewTempDir();
        foreach (var model in new[] { Path.Combine(TestPaths.Samples, "debdocs-tiny-F16.gguf"), SyntheticModels.Get(MixtureOfExperts), SyntheticModels.Get(FallbackShapes) })
        {
            foreach (var recipe in new[] { "Q2_K", "Q4_K_M", "IQ4_XS", "Q8_0" })
            {
                var output = Path.Combine(dir, $"{Path.GetFileNameWithoutExtension(model)}-{recipe}.gguf");
                ModelQuantizer.Run(new QuantizeRequest(model, output, Recipe(recipe)));
                var loaded = LlamaReference.Load(output);
                using var f = GgufFile.Open(model);
                Assert.Equal((ulong)f.Tensors.Sum(t => t.ElementCount), loaded.ParameterCount);
            }
        }
    }
}

/// <summary>Every recipe on every model, with and without an imatrix (legacy .dat for the shared models): the full matrix
/// of the issue, too slow for the normal suite, run by .ci/run.</summary>
[Trait("Category", "Long")]
public class QuantizeFullMatrixTests
{
    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        var models = new[] { "sample", "gqa-untied", "mha-tied", "fallback-320x864", "moe-8x", "models/stories260K-F32.gguf", "models/debdocs/debdocs-llama-10m-F16.gguf" };
        foreach (var model in models)
            foreach (var recipe in QuantizeIdentityTests.Recipes.Append("Q2_K_S"))
                data.Add(model, recipe);
        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void MatchesLlamaQuantize(string model, string recipe)
    {
        LlamaReference.Require();
        var path = model switch
        {
            "sample" => Path.Combine(TestPaths.Samples, "debdocs-tiny-F16.gguf"),
            _ when model.StartsWith("models/", StringComparison.Ordinal) => TestPaths.RequireShared(model),
            _ => SyntheticModels.Get(new[] { QuantizeModelsTests.GqaUntied, QuantizeModelsTests.NoGqaTied, QuantizeModelsTests.FallbackShapes, QuantizeModelsTests.MixtureOfExperts }.Single(m => m.Name == model)),
        };
        var r = QuantRecipe.TryParse(recipe, out var q) ? q : throw new ArgumentException(recipe);
        if (recipe != "Q2_K_S") Assert.True(QuantizeComparison.AssertSame(path, r));
        Assert.True(QuantizeComparison.AssertSame(path, r, withImatrix: true, legacyImatrix: model.StartsWith("models/", StringComparison.Ordinal)));
    }
}
