using KQuant.Gguf;
using KQuant.Model;
using KQuant.Model.Kernels;
using KQuant.Tests.Gguf;
using KQuant.Tests.Reference;
using Xunit.Abstractions;

namespace KQuant.Tests.Model;

/// <summary>Every row of a batch whose length is not a multiple of four (attention works on four tokens at a time)
/// against llama.cpp's logits, all positions outputs, as llama-imatrix asks for them. A batch of 510 once gave its last
/// token the first token's attention scores of its group of four.</summary>
public sealed class BatchLengthTests(ITestOutputHelper output)
{
    [SkippableTheory]
    [InlineData(65)]
    [InlineData(66)]
    [InlineData(67)]
    [InlineData(128)]
    [InlineData(170)]
    public void EveryRowOfABatchMatchesLlamaCpp(int length)
    {
        LlamaReference.Require();
        var path = GgufTestFiles.Sample;
        using var reference = new LlamaReference.Inference(path, new LlamaReference.ContextOptions(length) { Threads = 1 });
        var tokens = reference.Tokenize(File.ReadAllText(TestPaths.SampleText))[..length];
        var expected = reference.Decode(tokens, 0, _ => true);

        using var file = GgufFile.Open(path);
        var llama = LlamaModel.Load(file);
        using var session = llama.CreateSession(length, new InferenceOptions { Threads = 2 });
        var vocabulary = llama.VocabularySize;
        var logits = new float[length * vocabulary];
        session.Evaluate(tokens, 0, 0, logits);
        var worst = new double[length];
        for (var t = 0; t < length; t++)
        {
            for (var v = 0; v < vocabulary; v++) worst[t] = Math.Max(worst[t], Math.Abs(logits[t * vocabulary + v] - expected[t][v]));
        }
        var range = expected.Max(row => row.Max() - row.Min());
        output.WriteLine($"{length} tokens: max |Δlogit| {worst.Max():g3} (row {Array.IndexOf(worst, worst.Max())}), logit range {range:g3}");
        // Bit-identical on llama.cpp's AVX2 build; elsewhere within float rounding of an F16 model.
        var limit = Lanes.Avx2Fma ? 0 : 2e-3 * range;
        for (var t = 0; t < length; t++) Assert.True(worst[t] <= limit, $"row {t} of {length}: max |Δlogit| {worst[t]}");
    }
}
