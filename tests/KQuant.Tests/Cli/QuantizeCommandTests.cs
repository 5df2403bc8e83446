using KQuant.Cli;
using KQuant.Gguf;
using KQuant.Quantization;
using KQuant.Recipes;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Cli;

public class QuantizeCommandTests
{
    private static string Sample => Path.Combine(TestPaths.Samples, "debdocs-tiny-F16.gguf");

    [Fact]
    public void WritesTheFileAndASummary()
    {
        var dir = TestPaths.NewTempDir();
        var output = Path.Combine(dir, "out.gguf");
        var r = CliRunner.Run("quantize", Sample, output, "q4_k_m", "2");
        Assert.Equal(ExitCodes.Success, r.ExitCode);
        Assert.Contains("Q4_K_M: 5.05 MiB -> ", r.Out);
        using var f = GgufFile.Open(output);
        Assert.Equal((uint)LlamaFileType.MostlyQ4_K_M, f.GetUInt32("general.file_type"));
        Assert.Equal(new[] { output }, Directory.GetFiles(dir)); // no temporary file left beside it
    }

    [Fact]
    public void DryRunPredictsTheExactSizeAndWritesNothing()
    {
        var dir = TestPaths.NewTempDir();
        var output = Path.Combine(dir, "out.gguf");
        var dry = CliRunner.Run("quantize", "--dry-run", Sample, output, "Q3_K_M");
        Assert.Equal(ExitCodes.Success, dry.ExitCode);
        Assert.Empty(Directory.GetFiles(dir));
        Assert.Contains("blk.0.attn_v.weight", dry.Out); // the per-tensor plan
        var real = CliRunner.Run("quantize", Sample, output, "Q3_K_M");
        Assert.Equal(ExitCodes.Success, real.ExitCode);
        Assert.Contains($"({new FileInfo(output).Length:N0} bytes)", dry.Out);
    }

    [Fact]
    public void DefaultOutputNameReplacesThePrecisionTag()
    {
        Assert.Equal(Path.Combine(TestPaths.Samples, "debdocs-tiny-IQ4_XS.gguf"),
            KQuant.Cli.Commands.QuantizeCommand.DefaultOutputPath(Sample, QuantRecipe.All.Single(r => r.Name == "IQ4_XS")));
    }

    [Fact]
    public void UnknownTypeListsTheValidOnes()
    {
        var r = CliRunner.Run("quantize", Sample, Path.Combine(TestPaths.NewTempDir(), "o.gguf"), "Q4_K_X");
        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        Assert.Contains("unknown quantization type 'Q4_K_X'", r.Error);
        foreach (var name in new[] { "Q2_K_S", "Q4_K_M", "IQ4_XS", "BF16" }) Assert.Contains(name, r.Error);
    }

    [Fact]
    public void MissingInputIsOneClearMessage()
    {
        var r = CliRunner.Run("quantize", "/nonexistent/in.gguf", Path.Combine(TestPaths.NewTempDir(), "o.gguf"), "Q8_0");
        Assert.Equal(ExitCodes.BadInput, r.ExitCode);
        Assert.Single(r.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("/nonexistent/in.gguf", r.Error);
    }

    [Fact]
    public void RoundingOptimalIsTheDefaultAndWritesTheSameFormatWithOtherBytes()
    {
        var dir = TestPaths.NewTempDir();
        var reference = Path.Combine(dir, "reference.gguf");
        var optimal = Path.Combine(dir, "optimal.gguf");
        var byDefault = Path.Combine(dir, "default.gguf");
        var r = CliRunner.Run("quantize", "--rounding", "reference", Sample, reference, "Q4_0");
        Assert.Equal(ExitCodes.Success, r.ExitCode);
        Assert.Contains("reference rounding", r.Out);
        Assert.Equal(ExitCodes.Success, CliRunner.Run("quantize", "--rounding", "optimal", Sample, optimal, "Q4_0").ExitCode);
        r = CliRunner.Run("quantize", Sample, byDefault, "Q4_0");
        Assert.Equal(ExitCodes.Success, r.ExitCode);
        Assert.Contains("optimal rounding", r.Out);
        Assert.Equal(new FileInfo(reference).Length, new FileInfo(optimal).Length);
        Assert.NotEqual(File.ReadAllBytes(reference), File.ReadAllBytes(optimal));
        Assert.Equal(File.ReadAllBytes(optimal), File.ReadAllBytes(byDefault));
        var wrong = CliRunner.Run("quantize", "--rounding", "best", Sample, Path.Combine(dir, "x.gguf"), "Q4_0");
        Assert.NotEqual(ExitCodes.Success, wrong.ExitCode);
        Assert.Contains("reference or optimal", wrong.Error);
    }

    [Fact]
    public void ExistingOutputIsRefusedUnlessOverwriteIsGiven()
    {
        var output = Path.Combine(TestPaths.NewTempDir(), "o.gguf");
        File.WriteAllText(output, "precious");
        var r = CliRunner.Run("quantize", Sample, output, "Q8_0");
        Assert.Equal(ExitCodes.BadOutput, r.ExitCode);
        Assert.Contains("--overwrite", r.Error);
        Assert.Equal("precious", File.ReadAllText(output));
        Assert.Equal(ExitCodes.Success, CliRunner.Run("quantize", "--overwrite", Sample, output, "Q8_0").ExitCode);
    }

    [Fact]
    public void OutputOntoTheInputIsRefused()
    {
        var dir = TestPaths.NewTempDir();
        var input = Path.Combine(dir, "model.gguf");
        File.Copy(Sample, input);
        var r = CliRunner.Run("quantize", "--overwrite", input, input, "Q8_0");
        Assert.Equal(ExitCodes.BadOutput, r.ExitCode);
        Assert.Equal(File.ReadAllBytes(Sample), File.ReadAllBytes(input));
    }

    [Fact]
    public void MalformedTensorTypeOptionIsAUsageError()
    {
        var output = Path.Combine(TestPaths.NewTempDir(), "o.gguf");
        Assert.Equal(ExitCodes.Usage, CliRunner.Run("quantize", "--tensor-type", "attn_v", Sample, output, "Q4_K_M").ExitCode);
        Assert.Equal(ExitCodes.Usage, CliRunner.Run("quantize", "--tensor-type", "attn_v=q9_Z", Sample, output, "Q4_K_M").ExitCode);
        Assert.Equal(ExitCodes.Usage, CliRunner.Run("quantize", "--override-kv", "general.name=text:x", Sample, output, "Q4_K_M").ExitCode);
    }

    [Fact]
    public void CancellationLeavesNoPartialOutput()
    {
        var dir = TestPaths.NewTempDir();
        var output = Path.Combine(dir, "o.gguf");
        using var cts = new CancellationTokenSource();
        var progress = new CancelAfter(cts, tensors: 5);
        Assert.ThrowsAny<OperationCanceledException>(() =>
            ModelQuantizer.Run(new QuantizeRequest(Sample, output, QuantRecipe.All.Single(r => r.Name == "Q6_K")), progress, cts.Token));
        Assert.Empty(Directory.GetFiles(dir));
    }

    [Fact]
    public void NonFiniteWeightsAreRefusedNamingTensorAndRowAndLeaveNothing()
    {
        var dir = TestPaths.NewTempDir();
        var input = Path.Combine(dir, "nan.gguf");
        using (var source = GgufFile.Open(Sample))
        using (var writer = new GgufWriter(input, source.Metadata, source.Tensors))
        {
            foreach (var t in source.Tensors)
            {
                var bytes = source.GetTensorBytes(t, 0, (int)t.ByteSize).ToArray();
                if (t.Name == "blk.1.ffn_up.weight") BitConverter.TryWriteBytes(bytes.AsSpan((int)(7 * t.RowByteSize + 10)), (ushort)0x7e00); // F16 NaN in row 7
                writer.WriteTensorData(bytes);
            }
            writer.Commit();
        }
        var output = Path.Combine(dir, "o.gguf");
        var r = CliRunner.Run("quantize", input, output, "Q4_K_M");
        Assert.Equal(ExitCodes.BadInput, r.ExitCode);
        Assert.Contains("blk.1.ffn_up.weight, row 7", r.Error);
        Assert.False(File.Exists(output));
        Assert.Single(Directory.GetFiles(dir));
    }

    private sealed class CancelAfter(CancellationTokenSource cts, int tensors) : IProgress<QuantizeProgress>
    {
        public void Report(QuantizeProgress value)
        {
            if (value.TensorIndex >= tensors) cts.Cancel();
        }
    }
}
