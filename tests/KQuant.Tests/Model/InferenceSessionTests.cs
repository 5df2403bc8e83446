using KQuant.Evaluation;
using KQuant.Gguf;
using KQuant.Model;
using KQuant.Testing;
using KQuant.Model.Tokenizers;
using KQuant.Tests.Fixtures;
using KQuant.Tests.Gguf;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Model;

/// <summary>The session API on the bundled sample: activation hooks, batching, argument checks.</summary>
public sealed class InferenceSessionTests
{
    private sealed class Recorder : IActivationObserver
    {
        public List<(string Name, int Expert, int Rows, int Columns, float First)> Calls { get; } = [];

        public void OnMatMul(string weightName, int expert, ReadOnlySpan<float> activations, int columns) =>
            Calls.Add((weightName, expert, activations.Length / columns, columns, activations[0]));
    }

    private static int[] SampleTokens(GgufFile file, int count) =>
        Tokenizer.FromGguf(file).Encode(File.ReadAllText(TestPaths.SampleText))[..count];

    [Fact]
    public void TheObserverSeesTheInputOfEveryMatrixProductInGraphOrder()
    {
        using var file = GgufFile.Open(GgufTestFiles.Sample);
        var model = LlamaModel.Load(file);
        var recorder = new Recorder();
        using var session = model.CreateSession(64, new InferenceOptions { Threads = 2, Observer = recorder });
        session.Evaluate(SampleTokens(file, 64), 0, 60, new float[4 * model.VocabularySize]);

        string[] perLayer = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];
        var expected = Enumerable.Range(0, 2).SelectMany(l => perLayer.Select(w => $"blk.{l}.{w}.weight")).Append("output.weight");
        Assert.Equal(expected, recorder.Calls.Select(c => c.Name));
        Assert.All(recorder.Calls, c => Assert.Equal(-1, c.Expert));
        // Q, K and V read the same normalized rows; the last layer's feed-forward and the output only the rows that
        // produce logits, as llama.cpp computes them.
        Assert.Equal(recorder.Calls[0].First, recorder.Calls[1].First);
        Assert.Equal(recorder.Calls[0].First, recorder.Calls[2].First);
        Assert.Equal([64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 4, 4, 4, 4], recorder.Calls.Select(c => c.Rows));
        Assert.Equal(768, recorder.Calls.Single(c => c.Name == "blk.0.ffn_down.weight").Columns);
    }

    [Fact]
    public void ExpertsAreObservedOnePerExpertWithTheirTokens()
    {
        var path = SyntheticModels.Get(new SyntheticLlama("moe", 128, 256, 2, 4, 4, Experts: 4));
        using var file = GgufFile.Open(path);
        var model = LlamaModel.Load(file);
        var recorder = new Recorder();
        using var session = model.CreateSession(32, new InferenceOptions { Threads = 1, Observer = recorder });
        session.Evaluate(SampleTokens(file, 32), 0, 0, new float[32 * model.VocabularySize]);

        var gates = recorder.Calls.Where(c => c.Name == "blk.0.ffn_gate_exps.weight").ToList();
        Assert.All(gates, c => Assert.InRange(c.Expert, 0, 3));
        Assert.Equal(gates.Count, gates.Select(c => c.Expert).Distinct().Count());
        Assert.Equal(32 * 2, gates.Sum(c => c.Rows)); // every token goes to two experts
        Assert.Contains(recorder.Calls, c => c.Name == "blk.0.ffn_gate_inp.weight" && c.Expert == -1 && c.Rows == 32);
    }

    [Fact]
    public void SmallerBatchesGiveTheSamePerplexity()
    {
        using var file = GgufFile.Open(GgufTestFiles.Sample);
        var model = LlamaModel.Load(file);
        var tokens = Tokenizer.FromGguf(file).Encode(File.ReadAllText(TestPaths.SampleText));
        var whole = Perplexity.Run(model, tokens, new PerplexityOptions { ContextSize = 128, Chunks = 2, Threads = 2, Bos = 1 });
        var batched = Perplexity.Run(model, tokens, new PerplexityOptions { ContextSize = 128, Chunks = 2, Threads = 2, Bos = 1, BatchSize = 64 });
        Assert.Equal(whole.RunningPerplexity, batched.RunningPerplexity);
    }

    [Fact]
    public void EvaluateChecksItsArguments()
    {
        using var file = GgufFile.Open(GgufTestFiles.Sample);
        var model = LlamaModel.Load(file);
        using var session = model.CreateSession(16, new InferenceOptions { Threads = 1 });
        var logits = new float[16 * model.VocabularySize];
        Assert.Throws<ArgumentOutOfRangeException>(() => session.Evaluate(new int[8], 10, 0, logits));
        Assert.Throws<ArgumentOutOfRangeException>(() => session.Evaluate([model.VocabularySize], 0, 0, logits));
        Assert.Throws<ArgumentException>(() => session.Evaluate(new int[8], 0, 0, new float[model.VocabularySize]));
    }
}
