using System.Globalization;
using KQuant.Cli;
using KQuant.Evaluation;
using KQuant.Gguf;
using KQuant.Model;
using KQuant.Model.Tokenizers;
using KQuant.Tests.Gguf;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Cli;

/// <summary><c>kquant perplexity</c> on the bundled sample model, with the bundled text excerpt.</summary>
public sealed class PerplexityCommandTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir();

    private static string Text => TestPaths.SampleText;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void PrintsTheRunningPerplexityAndTheFinalEstimateAsLlamaPerplexityDoes()
    {
        var r = CliRunner.Run("perplexity", "-m", GgufTestFiles.Sample, "-f", Text, "-c", "128", "--chunks", "3", "-t", "2");
        Assert.Equal(ExitCodes.Success, r.ExitCode);

        using var file = GgufFile.Open(GgufTestFiles.Sample);
        var tokenizer = Tokenizer.FromGguf(file);
        var expected = Perplexity.Run(LlamaModel.Load(file), tokenizer.Encode(File.ReadAllText(Text)),
            new PerplexityOptions { ContextSize = 128, Chunks = 3, Threads = 1, Bos = tokenizer.Bos });
        var running = string.Concat(expected.RunningPerplexity.Select((p, i) => $"[{i + 1}]{p.ToString("F4", CultureInfo.InvariantCulture)},"));
        Assert.Contains(running + "\n", r.Out);
        Assert.Contains($"Final estimate: PPL = {expected.Value.ToString("F4", CultureInfo.InvariantCulture)} +/- {expected.Uncertainty.ToString("F5", CultureInfo.InvariantCulture)}", r.Out);
    }

    [Fact]
    public void AModelAgainstItsOwnLogitsHasNoDivergence()
    {
        var logits = Path.Combine(_dir, "base.logits");
        var written = CliRunner.Run("perplexity", "-m", GgufTestFiles.Sample, "-f", Text, "-c", "128", "--chunks", "2", "--kl-divergence-base", logits);
        Assert.Equal(ExitCodes.Success, written.ExitCode);
        Assert.True(File.Exists(logits));
        Assert.Empty(Directory.GetFiles(_dir, "*.partial"));

        var r = CliRunner.Run("perplexity", "-m", GgufTestFiles.Sample, "--kl-divergence-base", logits, "--kl-divergence");
        Assert.Equal(ExitCodes.Success, r.ExitCode);
        // 16-bit log-probabilities make the per-token values ±1e-5 or so, and llama.cpp prints their mean as -0.000000 too.
        Assert.Matches(@"Mean    KLD:\s+-?0\.000000 ±", r.Out);
        Assert.Contains("Same top p: 100.000 ± 0.000 %", r.Out);
        // The base file stores log-probabilities in 16 bits: a model against itself is 1 within that rounding.
        Assert.Matches(@"Mean PPL\(Q\)/PPL\(base\)\s+:\s+(0\.9999|1\.0000)", r.Out);
    }

    [Fact]
    public void AnExistingLogitsFileIsKeptUnlessOverwriteIsGiven()
    {
        var logits = Path.Combine(_dir, "base.logits");
        File.WriteAllText(logits, "keep me");
        var r = CliRunner.Run("perplexity", "-m", GgufTestFiles.Sample, "-f", Text, "-c", "128", "--chunks", "1", "--kl-divergence-base", logits);
        Assert.Equal(ExitCodes.BadOutput, r.ExitCode);
        Assert.Contains("--overwrite", r.Error);
        Assert.Equal("keep me", File.ReadAllText(logits));

        r = CliRunner.Run("perplexity", "-m", GgufTestFiles.Sample, "-f", Text, "-c", "128", "--chunks", "1", "--kl-divergence-base", logits, "--overwrite");
        Assert.Equal(ExitCodes.Success, r.ExitCode);
        Assert.Equal(LogitsFile.Magic.ToArray(), File.ReadAllBytes(logits)[..8]);
    }

    [Fact]
    public void AnArchitectureItDoesNotRunIsNamedWithTheSupportedOnes()
    {
        var other = Path.Combine(_dir, "gpt2.gguf");
        using (var input = GgufFile.Open(GgufTestFiles.Sample))
        {
            var metadata = new GgufMetadata(input.Metadata);
            metadata.Set(GgufMetadata.ArchitectureKey, GgufValue.FromString("gpt2"));
            using var writer = new GgufWriter(other, metadata, input.Tensors);
            foreach (var t in input.Tensors) writer.CopyTensorFrom(input, t);
            writer.Commit();
        }
        var r = CliRunner.Run("perplexity", "-m", other, "-f", Text);
        Assert.Equal(ExitCodes.BadInput, r.ExitCode);
        Assert.Contains("architecture 'gpt2' is not supported", r.Error);
        Assert.Contains("llama, qwen2", r.Error);
    }

    [Fact]
    public void TooShortATextAndMissingFilesAreInputErrors()
    {
        var shortText = Path.Combine(_dir, "short.txt");
        File.WriteAllText(shortText, "Debian is a free operating system.");
        var r = CliRunner.Run("perplexity", "-m", GgufTestFiles.Sample, "-f", shortText, "-c", "128");
        Assert.Equal(ExitCodes.BadInput, r.ExitCode);
        Assert.Contains("needs at least 256", r.Error);

        r = CliRunner.Run("perplexity", "-m", Path.Combine(_dir, "absent.gguf"), "-f", shortText);
        Assert.Equal(ExitCodes.BadInput, r.ExitCode);
        r = CliRunner.Run("perplexity", "-m", GgufTestFiles.Sample);
        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        r = CliRunner.Run("perplexity", "-m", GgufTestFiles.Sample, "--kl-divergence-base", Path.Combine(_dir, "absent.logits"), "--kl-divergence");
        Assert.Equal(ExitCodes.BadInput, r.ExitCode);
    }
}
