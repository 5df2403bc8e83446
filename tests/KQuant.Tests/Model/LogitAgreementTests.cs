using KQuant.Gguf;
using KQuant.Model;
using KQuant.Tests.Fixtures;
using KQuant.Tests.Reference;
using Xunit.Abstractions;

namespace KQuant.Tests.Model;

/// <summary>The forward pass against llama.cpp's (llama_decode + llama_get_logits_ith, its AVX2 build) on the same file
/// and tokens. llama.cpp runs with an F32 KV cache and without flash attention, its most precise setting, so what
/// separates the two is the order of float additions, and through it the occasional activation that rounds the other
/// way when it is quantized for the next matrix product.
/// <para>Tolerances, as fractions of the logit range (max − min of a row, 20–40 here):</para>
/// <list type="bullet">
/// <item>F32: max |Δ| ≤ 1e-3. Nothing is rounded between the layers; measured ≤ 5e-7.</item>
/// <item>F16/BF16: max |Δ| ≤ 2e-3. Activations are rounded to fp16/bf16 before each product, as ggml does; an addition
/// order difference of one float ulp now and then rounds one activation to the neighbouring half (1/2048 or 1/256 of
/// it). Measured ≤ 5.5e-4; llama.cpp's own AVX2 and AVX-512 builds differ by 3e-4 on the F16 file.</item>
/// <item>Quantized: max |Δ| ≤ 2.5e-2 and RMS ≤ 3e-3. Activations become int8 before each product, and one code
/// changing by one step (1/127 of its block's largest value) moves that token's later logits by up to a few tenths.
/// Measured max ≤ 1.7e-2, RMS ≤ 2e-3; llama.cpp's AVX2 and AVX-512 builds differ from each other by up to 7.5e-3
/// (max) on the Q4_K_M files, for the same reason.</item>
/// </list></summary>
public sealed class LogitAgreementTests(ITestOutputHelper output)
{
    private const string Tiny = "models/debdocs-tiny/debdocs-tiny-F32.gguf";
    private const string Debdocs = "models/debdocs/debdocs-llama-10m-F32.gguf";
    private const string Stories = "models/stories260K-F32.gguf";

    public static TheoryData<string, string> SharedModelFiles()
    {
        var data = new TheoryData<string, string>();
        foreach (var model in new[] { Tiny, Debdocs, Stories })
        {
            foreach (var recipe in new[] { "F32", "F16", "Q8_0", "Q6_K", "Q4_K_M", "IQ4_XS" }) data.Add(model, recipe);
        }
        return data;
    }

    /// <summary>F32 and F16 files: ggml's F16 path rounds activations to fp16 and so does KQuant, so both agree to float
    /// summation order: 1e-3 of the logit range is a wide margin (measured: below 1e-6).</summary>
    [SkippableTheory]
    [MemberData(nameof(SharedModelFiles))]
    public void SharedModelsAgree(string model, string recipe)
    {
        var path = QuantizedModels.Shared(model, recipe);
        var text = TestPaths.RequireShared(model == Stories ? "text/tinystories-valid-excerpt.txt" : "text/debdocs-val.txt");
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

    private static (double Max, double Rms) Tolerance(string recipe) => recipe switch
    {
        "F32" => (1e-3, 1e-3),
        "F16" or "BF16" => (2e-3, 2e-3),
        _ => (2.5e-2, 3e-3),
    };

    private void Compare(string path, string text, int contextSize, (double Max, double Rms) tolerance)
    {
        LlamaReference.Require();
        using var reference = new LlamaReference.Inference(path,
            new LlamaReference.ContextOptions(contextSize) { F32Cache = true, FlashAttention = false, Threads = 2 });
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
