using KQuant.Gguf;
using KQuant.Model;
using KQuant.Tests.Reference;
using Xunit.Abstractions;

namespace KQuant.Tests.Model;

/// <summary>The forward pass against llama.cpp's (llama_decode + llama_get_logits_ith) on the same file and tokens.</summary>
public sealed class LogitAgreementTests(ITestOutputHelper output)
{
    [SkippableTheory]
    [InlineData("models/debdocs-tiny/debdocs-tiny-F32.gguf", "text/debdocs-val.txt")]
    [InlineData("models/stories260K-F32.gguf", "text/tinystories-valid-excerpt.txt")]
    public void F32LogitsAgree(string model, string text)
    {
        LlamaReference.Require();
        var path = TestPaths.RequireShared(model);
        var textPath = TestPaths.RequireShared(text);
        const int context = 128;
        using var reference = new LlamaReference.Inference(path, new LlamaReference.ContextOptions(context) { F32Cache = true, FlashAttention = false, Threads = 2 });
        var tokens = reference.Tokenize(File.ReadAllText(textPath)[..4000])[..context];
        var expected = reference.Decode(tokens, 0, _ => true);

        using var file = GgufFile.Open(path);
        var llama = LlamaModel.Load(file);
        using var session = llama.CreateSession(context, new InferenceOptions { Threads = 2 });
        var logits = new float[context * llama.VocabularySize];
        session.Evaluate(tokens, 0, 0, logits);

        double maxDiff = 0, range = 0;
        for (var t = 0; t < context; t++)
        {
            var row = logits.AsSpan(t * llama.VocabularySize, llama.VocabularySize);
            range = Math.Max(range, expected[t].Max() - expected[t].Min());
            for (var v = 0; v < row.Length; v++) maxDiff = Math.Max(maxDiff, Math.Abs(row[v] - expected[t][v]));
        }
        output.WriteLine($"max |Δlogit| {maxDiff:g4}, logit range {range:g4}, ratio {maxDiff / range:g4}");
        Assert.True(maxDiff <= 1e-3 * range, $"max |Δlogit| {maxDiff} exceeds 1e-3 × range {range}");
    }
}
