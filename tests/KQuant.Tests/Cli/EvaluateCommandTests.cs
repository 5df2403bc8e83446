using KQuant.Cli;
using KQuant.Evaluation;
using KQuant.Gguf;
using KQuant.Model;
using KQuant.Model.Tokenizers;
using KQuant.Recipes;
using KQuant.Tests.Gguf;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Cli;

/// <summary><c>kquant evaluate</c> and the library behind it, on the bundled sample model and text.</summary>
public sealed class EvaluateCommandTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void TextQualityIsWhatPerplexityAndKlDivergenceMeasureOnTheKeptFiles()
    {
        var recipes = new[] { "Q2_K", "Q4_K_M", "Q8_0" }.Select(n => QuantRecipe.TryParse(n, out var r) ? r : throw new ArgumentException(n)).ToList();
        var report = RecipeEvaluation.Run(GgufTestFiles.Sample, recipes, new RecipeEvaluation.Options
        {
            KeepDirectory = _dir,
            TextPath = TestPaths.SampleText,
            ContextSize = 128,
            Chunks = 3,
            Threads = 2,
        });

        // The same measurement made by hand: the original's logits file, then each kept file against it.
        using var original = GgufFile.Open(GgufTestFiles.Sample);
        var tokenizer = Tokenizer.FromGguf(original);
        var logits = new MemoryStream();
        var basePerplexity = Perplexity.Run(LlamaModel.Load(original), tokenizer.Encode(File.ReadAllText(TestPaths.SampleText)),
            new PerplexityOptions { ContextSize = 128, Chunks = 3, Threads = 1, Bos = tokenizer.Bos, LogitsOutput = logits });
        Assert.Equal(basePerplexity.Value, report.BasePerplexity!.Value);
        var logitsPath = Path.Combine(_dir, "base.logits");
        File.WriteAllBytes(logitsPath, logits.ToArray());
        foreach (var outcome in report.Outcomes)
        {
            Assert.Equal(new FileInfo(outcome.KeptPath!).Length, outcome.FileBytes);
            using var quantized = GgufFile.Open(outcome.KeptPath!);
            using var reader = LogitsFileReader.Open(logitsPath);
            var expected = KlDivergence.Run(LlamaModel.Load(quantized), reader, new KlDivergenceOptions { Threads = 1, Bos = tokenizer.Bos });
            var q = outcome.Quality!;
            Assert.Equal(expected.MeanKld, q.MeanKld);
            Assert.Equal(expected.PerplexityQ, q.Perplexity);
            Assert.Equal(expected.SameTopP, q.SameTopP);
        }
        // More bits, closer to the original: a real property of these recipes on this model, by wide margins
        // (measured: mean KLD about 0.06, 0.004 and 0.0001).
        var kld = report.Outcomes.Select(o => o.Quality!.MeanKld.Value).ToArray();
        Assert.True(kld[0] > 4 * kld[1] && kld[1] > 4 * kld[2], string.Join(", ", kld));
    }

    [Fact]
    public void PrintsOneRowPerRecipeWithTheTextColumns()
    {
        var r = CliRunner.Run("evaluate", GgufTestFiles.Sample, "--types", "Q4_K_M,Q8_0", "--text", TestPaths.SampleText, "-c", "128", "--chunks", "2");
        Assert.Equal(ExitCodes.Success, r.ExitCode);
        Assert.Contains("mean KLD", r.Out);
        Assert.Contains("same top", r.Out);
        Assert.Matches(@"\(2 chunks of 128\) PPL \d+\.\d{4}", r.Out);
        Assert.Matches(@"(?m)^Q4_K_M\s", r.Out);
        Assert.Matches(@"(?m)^Q8_0\s", r.Out);
    }

    [Fact]
    public void BadInputsAreNamed()
    {
        var r = CliRunner.Run("evaluate", GgufTestFiles.Sample, "--types", "Q8_0", "--text", Path.Combine(_dir, "absent.txt"));
        Assert.Equal(ExitCodes.BadInput, r.ExitCode);
        Assert.Contains("absent.txt", r.Error);

        r = CliRunner.Run("evaluate", GgufTestFiles.Sample, "--types", "Q9_9");
        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        Assert.Contains("Q9_9", r.Error);

        r = CliRunner.Run("evaluate", GgufTestFiles.Sample, "--types", "Q8_0", "--text", TestPaths.SampleText, "--chunks", "0");
        Assert.Equal(ExitCodes.Usage, r.ExitCode);
    }
}
