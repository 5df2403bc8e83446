using KQuant.Gguf;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Gguf;

public sealed class GgufWriterTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void RewritingTheSampleIsByteIdentical() => AssertRewriteIsIdentical(GgufTestFiles.Sample);

    [SkippableFact]
    public void RewritingSharedFilesIsByteIdentical()
    {
        foreach (var path in GgufTestFiles.RequireShared()) AssertRewriteIsIdentical(path);
    }

    [SkippableFact]
    public void RewritingTheBundleVocabFilesIsByteIdentical()
    {
        foreach (var path in GgufTestFiles.RequireBundleVocab()) AssertRewriteIsIdentical(path);
    }

    [Fact]
    public void RewritingAFileWithEveryValueTypeIsByteIdentical()
    {
        var image = new GgufImage().Header(2, 1, 16);
        image.Str("u8").U32(0).U8(200)
            .Str("i8").U32(1).U8(0x80)
            .Str("u16").U32(2).Raw([0x34, 0x12])
            .Str("i16").U32(3).Raw([0xFE, 0xFF])
            .Str("u32").U32(4).U32(0xDEADBEEF)
            .Str("i32").U32(5).U32(0xFFFFFFFF)
            .Str("f32").U32(6).U32(BitConverter.SingleToUInt32Bits(float.NaN) | 0x1234) // a NaN payload survives
            .Str("bool").U32(7).U8(1)
            .Str("str").U32(8).Str("héllo\0world")
            .Str("u64").U32(10).U64(ulong.MaxValue)
            .Str("i64").U32(11).I64(long.MinValue)
            .Str("f64").U32(12).U64(BitConverter.DoubleToUInt64Bits(-0.0))
            .Str("arr.bool").U32(9).U32(7).U64(3).Raw([1, 0, 1])
            .Str("arr.f64").U32(9).U32(12).U64(1).U64(BitConverter.DoubleToUInt64Bits(Math.PI))
            .Str("arr.empty").U32(9).U32(8).U64(0)
            .Str("arr.nested").U32(9).U32(9).U64(2)
                .U32(5).U64(2).U32(1).U32(2)
                .U32(8).U64(1).Str("x")
            .Tensor("t", GgmlType.Q4_K, 0, 256).PadTo(32).Data(144).PadTo(32);
        var input = Path.Combine(_dir, "every-type.gguf");
        File.WriteAllBytes(input, image.ToArray());
        AssertRewriteIsIdentical(input);

        using var file = GgufFile.Open(input);
        Assert.Equal(2u, file.Version);
        Assert.Equal(-128, file.GetInt32("i8"));
        Assert.Equal(-2L, file.GetInt64("i16"));
        Assert.Equal(0xDEADBEEFu, file.GetUInt32("u32"));
        Assert.Equal(long.MinValue, file.GetInt64("i64"));
        Assert.Equal("héllo\0world", file.GetString("str"));
        Assert.Equal([true, false, true], file.GetArray("arr.bool")!.AsSpan<bool>().ToArray());
        var nested = file.GetArray("arr.nested")!.AsArrays();
        Assert.Equal([1, 2], nested[0].AsSpan<int>().ToArray());
        Assert.Equal(["x"], nested[1].AsStrings());
    }

    [Fact]
    public void WritesWhatItIsGiven()
    {
        var metadata = new GgufMetadata();
        metadata.Set("general.architecture", GgufValue.FromString("llama"));
        metadata.Set("test.scores", GgufValue.FromArray<float>([0.5f, -1f]));
        metadata.Set("test.flag", GgufValue.FromBool(true));
        GgufTensorInfo[] tensors = [new("a", GgmlType.F32, [3]), new("b", GgmlType.Q8_0, [32, 2])];
        var path = Path.Combine(_dir, "new.gguf");
        using (var writer = new GgufWriter(path, metadata, tensors))
        {
            Assert.Equal([0L, 32L], writer.Tensors.Select(t => t.Offset));
            Assert.Same(writer.Tensors[0], writer.PendingTensor);
            writer.WriteTensorData([1, 2, 3, 4, 5]);
            writer.WriteTensorData([]);
            writer.WriteTensorData(new byte[7]);
            Assert.Equal("b", writer.PendingTensor!.Name);
            var e = Assert.Throws<InvalidOperationException>(() => writer.WriteTensorData(new byte[69]));
            Assert.Contains("tensor 'b' needs 68 more bytes, but 69 were given", e.Message);
            writer.WriteTensorData(new byte[60]);
            e = Assert.Throws<InvalidOperationException>(writer.Commit);
            Assert.Contains("tensor 'b' has 60 of 68 bytes", e.Message);
            writer.WriteTensorData(Enumerable.Repeat((byte)9, 8).ToArray());
            Assert.Null(writer.PendingTensor);
            Assert.Throws<InvalidOperationException>(() => writer.WriteTensorData([1]));
            writer.Commit();
            Assert.Throws<InvalidOperationException>(writer.Commit);
        }

        using var file = GgufFile.Open(path);
        Assert.Equal(3u, file.Version);
        Assert.Equal(["general.architecture", "test.scores", "test.flag"], file.Metadata.Select(e => e.Key));
        Assert.Equal([0.5f, -1f], file.GetArray("test.scores")!.AsSpan<float>().ToArray());
        Assert.Equal([1, 2, 3, 4, 5, 0, 0, 0, 0, 0, 0, 0], file.FindTensor("a")!.GetBytesOf(file).ToArray());
        Assert.Equal(9, file.FindTensor("b")!.GetBytesOf(file)[^1]);
        Assert.Equal(0, file.DataOffset % 32);
        Assert.Equal(file.DataOffset + 32 + 96, file.FileLength); // the last tensor is padded too
    }

    [Fact]
    public void DisposeWithoutCommitLeavesNothing()
    {
        var path = Path.Combine(_dir, "abandoned.gguf");
        using (var writer = new GgufWriter(path, [], [new GgufTensorInfo("t", GgmlType.F32, [8])]))
        {
            writer.WriteTensorData(new byte[16]);
            Assert.Single(Directory.GetFiles(_dir)); // the temporary file, beside the target
            Assert.StartsWith(".abandoned.gguf.tmp-", Path.GetFileName(Directory.GetFiles(_dir)[0]));
        }
        Assert.Empty(Directory.GetFiles(_dir));
    }

    [Fact]
    public void RefusesToWriteOntoAnInput()
    {
        var input = CopySample("input.gguf");
        using (var file = GgufFile.Open(input))
        {
            var e = Assert.Throws<OutputRefusedException>(() => new GgufWriter(input, file.Metadata, file.Tensors, overwrite: true));
            Assert.Contains("it is one of the input files", e.Message);
            e = Assert.Throws<OutputRefusedException>(() => GgufWriter.Rewrite(file, Path.Combine(_dir, ".", "input.gguf"), overwrite: true));
            Assert.Contains("it is one of the input files", e.Message);
            var link = Path.Combine(_dir, "link.gguf");
            File.CreateSymbolicLink(link, input);
            Assert.Throws<OutputRefusedException>(() => new GgufWriter(link, [], [], overwrite: true));
        }
        // Closed now, but still named as an input.
        Assert.Throws<OutputRefusedException>(() => new GgufWriter(input, [], [], overwrite: true, inputPaths: [input]));
        using (var writer = new GgufWriter(input, [], [], overwrite: true)) writer.Commit();
        Assert.Equal(24, new FileInfo(input).Length); // header only: no metadata, no tensors
        Assert.Equal([Path.Combine(_dir, "input.gguf"), Path.Combine(_dir, "link.gguf")], Directory.GetFiles(_dir).Order());
    }

    [Fact]
    public void RefusesAnExistingTargetUnlessToldToOverwrite()
    {
        var target = Path.Combine(_dir, "exists.gguf");
        File.WriteAllText(target, "precious");
        using (var input = GgufFile.Open(GgufTestFiles.Sample))
        {
            var e = Assert.Throws<OutputRefusedException>(() => GgufWriter.Rewrite(input, target));
            Assert.Contains("already exists", e.Message);
            Assert.Equal("precious", File.ReadAllText(target));
            GgufWriter.Rewrite(input, target, overwrite: true);
        }
        Assert.Equal(File.ReadAllBytes(GgufTestFiles.Sample), File.ReadAllBytes(target));

        // A target that appears while the writer works is not clobbered either.
        var late = Path.Combine(_dir, "late.gguf");
        using (var writer = new GgufWriter(late, [], []))
        {
            File.WriteAllText(late, "came first");
            Assert.Throws<OutputRefusedException>(writer.Commit);
        }
        Assert.Equal("came first", File.ReadAllText(late));
        Assert.Equal(2, Directory.GetFiles(_dir).Length);
    }

    [Fact]
    public void MetadataOrderIsKeptWhenAKeyIsSet()
    {
        var output = Path.Combine(_dir, "renamed.gguf");
        string[] keys;
        using (var input = GgufFile.Open(GgufTestFiles.Sample))
        {
            keys = input.Metadata.Select(e => e.Key).ToArray();
            var metadata = new GgufMetadata(input.Metadata);
            metadata.Set("general.name", GgufValue.FromString("renamed"));
            metadata.Set("general.file_type", GgufValue.FromUInt32(0));
            metadata.Set("test.added", GgufValue.FromInt32(-1));
            Assert.True(metadata.Remove("general.description"));
            using var writer = new GgufWriter(output, metadata, input.Tensors, inputPaths: [input.Path]);
            foreach (var t in input.Tensors) writer.CopyTensorFrom(input, t);
            writer.Commit();
        }
        using var file = GgufFile.Open(output);
        Assert.Equal(keys.Where(k => k != "general.description").Append("test.added"), file.Metadata.Select(e => e.Key));
        Assert.Equal("renamed", file.GetString("general.name"));
        Assert.Equal(0u, file.GetUInt32("general.file_type"));
        Assert.Equal(2048, file.GetArray("tokenizer.ggml.tokens")!.Count);
        using var original = GgufFile.Open(GgufTestFiles.Sample);
        foreach (var t in original.Tensors)
            Assert.True(t.GetBytesOf(original).SequenceEqual(file.FindTensor(t.Name)!.GetBytesOf(file)), t.Name);
    }

    [Fact]
    public void ConvertsATensorToAnotherType()
    {
        var output = Path.Combine(_dir, "f32.gguf");
        using (var input = GgufFile.Open(GgufTestFiles.Sample)) GgufConversion.RewriteWithF32Tensor(input, output, "blk.0.attn_k.weight", "converted");
        using var file = GgufFile.Open(output);
        using var original = GgufFile.Open(GgufTestFiles.Sample);
        var before = original.FindTensor("blk.0.attn_k.weight")!;
        var after = file.FindTensor("blk.0.attn_k.weight")!;
        Assert.Equal(GgmlType.F32, after.Type);
        Assert.Equal(before.Shape, after.Shape);
        Assert.Equal(2 * before.ByteSize, after.ByteSize);
        var halves = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(before.GetBytesOf(original));
        var floats = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(after.GetBytesOf(file));
        for (var i = 0; i < halves.Length; i++) Assert.Equal((float)halves[i], floats[i]);
        Assert.Equal("converted", file.GetString("general.name"));
        Assert.Equal(original.Tensors.Select(t => t.Name), file.Tensors.Select(t => t.Name));
    }

    [Fact]
    public void RejectsInconsistentTensorLists()
    {
        var path = Path.Combine(_dir, "x.gguf");
        Assert.Throws<ArgumentException>(() => new GgufWriter(path, [], [new("t", GgmlType.F32, [1]), new("t", GgmlType.F16, [1])]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GgufWriter(path, [], [], version: 1));
        Assert.Throws<ArgumentException>(() => new GgufWriter(path, [new("k", GgufValue.FromUInt8(1)), new("k", GgufValue.FromUInt8(1))], []));
        using var input = GgufFile.Open(GgufTestFiles.Sample);
        using var writer = new GgufWriter(path, [], input.Tensors.Reverse());
        Assert.Throws<InvalidOperationException>(() => writer.CopyTensorFrom(input, input.Tensors[0]));
        Assert.DoesNotContain(Directory.GetFiles(_dir), f => !Path.GetFileName(f).StartsWith('.'));
    }

    private string CopySample(string name)
    {
        var path = Path.Combine(_dir, name);
        File.Copy(GgufTestFiles.Sample, path);
        return path;
    }

    private void AssertRewriteIsIdentical(string path)
    {
        var output = Path.Combine(_dir, "rewrite-" + Path.GetFileName(path));
        using (var input = GgufFile.Open(path)) GgufWriter.Rewrite(input, output);
        Assert.True(KQuant.Testing.FileComparison.SameBytes(path, output), $"rewriting {path} changed its bytes");
        File.Delete(output);
    }
}
