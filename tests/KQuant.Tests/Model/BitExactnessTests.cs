using KQuant.Gguf;
using KQuant.Model;
using KQuant.Tests.Fixtures;
using KQuant.Tests.Reference;
using Xunit.Abstractions;

namespace KQuant.Tests.Model;

/// <summary>The forward pass step by step against llama.cpp's AVX2 build: every intermediate tensor llama.cpp names
/// (attn_norm, Qcur, kqv_out, ffn_swiglu, l_out, result_output, ...) compared bit for bit with KQuant's, on the same
/// file and tokens. The first tensor that differs locates a divergence to one operation.</summary>
public sealed class BitExactnessTests(ITestOutputHelper output)
{
    public static TheoryData<string, string> Files()
    {
        var data = new TheoryData<string, string>();
        foreach (var recipe in new[] { "F32", "F16", "Q8_0", "Q6_K", "Q4_K_M", "IQ4_XS" })
        {
            data.Add("models/debdocs-tiny/debdocs-tiny-F32.gguf", recipe);
            data.Add("models/stories260K-F32.gguf", recipe);
        }
        data.Add("models/debdocs/debdocs-llama-10m-F32.gguf", "Q4_K_M");
        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(Files))]
    public void EveryTensorMatches(string model, string recipe)
    {
        LlamaReference.Require();
        Skip.IfNot(KQuant.Model.Kernels.Lanes.Avx2Fma, "bit-exact agreement is with llama.cpp's AVX2 build");
        var path = QuantizedModels.Shared(model, recipe);
        const int context = 128;
        var text = File.ReadAllText(TestPaths.RequireShared(model.Contains("stories") ? "text/tinystories-valid-excerpt.txt" : "text/debdocs-val.txt"))[..6000];
        using var reference = new LlamaReference.Inference(path,
            new LlamaReference.ContextOptions(context) { Threads = 2, CaptureTensors = true });
        var tokens = reference.Tokenize(text)[..context];
        reference.Decode(tokens, 0, _ => true);

        using var file = GgufFile.Open(path);
        var llama = LlamaModel.Load(file);
        using var session = llama.CreateSession(context, new InferenceOptions { Threads = 2 });
        var mismatches = new List<string>();
        var compared = 0;
        session.Probe = (name, values, columns) =>
        {
            if (!reference.Captured.TryGetValue(name, out var theirs)) return;
            compared++;
            if (theirs.Length != values.Length)
            {
                mismatches.Add($"{name}: {values.Length} values, llama.cpp {theirs.Length}");
                return;
            }
            int differing = 0, first = -1;
            double worst = 0;
            for (var i = 0; i < values.Length; i++)
            {
                if (BitConverter.SingleToInt32Bits(values[i]) == BitConverter.SingleToInt32Bits(theirs[i])) continue;
                differing++;
                if (first < 0) first = i;
                worst = Math.Max(worst, Math.Abs(values[i] - theirs[i]));
            }
            if (differing > 0)
                mismatches.Add($"{name}: {differing} of {values.Length} differ (first at row {first / columns}, column {first % columns}: {values[first]} vs {theirs[first]}; max |Δ| {worst:g3})");
        };
        session.Evaluate(tokens, 0, 0, new float[context * llama.VocabularySize]);
        foreach (var m in mismatches.Take(12)) output.WriteLine(m);
        output.WriteLine($"{Path.GetFileName(path)}: {compared} tensors compared, {mismatches.Count} differ");
        Assert.True(compared > 10, $"only {compared} tensors were found in llama.cpp's graph");
        Assert.Empty(mismatches);
    }
}
