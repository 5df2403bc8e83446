using KQuant.Gguf;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Gguf;

public class GgufFileTests
{
    [Fact]
    public void ReadsTheSampleHeaderAndDirectory()
    {
        using var file = GgufFile.Open(GgufTestFiles.Sample);
        Assert.Equal(3u, file.Version);
        Assert.Equal(32u, file.Alignment);
        Assert.Equal(new FileInfo(GgufTestFiles.Sample).Length, file.FileLength);
        Assert.Equal(45888, file.DataOffset); // directory ends at 45868, padded to 32
        Assert.Equal(28, file.Metadata.Count);
        Assert.Equal(21, file.Tensors.Count);
        Assert.Equal("general.architecture", file.Metadata[0].Key);
        Assert.Equal("tokenizer.ggml.add_space_prefix", file.Metadata[^1].Key);

        var embd = file.FindTensor("token_embd.weight")!;
        Assert.Same(file.Tensors[0], embd);
        Assert.Equal(GgmlType.F16, embd.Type);
        Assert.Equal([256L, 2048L], embd.Shape);
        Assert.Equal(0, embd.Offset);
        Assert.Equal(256 * 2048, embd.ElementCount);
        Assert.Equal(256 * 2048 * 2, embd.ByteSize);
        Assert.Equal(256, embd.RowLength);
        Assert.Equal(2048, embd.RowCount);
        Assert.Equal(512, embd.RowByteSize);

        var norm = file.FindTensor("blk.0.attn_norm.weight")!;
        Assert.Equal(GgmlType.F32, norm.Type);
        Assert.Equal([256L], norm.Shape);
        Assert.Equal(1048576, norm.Offset);
        Assert.Equal(1, norm.RowCount);
        Assert.Null(file.FindTensor("no.such.tensor"));
        Assert.Equal(2_622_720, file.Tensors.Sum(t => t.ElementCount)); // the parameter count in the model's README
    }

    [Fact]
    public void ReadsTheSampleMetadata()
    {
        using var file = GgufFile.Open(GgufTestFiles.Sample);
        Assert.Equal("debdocs-tiny", file.GetString("general.name"));
        Assert.Equal("llama", file.GetArchitecture());
        Assert.Equal("llama.block_count", file.ArchitectureKey("block_count"));
        Assert.Equal(2u, file.GetUInt32(file.ArchitectureKey("block_count")));
        Assert.Equal(256L, file.GetInt64("llama.embedding_length"));
        Assert.Equal(1e-5f, file.GetSingle("llama.attention.layer_norm_rms_epsilon"));
        Assert.Equal(10000.0, file.GetDouble("llama.rope.freq_base"));
        Assert.True(file.GetBool("tokenizer.ggml.add_bos_token"));
        Assert.False(file.GetBool("tokenizer.ggml.add_eos_token"));
        Assert.Null(file.GetString("no.such.key"));
        Assert.False(file.TryGetValue("no.such.key", out _));

        var tokens = file.GetArray("tokenizer.ggml.tokens")!;
        Assert.Equal(GgufValueType.String, tokens.ElementType);
        Assert.Equal(2048, tokens.Count);
        Assert.Equal(["<unk>", "<s>", "</s>"], tokens.AsStrings().Take(3));
        Assert.Equal(2048, file.GetArray("tokenizer.ggml.scores")!.AsSpan<float>().Length);
        Assert.Equal([2, 3, 3], file.GetArray("tokenizer.ggml.token_type")!.AsSpan<int>()[..3].ToArray());

        var e = Assert.Throws<InvalidOperationException>(() => file.GetUInt32("general.name"));
        Assert.Contains("'general.name'", e.Message);
        Assert.StartsWith("[str × 2048: \"<unk>\", \"<s>\", \"</s>\"", tokens.ToString());
    }

    [Fact]
    public void TensorBytesComeFromTheMapping()
    {
        var raw = File.ReadAllBytes(GgufTestFiles.Sample);
        using var file = GgufFile.Open(GgufTestFiles.Sample);
        var q = file.FindTensor("blk.1.attn_q.weight")!;
        var start = (int)(file.DataOffset + q.Offset);

        Assert.True(raw.AsSpan(start, (int)q.ByteSize).SequenceEqual(file.GetTensorBytes(q, 0, (int)q.ByteSize)));
        Assert.True(raw.AsSpan(start + 100, 7).SequenceEqual(file.GetTensorBytes(q, 100, 7)));
        Assert.True(raw.AsSpan(start + 3 * 512, 5 * 512).SequenceEqual(file.GetRows(q, 3, 5)));
        Assert.Equal(0, file.GetRows(q, q.RowCount, 0).Length);

        using var copy = new MemoryStream();
        file.CopyTensorTo(q, copy);
        Assert.Equal(raw.AsSpan(start, (int)q.ByteSize).ToArray(), copy.ToArray());
    }

    [Fact]
    public void DataAccessIsBoundsChecked()
    {
        using var file = GgufFile.Open(GgufTestFiles.Sample);
        var t = file.FindTensor("output_norm.weight")!;
        Assert.Throws<ArgumentOutOfRangeException>(() => file.GetTensorBytes(t, 0, (int)t.ByteSize + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => file.GetTensorBytes(t, -1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => file.GetTensorBytes(t, t.ByteSize, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => file.GetRows(t, 1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => file.GetRows(t, 0, -1));

        // A tensor description that did not come from this file must not address its memory.
        var lookalike = new GgufTensorInfo(t.Name, t.Type, t.Shape);
        Assert.Throws<ArgumentException>(() => file.GetTensorBytes(lookalike, 0, 1));
        using var other = GgufFile.Open(GgufTestFiles.Sample);
        Assert.Throws<ArgumentException>(() => file.GetTensorBytes(other.Tensors[0], 0, 1));

        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => file.GetTensorBytes(t, 0, 1));
        file.Dispose(); // twice is fine
    }

    [SkippableFact]
    public void ReadsVersion2Files()
    {
        var aquila = GgufTestFiles.RequireBundleVocab().Single(f => f.EndsWith("ggml-vocab-aquila.gguf", StringComparison.Ordinal));
        using var file = GgufFile.Open(aquila);
        Assert.Equal(2u, file.Version);
        Assert.Empty(file.Tensors);
        Assert.Equal(file.FileLength, file.DataOffset); // no tensors: nothing follows the metadata
        Assert.True(file.GetArray("tokenizer.ggml.tokens")!.Count > 100_000);
    }

    [Fact]
    public void ShapeIsACopy()
    {
        using var file = GgufFile.Open(GgufTestFiles.Sample);
        var t = file.Tensors[0];
        t.Shape[0] = 1;
        Assert.Equal(256, t.Shape[0]);
        Assert.Equal("token_embd.weight F16 [256, 2048]", t.ToString());
    }

    [Fact]
    public void OpensLargeFilesWithoutReadingThem()
    {
        // A 6 GiB sparse file: a 4 GiB F32 tensor after a small one. Opening maps it; offsets beyond 2 GiB work.
        var dir = TestPaths.NewTempDir();
        try
        {
            var path = Path.Combine(dir, "large.gguf");
            var image = new GgufImage().Header(3, 2, 0)
                .Tensor("small", GgmlType.F32, 0, 8)
                .Tensor("huge", GgmlType.F32, 32, 1L << 20, 1L << 10)
                .PadTo(32).Data(32);
            using (var stream = File.Create(path))
            {
                stream.Write(image.ToArray());
                stream.SetLength(image.Length + (4L << 30)); // sparse: no disk space, no writing
                stream.Position = stream.Length - 4;
                stream.Write([1, 2, 3, 4]);
            }
            var clock = System.Diagnostics.Stopwatch.StartNew();
            using var file = GgufFile.Open(path);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"opening took {clock.Elapsed}");
            var huge = file.FindTensor("huge")!;
            Assert.Equal(4L << 30, huge.ByteSize);
            Assert.Equal(1L << 10, huge.RowCount);
            Assert.Equal([1, 2, 3, 4], file.GetTensorBytes(huge, huge.ByteSize - 4, 4).ToArray());
            Assert.Equal(4L << 20, file.GetRows(huge, huge.RowCount - 1, 1).Length);
            Assert.Equal(0, file.GetRows(huge, 600, 1)[0]);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
