using KQuant.Cli;
using KQuant.Conversion;
using KQuant.Gguf;
using KQuant.Quantization;
using KQuant.Recipes;
using KQuant.Tests.Cli;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Conversion;

/// <summary>Synthetic Hugging Face folders (no shared data needed): the q/k permutation, sharding, checkpoint dtypes,
/// Qwen2, quantizing straight from a folder, and the command's errors.</summary>
public sealed class HuggingFaceSourceTests : IDisposable
{
    private const int Layers = 2, Dim = 256, Heads = 4, KvHeads = 2, Ffn = 512, Vocab = 320;

    private readonly string _dir = TestPaths.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string LlamaFolder(string name, SafetensorsDtype dtype = SafetensorsDtype.F32, int shards = 1, string architecture = "LlamaForCausalLM", bool biases = false) =>
        HfFolderBuilder.Write(Path.Combine(_dir, name), HfFolderBuilder.Config(architecture, Layers, Dim, Heads, KvHeads, Ffn, Vocab),
            HfFolderBuilder.LlamaTensors(Layers, Dim, Heads, KvHeads, Ffn, Vocab, dtype, seed: 7, biases), shards, HfFolderBuilder.SentencePieceModel(Vocab));

    [Fact]
    public void PermutationInterleavesTheRotaryHalvesOfEachHead()
    {
        // LlamaModel.permute: reshape(heads, 2, rows/heads/2, ...).swapaxes(1, 2): output row (h, i, j) is input row (h, j, i).
        const int rows = 16, heads = 2;
        var expected = new List<long>();
        for (var h = 0; h < heads; h++)
            for (var i = 0; i < rows / heads / 2; i++)
                for (var j = 0; j < 2; j++)
                    expected.Add(h * (rows / heads) + j * (rows / heads / 2) + i);
        Assert.Equal(expected, Enumerable.Range(0, rows).Select(r => HuggingFaceModelSource.PermutedSourceUnit(r, rows, heads)));
    }

    [Fact]
    public void PresentsLlamaNamesShapesTypesAndPermutedRows()
    {
        var folder = LlamaFolder("llama");
        using var source = HuggingFaceModelSource.Open(folder, new HuggingFaceSourceOptions { OutputType = ConvertOutputType.F16 });
        var q = source.Tensors.Single(t => t.Name == "blk.1.attn_q.weight");
        Assert.Equal(GgmlType.F16, q.Type);
        Assert.Equal([Dim, Dim], q.Shape);
        Assert.Equal(GgmlType.F32, source.Tensors.Single(t => t.Name == "blk.0.attn_norm.weight").Type);
        Assert.Equal([Dim, 128L], source.Tensors.Single(t => t.Name == "blk.0.attn_k.weight").Shape);
        // Checkpoint order: lm_head, embed_tokens, layers (sorted by HF name), norm.
        Assert.Equal(["output.weight", "token_embd.weight", "blk.0.attn_norm.weight", "blk.0.ffn_down.weight"], source.Tensors.Take(4).Select(t => t.Name));

        // Row 1 of the k projection (head 0, pair 0, second half) comes from checkpoint row 32 (= head_dim / 2).
        using var checkpoint = SafetensorsCheckpoint.Open(folder);
        var hf = checkpoint.Find("model.layers.0.self_attn.k_proj.weight")!;
        var k = source.Tensors.Single(t => t.Name == "blk.0.attn_k.weight");
        var row = new byte[Dim * 2];
        source.ReadTensorBytes(k, Dim * 2, row);
        var expected = new byte[Dim * 2];
        KQuant.Quants.RowCodecs.Get(GgmlType.F16).Quantize(
            System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(checkpoint.GetBytes(hf, 32L * Dim * 4, Dim * 4)), expected, []);
        Assert.Equal(expected, row);

        var metadata = new GgufMetadata(source.Metadata);
        Assert.Equal("llama", metadata.GetArchitecture());
        Assert.Equal((uint)LlamaFileType.MostlyF16, metadata.GetUInt32("general.file_type"));
        Assert.Equal(64u, metadata.GetUInt32("llama.rope.dimension_count"));
        Assert.Equal(Vocab, metadata.GetArray("tokenizer.ggml.tokens")!.Count);
        Assert.Equal(1u, metadata.GetUInt32("tokenizer.ggml.bos_token_id"));
    }

    [Fact]
    public void ShardedAndSingleFileCheckpointsConvertToTheSameTensors()
    {
        var single = Convert(LlamaFolder("single"), ConvertOutputType.F32);
        var sharded = Convert(LlamaFolder("sharded", shards: 3), ConvertOutputType.F32);
        GgufComparison.AssertSameTensors(single, sharded);
    }

    [Theory]
    [InlineData(SafetensorsDtype.F16, ConvertOutputType.F32)]
    [InlineData(SafetensorsDtype.BF16, ConvertOutputType.F16)]
    [InlineData(SafetensorsDtype.F32, ConvertOutputType.BF16)]
    [InlineData(SafetensorsDtype.BF16, ConvertOutputType.Q8_0)]
    public void EveryCheckpointDtypeConvertsToEveryOutputTypeAndLlamaLoadsIt(SafetensorsDtype dtype, ConvertOutputType type)
    {
        var path = Convert(LlamaFolder($"{dtype}-{type}", dtype), type);
        using (var file = GgufFile.Open(path))
        {
            Assert.Equal(HuggingFaceModelSource.GgmlTypeOf(type), file.FindTensor("blk.0.ffn_up.weight")!.Type);
            Assert.Equal(GgmlType.F32, file.FindTensor("output_norm.weight")!.Type);
        }
        LlamaReference.Require();
        Assert.StartsWith("llama", LlamaReference.Load(path).Description);
    }

    [SkippableFact]
    public void Qwen2KeepsTheHfLayoutWithBiases()
    {
        var folder = LlamaFolder("qwen2", architecture: "Qwen2ForCausalLM", biases: true);
        var path = Convert(folder, ConvertOutputType.F32);
        using (var file = GgufFile.Open(path))
        using (var checkpoint = SafetensorsCheckpoint.Open(folder))
        {
            Assert.Equal("qwen2", file.GetArchitecture());
            Assert.Null(file.GetUInt32("qwen2.vocab_size")); // Qwen2Model does not write it
            var k = file.FindTensor("blk.0.attn_k.weight")!;
            var hf = checkpoint.Find("model.layers.0.self_attn.k_proj.weight")!;
            Assert.Equal(checkpoint.GetBytes(hf, 0, (int)hf.ByteLength).ToArray(), file.GetTensorBytes(k, 0, (int)k.ByteSize).ToArray()); // not permuted
            Assert.Equal([128L], file.FindTensor("blk.1.attn_k.bias")!.Shape);
        }
        LlamaReference.Require();
        Assert.StartsWith("qwen2", LlamaReference.Load(path).Description);
    }

    [Theory]
    [InlineData(SafetensorsDtype.F32, "Q4_K_M")]
    [InlineData(SafetensorsDtype.BF16, "Q6_K")]
    [InlineData(SafetensorsDtype.F16, "Q8_0")]
    public void QuantizingAFolderEqualsConvertingThenQuantizing(SafetensorsDtype dtype, string recipeName)
    {
        var folder = LlamaFolder($"quantize-{dtype}", dtype);
        var recipe = QuantRecipe.All.Single(r => r.Name == recipeName);
        var lossless = dtype switch { SafetensorsDtype.F16 => ConvertOutputType.F16, SafetensorsDtype.BF16 => ConvertOutputType.BF16, _ => ConvertOutputType.F32 };
        var converted = Convert(folder, lossless);
        var viaFile = Path.Combine(_dir, $"via-file-{dtype}.gguf");
        var direct = Path.Combine(_dir, $"direct-{dtype}.gguf");
        ModelQuantizer.Run(new QuantizeRequest(converted, viaFile, recipe) { Threads = 2 });
        ModelQuantizer.Run(new QuantizeRequest(folder, direct, recipe) { Threads = 2 });
        Assert.Equal(File.ReadAllBytes(viaFile), File.ReadAllBytes(direct));
    }

    [SkippableFact]
    public void QuantizingASharedFolderEqualsConvertingThenQuantizing()
    {
        var folder = TestPaths.RequireShared("models/debdocs-tiny/hf");
        var recipe = QuantRecipe.All.Single(r => r.Name == "Q4_K_M");
        var converted = Path.Combine(_dir, "tiny-F32.gguf");
        ModelConverter.Run(new ConvertRequest(folder) { OutputPath = converted, OutputType = ConvertOutputType.F32 });
        var viaFile = Path.Combine(_dir, "via-file.gguf");
        ModelQuantizer.Run(new QuantizeRequest(converted, viaFile, recipe) { Threads = 2 });
        var direct = Path.Combine(_dir, "direct.gguf");
        var r = CliRunner.Run("quantize", folder, direct, "Q4_K_M", "2");
        Assert.True(r.ExitCode == ExitCodes.Success, r.Error);
        Assert.Equal(File.ReadAllBytes(viaFile), File.ReadAllBytes(direct));
    }

    [Fact]
    public void AnUnsupportedDtypeNamesFileTensorAndDtype()
    {
        var folder = LlamaFolder("int");
        var tensors = HfFolderBuilder.LlamaTensors(Layers, Dim, Heads, KvHeads, Ffn, Vocab, SafetensorsDtype.F32, seed: 1);
        // Declare model.norm.weight (256 F32 = 1024 bytes) as 128 I64, the same byte count.
        var image = HfFolderBuilder.Safetensors(tensors);
        var text = System.Text.Encoding.Latin1.GetString(image);
        var patched = text.Replace("\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[256]", "\"model.norm.weight\":{\"dtype\":\"I64\",\"shape\":[128]");
        Assert.NotEqual(text, patched);
        File.WriteAllBytes(Path.Combine(folder, "model.safetensors"), System.Text.Encoding.Latin1.GetBytes(patched));
        var r = CliRunner.Run("convert", folder, "-o", Path.Combine(_dir, "int.gguf"));
        Assert.Equal(ExitCodes.BadInput, r.ExitCode);
        Assert.Contains("model.safetensors: tensor 'model.norm.weight' is I64; KQuant converts F32, F16, BF16 tensors only", r.Error);
    }

    [Fact]
    public void UnsupportedArchitectureOrMissingFilesAreOneMessageWithExitCode3()
    {
        var folder = LlamaFolder("gemma");
        File.WriteAllText(Path.Combine(folder, "config.json"), File.ReadAllText(Path.Combine(folder, "config.json")).Replace("LlamaForCausalLM", "GemmaForCausalLM"));
        var r = CliRunner.Run("convert", folder);
        Assert.Equal(ExitCodes.BadInput, r.ExitCode);
        Assert.Contains("architecture GemmaForCausalLM is not supported; kquant convert supports LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM", r.Error);

        File.Delete(Path.Combine(folder, "config.json"));
        r = CliRunner.Run("convert", folder);
        Assert.Equal(ExitCodes.BadInput, r.ExitCode);
        Assert.Contains("has no config.json", r.Error);

        var noTokenizer = LlamaFolder("no-tokenizer");
        File.Delete(Path.Combine(noTokenizer, "tokenizer.model"));
        r = CliRunner.Run("convert", noTokenizer);
        Assert.Equal(ExitCodes.BadInput, r.ExitCode);
        Assert.Contains("has no tokenizer (tokenizer.model or tokenizer.json); pass --vocab-from", r.Error);

        r = CliRunner.Run("convert", Path.Combine(_dir, "absent"));
        Assert.Equal(ExitCodes.BadInput, r.ExitCode);
        Assert.Contains("model folder not found", r.Error);
        Assert.Single(r.Error.Trim().Split('\n'));
    }

    [Fact]
    public void TheDefaultOutputIsNamedAfterTheFolderAndType()
    {
        var folder = LlamaFolder("My-Model-v0.1");
        var r = CliRunner.Run("convert", folder, "--outtype", "q8_0");
        Assert.True(r.ExitCode == ExitCodes.Success, r.Error);
        var expected = Path.Combine(_dir, "My-Model-v0.1-Q8_0.gguf");
        Assert.Contains($"wrote {expected}", r.Out);
        using var file = GgufFile.Open(expected);
        Assert.Equal("My Model v0.1", file.GetString("general.name"));
        Assert.Equal("My-Model", file.GetString("general.basename"));
        Assert.Equal("v0.1", file.GetString("general.version"));
        Assert.Equal(ExitCodes.BadOutput, CliRunner.Run("convert", folder, "--outtype", "q8_0").ExitCode); // exists: refused
        Assert.Equal(ExitCodes.Usage, CliRunner.Run("convert", folder, "--outtype", "q4_0").ExitCode);
    }

    private string Convert(string folder, ConvertOutputType type)
    {
        var path = Path.Combine(_dir, $"{Path.GetFileName(folder)}-{type}-{Guid.NewGuid():N}.gguf");
        ModelConverter.Run(new ConvertRequest(folder) { OutputPath = path, OutputType = type });
        return path;
    }
}
