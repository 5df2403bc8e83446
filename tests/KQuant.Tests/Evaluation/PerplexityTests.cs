using KQuant.Evaluation;
using KQuant.Gguf;
using KQuant.Model;
using KQuant.Model.Tokenizers;
using KQuant.Quants;
using KQuant.Tests.Fixtures;
using KQuant.Tests.Reference;
using Xunit.Abstractions;

namespace KQuant.Tests.Evaluation;

/// <summary>KQuant's perplexity against llama-perplexity's (the same method through libllama) on the same file and text:
/// equal within 0.1% relative for F32, F16, Q8_0, Q6_K, Q4_K_M and IQ4_XS files of every shared model. A few chunks
/// here; the whole texts behind the Long trait.</summary>
public sealed class PerplexityTests(ITestOutputHelper output)
{
    internal const string Tiny = "models/debdocs-tiny/debdocs-tiny-F32.gguf";
    internal const string Debdocs = "models/debdocs/debdocs-llama-10m-F32.gguf";
    internal const string Stories = "models/stories260K-F32.gguf";
    internal static readonly string[] Recipes = ["F32", "F16", "Q8_0", "Q6_K", "Q4_K_M", "IQ4_XS"];

    public static TheoryData<string, string, int, int> FewChunks()
    {
        var data = new TheoryData<string, string, int, int>();
        foreach (var recipe in Recipes)
        {
            data.Add(Tiny, recipe, 256, 4);
            data.Add(Debdocs, recipe, 512, 2);
            data.Add(Stories, recipe, 128, 6);
        }
        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(FewChunks))]
    public void AgreesWithLlamaPerplexity(string model, string recipe, int context, int chunks) =>
        Compare(model, recipe, context, chunks, TextFor(model, 60_000));

    public static TheoryData<string, string> OptimalFiles()
    {
        var data = new TheoryData<string, string>();
        foreach (var recipe in new[] { "Q2_K", "Q3_K_M", "Q4_K_M", "IQ4_XS", "Q4_1" }) data.Add(Debdocs, recipe);
        data.Add(Stories, "Q4_K_M"); // rows of 64 and 172: the fallback types' optimal paths
        return data;
    }

    /// <summary>Files written with --rounding optimal are plain llama.cpp formats: llama.cpp loads them and its perplexity
    /// is ours (same 0.1% bound as the reference files; in practice the same floats).</summary>
    [SkippableTheory]
    [MemberData(nameof(OptimalFiles))]
    public void OptimalFilesAgreeWithLlamaPerplexity(string model, string recipe) =>
        Compare(model, recipe, model == Stories ? 128 : 512, model == Stories ? 6 : 2, TextFor(model, 60_000), RoundingMode.Optimal);

    internal static string TextFor(string model, int? characters)
    {
        var text = File.ReadAllText(TestPaths.RequireShared(model == Stories ? "text/tinystories-valid-excerpt.txt" : "text/debdocs-val.txt"));
        return characters is { } c && c < text.Length ? text[..c] : text;
    }

    internal PerplexityResult Compare(string model, string recipe, int context, int chunks, string text,
        RoundingMode rounding = RoundingMode.Reference)
    {
        LlamaReference.Require();
        var path = QuantizedModels.Shared(model, recipe, rounding: rounding);
        var reference = LlamaReference.Perplexity(path, text, context, chunks, threads: 2);

        using var file = GgufFile.Open(path);
        var tokenizer = Tokenizer.FromGguf(file);
        var tokens = tokenizer.Encode(text);
        Assert.Equal(reference.Tokens, tokens);
        var llama = LlamaModel.Load(file);
        var ours = Perplexity.Run(llama, tokens, new PerplexityOptions
        {
            ContextSize = context,
            Chunks = chunks,
            Threads = 2,
            Bos = tokenizer.AddBos ? tokenizer.Bos : null,
        });
        var relative = Math.Abs(ours.Value - reference.Perplexity) / reference.Perplexity;
        output.WriteLine($"{Path.GetFileName(path)} c={context} chunks={ours.Chunks}: KQuant {ours.Value:F4} ± {ours.Uncertainty:F5}, " +
            $"llama.cpp {reference.Perplexity:F4} ± {reference.Uncertainty:F5}, relative {relative:E2}, {ours.TokensPerSecond:F0} tokens/s");
        Assert.Equal(reference.Running.Length, ours.RunningPerplexity.Count);
        Assert.True(relative <= 1e-3, $"perplexity {ours.Value} differs from llama.cpp's {reference.Perplexity} by {relative:P3}");
        Assert.True(Math.Abs(ours.Uncertainty - reference.Uncertainty) <= 0.01 * reference.Uncertainty);
        return ours;
    }
}
