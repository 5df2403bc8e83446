using Xunit.Abstractions;

namespace KQuant.Tests.Evaluation;

/// <summary>The full comparisons with llama-perplexity: whole texts, at the settings of the shared models' READMEs.</summary>
[Trait("Category", "Full")]
public sealed class PerplexityLongTests(ITestOutputHelper output)
{
    public static TheoryData<string, string, string, int, int> FullTexts()
    {
        var data = new TheoryData<string, string, string, int, int>();
        foreach (var recipe in PerplexityTests.Recipes)
        {
            data.Add(PerplexityTests.Stories, recipe, "text/tinystories-valid-excerpt.txt", 512, int.MaxValue);
            data.Add(PerplexityTests.Tiny, recipe, "text/debdocs-val.txt", 256, int.MaxValue);
            data.Add(PerplexityTests.Debdocs, recipe, "text/wiki.test.raw", 512, 40);
            data.Add(PerplexityTests.Debdocs, recipe, "text/debdocs-val.txt", 512, int.MaxValue);
        }
        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(FullTexts))]
    public void AgreesWithLlamaPerplexity(string model, string recipe, string text, int context, int chunks) =>
        new PerplexityTests(output).Compare(model, recipe, context, chunks, File.ReadAllText(Reference.TestPaths.RequireShared(text)));
}
