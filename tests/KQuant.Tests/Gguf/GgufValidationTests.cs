using System.Buffers.Binary;
using KQuant.Gguf;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Gguf;

/// <summary>Each kind of malformed file, built by hand: exactly one <see cref="GgufFormatException"/> whose offset
/// and message point at the problem.</summary>
public class GgufValidationTests
{
    private const string Name = "hand-built.gguf";

    [Fact]
    public void TheHandBuiltImageIsValid()
    {
        var image = GgufImage.Valid();
        using var file = GgufFile.Open(image.ToArray(), Name);
        Assert.Equal(2, file.Tensors.Count);
        Assert.Equal(image.Marks["data"], file.DataOffset);
        Assert.Equal(["a", "bc", ""], file.GetArray("test.tokens")!.AsStrings());
        Assert.Equal(68, file.FindTensor("b")!.ByteSize);
    }

    [Fact]
    public void EveryTruncationIsRefused()
    {
        var image = GgufImage.Valid();
        var bytes = image.ToArray();
        // The padding after the last tensor is optional (llama.cpp's loader does not need it), so cuts after "b.end" open.
        for (var length = 0; length < bytes.Length; length++)
        {
            if (length >= image.Marks["b.end"])
            {
                using var file = GgufFile.Open(bytes.AsMemory(0, length), Name);
                continue;
            }
            var e = Assert.Throws<GgufFormatException>(() => GgufFile.Open(bytes.AsMemory(0, length), Name));
            Assert.True(e.Offset <= length, $"cut at {length}: offset {e.Offset}");
            Assert.Contains($"at byte {e.Offset}", e.Message);
        }
    }

    [Fact]
    public void TruncationNamesWhatWasExpected()
    {
        var image = GgufImage.Valid();
        var cut = image.Marks["general.alignment.value"] + 2;
        var e = Assert.Throws<GgufFormatException>(() => GgufFile.Open(image.ToArray().AsMemory(0, (int)cut), Name));
        Assert.Equal(image.Marks["general.alignment.value"], e.Offset);
        Assert.Equal($"{Name}: at byte {e.Offset}: expected the value of 'general.alignment' (4 bytes), but the file ends at byte {cut}", e.Message);
    }

    [Fact]
    public void AnEmptyFileIsRefused()
    {
        var dir = TestPaths.NewTempDir();
        var path = Path.Combine(dir, "empty.gguf");
        File.WriteAllBytes(path, []);
        var e = Assert.Throws<GgufFormatException>(() => GgufFile.Open(path));
        Assert.Equal(path, e.Path);
        Assert.Contains("empty", e.Message);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void BadMagicIsRefused()
    {
        var bytes = GgufImage.Valid().ToArray();
        "GGML"u8.CopyTo(bytes);
        var e = Open(bytes);
        Assert.Equal(0, e.Offset);
        Assert.Contains("expected the magic 'GGUF', found 'GGML'", e.Message);
    }

    [Fact]
    public void Version1IsRefused() => AssertRefused("version", 1u, "GGUF version 1 is not supported");

    [Theory]
    [InlineData(0x03000000u, "version 3 byte-swapped: this is a big-endian GGUF file")]
    [InlineData(0x02000000u, "version 2 byte-swapped: this is a big-endian GGUF file")]
    [InlineData(0u, "GGUF version 0 is not supported")]
    [InlineData(4u, "GGUF version 4 is not supported")]
    [InlineData(0xFFFFFFFFu, "GGUF version 4294967295 is not supported")]
    public void OtherVersionsAreRefused(uint version, string expected) => AssertRefused("version", version, expected);

    [Theory]
    [InlineData("n_tensors", -1L, "the tensor count is -1, expected a non-negative number")]
    [InlineData("n_tensors", long.MaxValue, "the tensor count is 9223372036854775807, but the remaining")]
    [InlineData("n_kv", 1L << 40, "the metadata entry count is 1099511627776, but the remaining")]
    [InlineData("general.architecture.value", 1L << 62, "the value of 'general.architecture' claims 4611686018427387904 bytes, but only")]
    [InlineData("test.tokens.count", 1L << 32, "array 'test.tokens' claims 4294967296 str elements, but the remaining")]
    public void CountsAndLengthsLargerThanTheFileAreRefused(string field, long value, string expected) =>
        AssertRefused(field, (ulong)value, expected);

    [Theory]
    [InlineData(13u)]
    [InlineData(0xFFFFFFFFu)]
    public void UnknownValueTypesAreRefused(uint type)
    {
        AssertRefused("test.tokens.type", type, $"the element type of array 'test.tokens' is {type}, expected a GGUF value type (0 to 12)");
        AssertRefused("general.architecture.type", type, $"the value type of 'general.architecture' is {type}");
    }

    [Fact]
    public void DuplicateMetadataKeysAreRefused()
    {
        var image = new GgufImage().Header(3, 0, 2).KvU32("x.y", 1).Mark("second").KvU32("x.y", 2);
        var e = Open(image.ToArray());
        Assert.Equal(image.Marks["second"], e.Offset);
        Assert.Contains("duplicate metadata key 'x.y'", e.Message);
    }

    [Fact]
    public void EmptyKeysAndInvalidUtf8KeysAreRefused()
    {
        var e = Open(new GgufImage().Header(3, 0, 1).Str("").U32(4).U32(1).ToArray());
        Assert.Equal(24, e.Offset);
        Assert.Contains("the key of metadata entry 0 is empty", e.Message);

        e = Open(new GgufImage().Header(3, 0, 1).Str([0x61, 0xFF]).U32(4).U32(1).ToArray());
        Assert.Equal(32, e.Offset);
        Assert.Contains("is not valid UTF-8", e.Message);
    }

    [Fact]
    public void InvalidUtf8StringValuesAreKeptVerbatim()
    {
        byte[] bad = [0x41, 0xC3, 0x28, 0xFF];
        var bytes = new GgufImage().Header(3, 0, 2)
            .Str("k.s").U32((uint)GgufValueType.String).Str(bad)
            .Str("k.a").U32((uint)GgufValueType.Array).U32((uint)GgufValueType.String).U64(2).Str("ok").Str(bad)
            .ToArray();
        using var file = GgufFile.Open(bytes, Name);
        Assert.Equal("A\uFFFD(\uFFFD", file.GetString("k.s"));
        Assert.Equal("A\uFFFD(\uFFFD", file.GetArray("k.a")!.AsStrings()[1]);

        var dir = TestPaths.NewTempDir();
        var output = Path.Combine(dir, "out.gguf");
        using (var writer = new GgufWriter(output, file.Metadata, file.Tensors)) writer.Commit();
        Assert.Equal(bytes, File.ReadAllBytes(output)); // the original bytes went back out
        Directory.Delete(dir, true);
    }

    [Fact]
    public void NestedArraysAreReadUpToTheLimit()
    {
        static byte[] Nested(int depth)
        {
            var image = new GgufImage().Header(3, 0, 1).Str("deep").U32((uint)GgufValueType.Array);
            for (var i = 1; i < depth; i++) image.U32((uint)GgufValueType.Array).U64(1);
            image.Mark("innermost").U32((uint)GgufValueType.UInt16).U64(2).Raw([1, 0, 2, 0]);
            return image.ToArray();
        }

        using (var file = GgufFile.Open(Nested(GgufHeaderReader.MaxArrayNesting), Name))
        {
            var array = file.GetArray("deep")!;
            for (var i = 1; i < GgufHeaderReader.MaxArrayNesting; i++) array = array.AsArrays()[0];
            Assert.Equal([(ushort)1, (ushort)2], array.AsSpan<ushort>().ToArray());
        }
        var e = Open(Nested(GgufHeaderReader.MaxArrayNesting + 1));
        Assert.Contains($"array 'deep' nests arrays more than {GgufHeaderReader.MaxArrayNesting} deep", e.Message);
        Assert.Equal(24 + 8 + 4 + 4 + 12L * (GgufHeaderReader.MaxArrayNesting - 1), e.Offset);
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(3u)]
    [InlineData(48u)]
    public void AlignmentMustBeAPowerOfTwo(uint alignment) =>
        AssertRefused("general.alignment.value", alignment, $"general.alignment is u32 {alignment}, expected a u32 power of two", reportedAt: "general.alignment");

    [Fact]
    public void AlignmentMustBeUInt32()
    {
        var image = new GgufImage().Header(3, 0, 1).Str("general.alignment").U32((uint)GgufValueType.UInt64).U64(32);
        var e = Open(image.ToArray());
        Assert.Contains("general.alignment is u64 32, expected a u32 power of two", e.Message);
    }

    [Fact]
    public void AHugeAlignmentPushesTheDataPastTheEnd() =>
        AssertRefused("general.alignment.value", 1u << 30, $"expected tensor data from byte {1 << 30}", reportedAt: "directory.end");

    [Theory]
    [InlineData("a.ndims", 0u, "tensor 'a' has 0 dimensions, expected 1 to 4")]
    [InlineData("a.ndims", 5u, "tensor 'a' has 5 dimensions, expected 1 to 4")]
    [InlineData("a.dim1", 0u, "tensor 'a': dimension 1 is 0, expected a positive size")]
    public void DimensionsAreChecked(string field, uint value, string expected) => AssertRefused(field, value, expected);

    [Fact]
    public void NegativeDimensionsAreRefused() => AssertRefused("a.dim1", unchecked((ulong)-2L), "tensor 'a': dimension 1 is -2, expected a positive size");

    [Fact]
    public void ElementCountOverflowIsRefused()
    {
        var image = new GgufImage().Header(3, 1, 0).Tensor("big", GgmlType.F32, 0, 1L << 32, 1L << 30, 4);
        var e = Open(image.ToArray());
        Assert.Equal(image.Marks["big.dim2"], e.Offset);
        Assert.Contains("dimension 2 (4) makes the element count overflow a 64-bit integer", e.Message);

        image = new GgufImage().Header(3, 1, 0).Tensor("big", GgmlType.F32, 0, 1L << 62);
        e = Open(image.ToArray());
        Assert.Contains("take more than 9223372036854775807 bytes", e.Message);
    }

    [Fact]
    public void RowLengthMustBeAMultipleOfTheBlockSize()
    {
        var image = new GgufImage().Header(3, 1, 0).Tensor("q", GgmlType.Q4_K, 0, 128, 2);
        var e = Open(image.ToArray());
        Assert.Equal(image.Marks["q.dim0"], e.Offset);
        Assert.Contains("row length 128 is not a multiple of the Q4_K block size 256", e.Message);
    }

    [Theory]
    [InlineData(4u)]
    [InlineData(5u)]
    [InlineData(31u)]
    [InlineData(33u)]
    [InlineData(36u)]
    [InlineData(38u)]
    [InlineData(43u)]
    [InlineData(0xFFFFFFFFu)]
    public void UnknownGgmlTypesAreRefused(uint type) =>
        AssertRefused("b.type", type, $"tensor 'b' has ggml type id {type}, which is not a type ggml defines");

    [Fact]
    public void TypesWithoutACodecAreCarriedAsBytes()
    {
        var image = new GgufImage().Header(3, 2, 0)
            .Tensor("iq", GgmlType.IQ2_XXS, 0, 256)
            .Tensor("tq", GgmlType.TQ1_0, 96, 512)
            .PadTo(32).Data(66).PadTo(32).Data(108);
        using var file = GgufFile.Open(image.ToArray(), Name);
        Assert.Equal(66, file.FindTensor("iq")!.ByteSize);
        Assert.Equal(108, file.FindTensor("tq")!.GetBytesOf(file).Length);
    }

    [Theory]
    [InlineData(1UL << 40, "tensor 'b' needs 68 bytes at data offset 1099511627776, but the data section (from byte 256) holds only 352")]
    [InlineData(ulong.MaxValue, "tensor 'b' has data offset 18446744073709551615, beyond any file")]
    [InlineData(260UL, "tensor 'b' has data offset 260, expected a multiple of the alignment 32")]
    [InlineData(224UL, "tensor 'b' data at offset 224 overlaps tensor 'a' (offsets 0 to 256)")]
    public void BadTensorOffsetsAreRefused(ulong offset, string expected) => AssertRefused("b.offset", offset, expected);

    [Fact]
    public void TensorsInAnotherOrderAreAccepted()
    {
        // "b" first in the data section, "a" after it: unusual, but aligned, inside the file and disjoint.
        var image = new GgufImage().Header(3, 2, 0)
            .Tensor("a", GgmlType.F32, 96, 32, 2)
            .Tensor("b", GgmlType.Q8_0, 0, 64)
            .PadTo(32).Data(68).PadTo(32).Data(256);
        using var file = GgufFile.Open(image.ToArray(), Name);
        Assert.Equal(96, file.FindTensor("a")!.Offset);
    }

    [Fact]
    public void DuplicateAndEmptyTensorNamesAreRefused()
    {
        var image = new GgufImage().Header(3, 2, 0).Tensor("t", GgmlType.F32, 0, 8).Tensor("t", GgmlType.F32, 32, 8).PadTo(32).Data(64);
        var e = Open(image.ToArray());
        Assert.Equal(image.Marks["t"], e.Offset); // the second entry's mark
        Assert.Contains("duplicate tensor name 't'", e.Message);

        e = Open(new GgufImage().Header(3, 1, 0).Tensor("", GgmlType.F32, 0, 8).PadTo(32).Data(32).ToArray());
        Assert.Contains("the name of tensor 0 is empty", e.Message);
    }

    private static GgufFormatException Open(byte[] bytes)
    {
        var e = Assert.Throws<GgufFormatException>(() => GgufFile.Open(bytes, Name));
        Assert.Equal(Name, e.Path);
        Assert.StartsWith($"{Name}: at byte {e.Offset}: ", e.Message);
        return e;
    }

    /// <summary>Overwrites one field of <see cref="GgufImage.Valid"/> and checks that the refusal points at that field
    /// (or at <paramref name="reportedAt"/>) and says <paramref name="expected"/>.</summary>
    private static void AssertRefused(string field, uint value, string expected, string? reportedAt = null) =>
        AssertRefused(field, bytes => BinaryPrimitives.WriteUInt32LittleEndian(bytes, value), expected, reportedAt);

    private static void AssertRefused(string field, ulong value, string expected, string? reportedAt = null) =>
        AssertRefused(field, bytes => BinaryPrimitives.WriteUInt64LittleEndian(bytes, value), expected, reportedAt);

    private static void AssertRefused(string field, SpanAction patch, string expected, string? reportedAt)
    {
        var image = GgufImage.Valid();
        var bytes = image.ToArray();
        patch(bytes.AsSpan((int)image.Marks[field]));
        var e = Open(bytes);
        Assert.Equal(image.Marks[reportedAt ?? field], e.Offset);
        Assert.Contains(expected, e.Message);
    }

    private delegate void SpanAction(Span<byte> bytes);
}

internal static class GgufTestExtensions
{
    public static ReadOnlySpan<byte> GetBytesOf(this GgufTensorInfo tensor, GgufFile file) =>
        file.GetTensorBytes(tensor, 0, checked((int)tensor.ByteSize));
}
