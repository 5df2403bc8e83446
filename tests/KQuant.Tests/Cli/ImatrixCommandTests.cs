using KQuant.Cli;
using KQuant.Gguf;
using KQuant.Importance;
using KQuant.Tests.Gguf;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Cli;

/// <summary><c>kquant imatrix</c> on the bundled sample model and text excerpt: what it writes, and its errors.</summary>
public sealed class ImatrixCommandTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir();

    private static string Text => TestPaths.SampleText;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void WritesEveryLayerMatrixWithItsTokenCountInBothFormats()
    {
        var gguf = Path.Combine(_dir, "sample.imatrix.gguf");
        var r = CliRunner.Run("imatrix", "-m", GgufTestFiles.Sample, "-f", Text, "-o", gguf, "-c", "128", "--chunks", "3", "-t", "2");
        Assert.True(r.ExitCode == ExitCodes.Success, r.Error);
        Assert.Contains("Final estimate: PPL = ", r.Out);
        Assert.Contains("3 chunks of 128 written to", r.Out);
        Assert.Contains("imatrix of debdocs-tiny-F16.gguf: done", r.Error); // progress goes to stderr in plain mode

        var matrix = ImportanceMatrix.Load(gguf);
        using var model = GgufFile.Open(GgufTestFiles.Sample);
        // Every 2-D layer weight (not the embedding, not the output head without --process-output), 384 tokens each.
        var expected = model.Tensors.Where(t => t.Name.StartsWith("blk.", StringComparison.Ordinal) && t.Dimensions == 2).Select(t => t.Name).Order(StringComparer.Ordinal);
        Assert.Equal(expected, matrix.Entries.Keys.Order(StringComparer.Ordinal));
        Assert.All(matrix.Entries.Values, e => Assert.Equal([384L], e.Counts));
        Assert.All(matrix.Entries, e => Assert.Equal(model.Tensors.Single(t => t.Name == e.Key).RowLength, e.Value.Sums.Length));
        Assert.All(matrix.Entries.Values, e => Assert.All(e.Sums, v => Assert.True(v > 0)));
        Assert.Equal(3, matrix.ChunkCount);
        Assert.Equal(128, matrix.ChunkSize);
        Assert.Equal([Text], matrix.Datasets);

        var dat = Path.Combine(_dir, "sample.imatrix.dat");
        r = CliRunner.Run("imatrix", "-m", GgufTestFiles.Sample, "-f", Text, "-o", dat, "-c", "128", "--chunks", "3", "--output-format", "dat", "--process-output", "--no-ppl");
        Assert.True(r.ExitCode == ExitCodes.Success, r.Error);
        Assert.DoesNotContain("Final estimate", r.Out);
        var legacy = ImportanceMatrix.Load(dat);
        Assert.True(legacy.IsLegacy);
        Assert.Equal(expected.Append("output.weight").Order(StringComparer.Ordinal), legacy.Entries.Keys.Order(StringComparer.Ordinal));
        // The same sums, stored as mean · ncall (ncall = 384 / 128 = 3): the weights llama-quantize derives agree.
        foreach (var (name, e) in matrix.Entries)
        {
            Assert.Equal([3L], legacy.Entries[name].Counts);
            var fromGguf = matrix.WeightsFor(name)!;
            var fromDat = legacy.WeightsFor(name)!;
            for (var i = 0; i < fromGguf.Length; i++) Assert.Equal(fromGguf[i], fromDat[i], fromGguf[i] * 1e-6f);
        }
    }

    [Fact]
    public void AnExistingOutputIsKeptUnlessOverwriteIsGiven()
    {
        var output = Path.Combine(_dir, "imatrix.gguf");
        File.WriteAllText(output, "keep me");
        var r = CliRunner.Run("imatrix", "-m", GgufTestFiles.Sample, "-f", Text, "-o", output, "-c", "128", "--chunks", "1");
        Assert.Equal(ExitCodes.BadOutput, r.ExitCode);
        Assert.Contains("--overwrite", r.Error);
        Assert.Equal("keep me", File.ReadAllText(output));

        r = CliRunner.Run("imatrix", "-m", GgufTestFiles.Sample, "-f", Text, "-o", output, "-c", "128", "--chunks", "1", "--overwrite");
        Assert.Equal(ExitCodes.Success, r.ExitCode);
        Assert.Equal(1, ImportanceMatrix.Load(output).ChunkCount);
        Assert.Single(Directory.GetFiles(_dir)); // no temporary file left beside it
    }

    [Fact]
    public void MissingInputsAndTooShortATextAreInputErrors()
    {
        var output = Path.Combine(_dir, "imatrix.gguf");
        var r = CliRunner.Run("imatrix", "-m", Path.Combine(_dir, "absent.gguf"), "-f", Text, "-o", output);
        Assert.Equal(ExitCodes.BadInput, r.ExitCode);
        Assert.Contains("model not found", r.Error);

        r = CliRunner.Run("imatrix", "-m", GgufTestFiles.Sample, "-f", Path.Combine(_dir, "absent.txt"), "-o", output);
        Assert.Equal(ExitCodes.BadInput, r.ExitCode);
        Assert.Contains("text not found", r.Error);

        var shortText = Path.Combine(_dir, "short.txt");
        File.WriteAllText(shortText, "Debian is a free operating system.\n");
        r = CliRunner.Run("imatrix", "-m", GgufTestFiles.Sample, "-f", shortText, "-o", output, "-c", "128");
        Assert.Equal(ExitCodes.BadInput, r.ExitCode);
        Assert.Contains("needs at least 256", r.Error);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void BadOptionsAreUsageErrors()
    {
        var output = Path.Combine(_dir, "imatrix.gguf");
        Assert.Equal(ExitCodes.Usage, CliRunner.Run("imatrix", "-m", GgufTestFiles.Sample, "-o", output).ExitCode); // no -f
        Assert.Equal(ExitCodes.Usage, CliRunner.Run("imatrix", "-m", GgufTestFiles.Sample, "-f", Text, "-o", output, "--output-format", "json").ExitCode);
        Assert.Equal(ExitCodes.Usage, CliRunner.Run("imatrix", "-m", GgufTestFiles.Sample, "-f", Text, "-o", output, "-c", "2").ExitCode);
        Assert.Equal(ExitCodes.Usage, CliRunner.Run("imatrix", "-m", GgufTestFiles.Sample, "-f", Text, "-o", output, "--chunks", "0").ExitCode);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void AnArchitectureItDoesNotRunGetsOneMessageNamingIt()
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
        var output = Path.Combine(_dir, "imatrix.gguf");
        var r = CliRunner.Run("imatrix", "-m", other, "-f", Text, "-o", output);
        Assert.Equal(ExitCodes.BadInput, r.ExitCode);
        Assert.Single(r.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("architecture 'gpt2' is not supported", r.Error);
        Assert.Contains("llama, qwen2", r.Error);
        Assert.False(File.Exists(output));
    }
}
