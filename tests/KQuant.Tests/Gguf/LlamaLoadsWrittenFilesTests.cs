using System.Runtime.CompilerServices;
using KQuant.Gguf;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Gguf;

/// <summary>llama.cpp v0.5.0 itself must load what <see cref="GgufWriter"/> writes.</summary>
public sealed class LlamaLoadsWrittenFilesTests : IDisposable
{
    private const ulong SampleParameters = 2_622_720; // debdocs-tiny, per its README

    private readonly string _dir = TestPaths.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ModelParamsMatchTheHeaderLayout() => Assert.Equal(80, Unsafe.SizeOf<LlamaReference.ModelParams>());

    [SkippableFact]
    public void LoadsTheSampleRewrittenWithAConvertedTensorAndNewName()
    {
        LlamaReference.Require();
        var output = Path.Combine(_dir, "debdocs-tiny-mixed.gguf");
        using (var input = GgufFile.Open(GgufTestFiles.Sample))
            GgufConversion.RewriteWithF32Tensor(input, output, "blk.1.ffn_down.weight", "debdocs-tiny rewritten by KQuant");

        var model = LlamaReference.Load(output);
        Assert.Equal(SampleParameters, model.ParameterCount);
        Assert.Equal("debdocs-tiny rewritten by KQuant", model.Name);
        Assert.StartsWith("llama", model.Description);
    }

    [SkippableFact]
    public void LoadsARewrittenVocabFile()
    {
        LlamaReference.Require();
        var vocab = Path.Combine(TestPaths.Shared, "vocab", "ggml-vocab-llama-spm.gguf");
        Skip.IfNot(File.Exists(vocab), $"needs {vocab} (the shared test data), which is absent here");
        var output = Path.Combine(_dir, "vocab.gguf");
        using (var input = GgufFile.Open(vocab)) GgufWriter.Rewrite(input, output);
        Assert.Equal(0ul, LlamaReference.Load(output, vocabOnly: true).ParameterCount);
    }

    [SkippableFact]
    public void AFileLlamaCannotUseIsReportedWithItsLog()
    {
        LlamaReference.Require();
        var output = Path.Combine(_dir, "no-output-norm.gguf");
        using (var input = GgufFile.Open(GgufTestFiles.Sample))
        {
            var kept = input.Tensors.Where(t => t.Name != "output_norm.weight").ToArray();
            using var writer = new GgufWriter(output, input.Metadata, kept);
            foreach (var t in kept) writer.CopyTensorFrom(input, t);
            writer.Commit();
        }
        var e = Assert.Throws<InvalidOperationException>(() => LlamaReference.Load(output));
        Assert.Contains("output_norm.weight", e.Message);
    }
}
