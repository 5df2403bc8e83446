using KQuant.Gguf;
using KQuant.Model;
using KQuant.Testing;
using KQuant.Model.Kernels;
using KQuant.Model.Tokenizers;
using KQuant.Tests.Fixtures;
using KQuant.Tests.Gguf;
using KQuant.Tests.Reference;
using Xunit.Abstractions;

namespace KQuant.Tests.Model;

/// <summary>Shapes and features the shared models do not have, on random-weight models llama.cpp loads: qwen2 (Q/K/V
/// biases, NeoX RoPE), GQA, tied output, linear and YaRN RoPE scaling, a mixture of experts. Logits against llama.cpp's.</summary>
public sealed class SyntheticModelTests(ITestOutputHelper output)
{
    public static TheoryData<string> Models => ["qwen2", "gqa-tied", "rope-linear", "rope-yarn", "moe"];

    private static SyntheticLlama Spec(string name) => name switch
    {
        "qwen2" => new SyntheticLlama("qwen2", 128, 256, 2, 4, 2, Architecture: "qwen2", QkvBias: true),
        "gqa-tied" => new SyntheticLlama("gqa-tied", 256, 512, 2, 8, 2, Untied: false),
        "rope-linear" => new SyntheticLlama("rope-linear", 128, 256, 2, 4, 4, RopeScaling: "linear", RopeFactor: 2),
        "rope-yarn" => new SyntheticLlama("rope-yarn", 128, 256, 2, 4, 4, RopeScaling: "yarn", RopeFactor: 4),
        "moe" => new SyntheticLlama("moe", 128, 256, 2, 4, 4, Experts: 4),
        _ => throw new ArgumentException(name),
    };

    [SkippableTheory]
    [MemberData(nameof(Models))]
    public void LogitsMatchLlamaCpp(string name)
    {
        LlamaReference.Require();
        var path = SyntheticModels.Get(Spec(name));
        const int context = 96;
        using var reference = new LlamaReference.Inference(path, new LlamaReference.ContextOptions(context) { Threads = 2 });
        var tokens = reference.Tokenize(File.ReadAllText(TestPaths.SampleText))[..context];
        var expected = reference.Decode(tokens, 0, _ => true);

        using var file = GgufFile.Open(path);
        var llama = LlamaModel.Load(file);
        Assert.Equal(tokens, Tokenizer.FromGguf(file).Encode(File.ReadAllText(TestPaths.SampleText))[..context]);
        using var session = llama.CreateSession(context, new InferenceOptions { Threads = 2 });
        var logits = new float[context * llama.VocabularySize];
        session.Evaluate(tokens, 0, 0, logits);
        double worst = 0, range = 0;
        for (var t = 0; t < context; t++)
        {
            range = Math.Max(range, expected[t].Max() - expected[t].Min());
            for (var v = 0; v < llama.VocabularySize; v++) worst = Math.Max(worst, Math.Abs(logits[t * llama.VocabularySize + v] - expected[t][v]));
        }
        output.WriteLine($"{name}: max |Δlogit| {worst:g3}, logit range {range:g3}");
        // Bit-identical on llama.cpp's AVX2 build; elsewhere (other kernels) within float rounding of an F16 model.
        Assert.True(worst <= (Lanes.Avx2Fma ? 0 : 2e-3 * range), $"max |Δlogit| {worst} (range {range})");
    }
}
