using KQuant.Cli;
using KQuant.Tests.Cli;
using KQuant.Tests.Gguf;
using KQuant.Tests.Reference;
using Xunit.Abstractions;

namespace KQuant.Tests.Importance;

/// <summary>llama-quantize (the real tool, see <see cref="ImatrixAgreementTests"/> for how it is built) given KQuant's
/// importance matrix writes the same bytes as given llama-imatrix's, for the same model, text and settings.</summary>
public sealed class ImatrixQuantizeTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [SkippableTheory]
    [InlineData("gguf", "Q4_K_M")]
    [InlineData("gguf", "IQ4_XS")]
    [InlineData("dat", "Q4_K_M")]
    [InlineData("dat", "IQ4_XS")]
    public void LlamaQuantizeWritesTheSameBytesWithOurMatrixAsWithItsOwn(string format, string type)
    {
        var model = GgufTestFiles.Sample;
        var text = TestPaths.SampleText;
        var theirs = Path.Combine(_dir, $"theirs.{format}");
        var ours = Path.Combine(_dir, $"ours.{format}");
        string[] common = ["-m", model, "-f", text, "-c", "256", "--chunks", "12", "-t", "1", "--output-format", format];
        LlamaTools.Run("llama-imatrix", [.. common, "-o", theirs]);
        var r = CliRunner.Run(["imatrix", .. common, "-o", ours]);
        Assert.True(r.ExitCode == ExitCodes.Success, r.Error);

        // llama-quantize records the imatrix's path in the output's metadata: give both runs the same one.
        var imatrix = Path.Combine(_dir, $"imatrix.{format}");
        byte[] Quantize(string source, string name)
        {
            File.Copy(source, imatrix, overwrite: true);
            var quantized = Path.Combine(_dir, name);
            LlamaTools.Run("llama-quantize", "--imatrix", imatrix, model, quantized, type, "1");
            return File.ReadAllBytes(quantized);
        }
        var withTheirs = Quantize(theirs, "with-theirs.gguf");
        var withOurs = Quantize(ours, "with-ours.gguf");
        var unweighted = Path.Combine(_dir, "plain.gguf");
        LlamaTools.Run("llama-quantize", model, unweighted, type, "1");
        output.WriteLine($"{type} from {format}: {withOurs.Length} bytes; identical {withOurs.AsSpan().SequenceEqual(withTheirs)}; " +
            $"differs from the unweighted quantization: {!withOurs.AsSpan().SequenceEqual(File.ReadAllBytes(unweighted))}");
        Assert.True(withOurs.AsSpan().SequenceEqual(withTheirs), $"{type} with our {format} imatrix differs from llama-imatrix's");
        // The matrix matters: without it the bytes differ (so the comparison above is not vacuous).
        Assert.False(withOurs.AsSpan().SequenceEqual(File.ReadAllBytes(unweighted)));
    }
}
