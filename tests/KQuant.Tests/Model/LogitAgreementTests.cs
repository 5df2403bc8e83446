using KQuant.Gguf;
using KQuant.Model;
using KQuant.Model.Kernels;
using KQuant.Tests.Fixtures;
using KQuant.Tests.Reference;
using Xunit.Abstractions;

namespace KQuant.Tests.Model;

/// <summary>The forward pass against llama.cpp's (llama_decode + llama_get_logits_ith, its AVX2 build, default context
/// settings: fp16 KV cache and flash attention) on the same file and tokens.
/// <para>Tolerance: none. KQuant computes every step as that build does, down to the order of float additions (see
/// <see cref="BitExactnessTests"/>), so on an AVX2 machine the logits are the same floats. Where llama.cpp runs
/// another build (no AVX2), its kernels add in other orders; there the bound is 1e-3 of the logit range (max − min of a
/// row) for F32 files, 2e-3 for F16/BF16 (an activation occasionally rounds to the neighbouring half), and for quantized
/// files 2.5e-2 at most and 3e-3 RMS (an activation occasionally rounds to the neighbouring int8 code, moving that
/// token's later logits by up to a few tenths). Those bounds were measured against llama.cpp's AVX2 build before the
/// kernels were made exact: ≤ 5e-7, ≤ 5.5e-4 and ≤ 1.7e-2 / 2e-3, the last no more than llama.cpp's own AVX2 and
/// AVX-512 builds differ from each other.</para></summary>
public sealed class LogitAgreementTests(ITestOutputHelper output)
{
    private const string Tiny = "models/debdocs-tiny/debdocs-tiny-F32.gguf";
    private const string Debdocs = "models/debdocs/debdocs-llama-10m-F32.gguf";

    /// <summary>debdocs-llama-10m's files (debdocs-tiny's and stories260K's are compared tensor by tensor, logits
    /// included, in <see cref="BitExactnessTests"/>).</summary>
    public static TheoryData<string, string> SharedModelFiles()
    {
        var data = new TheoryData<string, string>();
        foreach (var recipe in new[] { "F32", "F16", "Q8_0", "Q6_K", "Q4_K_M", "IQ4_XS" }) data.Add(Debdocs, recipe);
        return data;
    }

    /// <summary>F32 and F16 files: ggml's F16 path rounds activations to fp16 and so does KQuant, so both agree to float
    /// summation order: 1e-3 of the logit range is a wide margin (measured: below 1e-6).</summary>
    [SkippableTheory]
    [MemberData(nameof(SharedModelFiles))]
    public void SharedModelsAgree(string model, string recipe)
    {
        var path = QuantizedModels.Shared(model, recipe);
        var text = TestPaths.RequireShared("text/debdocs-val.txt");
        Compare(path, File.ReadAllText(text)[..6000], contextSize: 128, Tolerance(recipe));
    }

    /// <summary>Every weight kernel in a whole forward pass: debdocs-tiny with all tensors in one type.</summary>
    [SkippableTheory]
    [InlineData("BF16")]
    [InlineData("Q4_0")]
    [InlineData("Q4_1")]
    [InlineData("Q5_0")]
    [InlineData("Q5_1")]
    [InlineData("Q8_0")]
    [InlineData("IQ4_NL")]
    [InlineData("Q2_K")]
    [InlineData("Q3_K_S")]
    [InlineData("Q4_K_S")]
    [InlineData("Q5_K_S")]
    [InlineData("Q6_K")]
    [InlineData("IQ4_XS")]
    public void EveryWeightTypeAgrees(string recipe)
    {
        var path = QuantizedModels.Shared(Tiny, recipe, pure: true);
        Compare(path, File.ReadAllText(TestPaths.RequireShared("text/debdocs-val.txt"))[..6000], contextSize: 96, Tolerance(recipe));
    }

    private static (double Max, double Rms) Tolerance(string recipe) => Lanes.Avx2Fma ? (0, 0) : recipe switch
    {
        "F32" => (1e-3, 1e-3),
        "F16" or "BF16" => (2e-3, 2e-3),
        _ => (2.5e-2, 3e-3),
    };

    private void Compare(string path, string text, int contextSize, (double Max, double Rms) tolerance)
    {
        LlamaReference.Require();
        using var reference = new LlamaReference.Inference(path,
            new LlamaReference.ContextOptions(contextSize) { Threads = 2 });
        var tokens = reference.Tokenize(text)[..contextSize];
        var expected = reference.Decode(tokens, 0, _ => true);

        using var file = GgufFile.Open(path);
        var llama = LlamaModel.Load(file);
        using var session = llama.CreateSession(contextSize, new InferenceOptions { Threads = 2 });
        var vocabulary = llama.VocabularySize;
        var logits = new float[contextSize * vocabulary];
        session.Evaluate(tokens, 0, 0, logits);

        double maxDiff = 0, range = 0, sumSquares = 0;
        for (var t = 0; t < contextSize; t++)
        {
            range = Math.Max(range, expected[t].Max() - expected[t].Min());
            for (var v = 0; v < vocabulary; v++)
            {
                var diff = Math.Abs(logits[t * vocabulary + v] - expected[t][v]);
                maxDiff = Math.Max(maxDiff, diff);
                sumSquares += diff * diff;
            }
        }
        var rms = Math.Sqrt(sumSquares / (contextSize * vocabulary));
        output.WriteLine($"{Path.GetFileName(path)}: max |Δlogit| {maxDiff:g3}, rms {rms:g3}, logit range {range:g4}, max/range {maxDiff / range:g3}, rms/range {rms / range:g3}");
        Assert.True(maxDiff <= tolerance.Max * range, $"max |Δlogit| {maxDiff} exceeds {tolerance.Max} × range {range}");
        Assert.True(rms <= tolerance.Rms * range, $"RMS Δlogit {rms} exceeds {tolerance.Rms} × range {range}");
    }
}
