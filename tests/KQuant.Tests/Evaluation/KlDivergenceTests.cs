using System.Runtime.InteropServices;
using KQuant.Evaluation;
using KQuant.Gguf;
using KQuant.Model;
using KQuant.Model.Tokenizers;
using KQuant.Tests.Fixtures;
using KQuant.Tests.Reference;
using Xunit.Abstractions;

namespace KQuant.Tests.Evaluation;

/// <summary>The logits file and the KL-divergence statistics against llama-perplexity's (--kl-divergence-base and
/// --kl-divergence through libllama): each tool reads the other's base file, and the statistics agree within 0.5%.</summary>
public sealed class KlDivergenceTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [SkippableTheory]
    [InlineData(PerplexityTests.Tiny, "Q4_K_M", 256, 6)]
    [InlineData(PerplexityTests.Tiny, "IQ4_XS", 256, 6)]
    [InlineData(PerplexityTests.Debdocs, "Q4_K_M", 512, 2)]
    public void StatisticsAgreeWithLlamaPerplexity(string model, string recipe, int context, int chunks) =>
        Compare(model, recipe, context, chunks, PerplexityTests.TextFor(model, 80_000));

    /// <summary>Whole texts (debdocs-llama-10m: the first 40 chunks of WikiText-2, as in its README).</summary>
    [SkippableTheory]
    [Trait("Category", "Full")]
    [InlineData(PerplexityTests.Stories, "Q4_K_M", "text/tinystories-valid-excerpt.txt", 512, int.MaxValue)]
    [InlineData(PerplexityTests.Tiny, "Q4_K_M", "text/debdocs-val.txt", 256, int.MaxValue)]
    [InlineData(PerplexityTests.Tiny, "IQ4_XS", "text/debdocs-val.txt", 256, int.MaxValue)]
    [InlineData(PerplexityTests.Debdocs, "Q4_K_M", "text/wiki.test.raw", 512, 40)]
    [InlineData(PerplexityTests.Debdocs, "Q6_K", "text/wiki.test.raw", 512, 40)]
    public void WholeTextStatisticsAgreeWithLlamaPerplexity(string model, string recipe, string text, int context, int chunks) =>
        Compare(model, recipe, context, chunks, File.ReadAllText(TestPaths.RequireShared(text)));

    private void Compare(string model, string recipe, int context, int chunks, string text)
    {
        LlamaReference.Require();
        var basePath = QuantizedModels.Shared(model, "F16");
        var quantized = QuantizedModels.Shared(model, recipe);
        var theirsBase = Path.Combine(_dir, "llama.logits");
        var oursBase = Path.Combine(_dir, "kquant.logits");
        var reference = LlamaReference.Perplexity(basePath, text, context, chunks, threads: 2, logitsPath: theirsBase);

        PerplexityResult basePerplexity;
        using (var file = GgufFile.Open(basePath))
        using (var stream = File.Create(oursBase))
        {
            var tokenizer = Tokenizer.FromGguf(file);
            basePerplexity = Perplexity.Run(LlamaModel.Load(file), tokenizer.Encode(text), new PerplexityOptions
            {
                ContextSize = context, Chunks = chunks, Threads = 2, Bos = tokenizer.AddBos ? tokenizer.Bos : null, LogitsOutput = stream,
            });
        }
        Assert.True(Math.Abs(basePerplexity.Value - reference.Perplexity) <= 1e-3 * reference.Perplexity);
        CompareFiles(oursBase, theirsBase);

        var llamaOnLlama = LlamaReference.KlDivergence(quantized, theirsBase, threads: 2);
        var llamaOnOurs = LlamaReference.KlDivergence(quantized, oursBase, threads: 2);
        var oursOnLlama = OurKlDivergence(quantized, theirsBase);
        var oursOnOurs = OurKlDivergence(quantized, oursBase);
        Report("llama.cpp on its base", llamaOnLlama);
        Report("llama.cpp on KQuant's base", llamaOnOurs);
        output.WriteLine($"KQuant on llama.cpp's base: {Describe(oursOnLlama)}");
        output.WriteLine($"KQuant on its base: {Describe(oursOnOurs)}");
        AssertAgree(llamaOnLlama, oursOnLlama);
        AssertAgree(llamaOnOurs, oursOnOurs);
        AssertAgree(llamaOnLlama, oursOnOurs);
    }

    [Fact]
    public void ATruncatedOrForeignFileIsRefusedWithItsName()
    {
        var foreign = Path.Combine(_dir, "foreign.bin");
        File.WriteAllBytes(foreign, "GGUF and more bytes"u8.ToArray());
        var e = Assert.Throws<InvalidDataException>(() => LogitsFileReader.Open(foreign).Dispose());
        Assert.Contains("foreign.bin", e.Message);
        Assert.Contains("_logits_", e.Message);

        var truncated = Path.Combine(_dir, "truncated.logits");
        using (var stream = File.Create(truncated))
        using (var writer = new LogitsFileWriter(stream, 8, 5, 2, new int[16]))
        {
            writer.WriteChunk(new ushort[LogitsFile.RowsPerChunk(8) * LogitsFile.RowLength(5)]);
        }
        e = Assert.Throws<InvalidDataException>(() => LogitsFileReader.Open(truncated).Dispose());
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void RowLayoutIsLlamaCpps()
    {
        // n_vocab rounded up to even, plus two floats; n_ctx − 1 − n_ctx/2 rows per chunk.
        Assert.Equal(8192 + 4, LogitsFile.RowLength(8192));
        Assert.Equal(513 + 1 + 4, LogitsFile.RowLength(513));
        Assert.Equal(255, LogitsFile.RowsPerChunk(512));
        Assert.Equal(127, LogitsFile.RowsPerChunk(256));
    }

    private KlDivergenceStatistics OurKlDivergence(string model, string baseFile)
    {
        using var file = GgufFile.Open(model);
        var tokenizer = Tokenizer.FromGguf(file);
        using var reader = LogitsFileReader.Open(baseFile);
        return KlDivergence.Run(LlamaModel.Load(file), reader, new KlDivergenceOptions { Threads = 2, Bos = tokenizer.AddBos ? tokenizer.Bos : null });
    }

    /// <summary>Same header and tokens; log-probabilities within the quantization step of the row plus the two
    /// engines' logit differences.</summary>
    private void CompareFiles(string ours, string theirs)
    {
        var a = File.ReadAllBytes(ours);
        var b = File.ReadAllBytes(theirs);
        Assert.Equal(b.Length, a.Length);
        using var ra = LogitsFileReader.Open(ours);
        using var rb = LogitsFileReader.Open(theirs);
        Assert.Equal((rb.ContextSize, rb.Vocabulary, rb.Chunks), (ra.ContextSize, ra.Vocabulary, ra.Chunks));
        Assert.Equal(rb.Tokens, ra.Tokens);
        var rowLength = LogitsFile.RowLength(ra.Vocabulary);
        var rows = new ushort[LogitsFile.RowsPerChunk(ra.ContextSize) * rowLength];
        var other = new ushort[rows.Length];
        double worst = 0;
        for (var c = 0; c < ra.Chunks; c++)
        {
            ra.ReadChunk(rows);
            rb.ReadChunk(other);
            for (var r = 0; r < rows.Length / rowLength; r++)
            {
                var x = rows.AsSpan(r * rowLength, rowLength);
                var y = other.AsSpan(r * rowLength, rowLength);
                var hx = MemoryMarshal.Cast<ushort, float>(x[..4]);
                var hy = MemoryMarshal.Cast<ushort, float>(y[..4]);
                for (var i = 0; i < ra.Vocabulary; i++)
                {
                    if (x[4 + i] == 0 || y[4 + i] == 0) continue; // below the 16-nat floor on one side
                    worst = Math.Max(worst, Math.Abs(hx[0] * x[4 + i] + hx[1] - (hy[0] * y[4 + i] + hy[1])));
                }
            }
        }
        output.WriteLine($"base files: largest log-probability difference {worst:g3}");
        Assert.True(worst < 1e-2, $"log-probabilities in the two base files differ by up to {worst}");
    }

    private void Report(string label, LlamaReference.KlRun r) =>
        output.WriteLine($"{label}: PPL(Q) {r.PplQ:F4}, mean KLD {r.MeanKld:F6} ± {r.KldUncertainty:F6}, median {r.MedianKld:F6}, 99% {r.Kld99:F6}, " +
            $"max {r.MaxKld:F6}, RMS Δp {100 * r.RmsDeltaP:F3}%, same top p {100 * r.SameTopP:F3} ± {100 * r.SameTopUncertainty:F3}%, n {r.Count}");

    private static string Describe(KlDivergenceStatistics s) =>
        $"PPL(Q) {s.PerplexityQ.Value:F4}, mean KLD {s.MeanKld.Value:F6} ± {s.MeanKld.Uncertainty:F6}, median {KlDivergenceStatistics.Median(s.KldValues!):F6}, " +
        $"99% {KlDivergenceStatistics.Percentile(s.KldValues!, 0.99f):F6}, max {s.KldValues![^1]:F6}, RMS Δp {100 * s.RmsDeltaP.Value:F3}%, " +
        $"same top p {100 * s.SameTopP.Value:F3} ± {100 * s.SameTopP.Uncertainty:F3}%, n {s.Count}";

    /// <summary>Within 0.5%: the perplexities, mean KLD, median KLD, RMS Δp and same-top-p (whose 0.5% is of the
    /// percentage itself). The tails (99th percentile, maximum) come from a handful of tokens and are reported only.</summary>
    private static void AssertAgree(LlamaReference.KlRun expected, KlDivergenceStatistics actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        Near(expected.PplQ, actual.PerplexityQ.Value, "PPL(Q)");
        Near(expected.PplBase, actual.PerplexityBase.Value, "PPL(base)");
        Near(expected.PplRatio, actual.PerplexityRatio.Value, "PPL ratio");
        Near(expected.MeanKld, actual.MeanKld.Value, "mean KLD");
        Near(expected.KldUncertainty, actual.MeanKld.Uncertainty, "KLD uncertainty");
        Near(expected.MedianKld, KlDivergenceStatistics.Median(actual.KldValues!), "median KLD");
        Near(expected.RmsDeltaP, actual.RmsDeltaP.Value, "RMS Δp");
        Near(expected.SameTopP, actual.SameTopP.Value, "same top p");
    }

    private static void Near(double expected, double actual, string what) =>
        Assert.True(Math.Abs(actual - expected) <= 5e-3 * Math.Abs(expected), $"{what}: KQuant {actual}, llama.cpp {expected} (more than 0.5% apart)");
}
