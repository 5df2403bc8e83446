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
    public void Version1IsRefused()
    {
        var e = OpenWith(i => i.Marks["version"], 1u);
        Assert.Equal(4, e.Offset);
        Assert.Contains("GGUF version 1 is not supported", e.Message);
    }

    [Theory]
    [InlineData(0x03000000u, 3u)]
    [InlineData(0x02000000u, 2u)]
    public void BigEndianFilesAreRefused(uint version, uint swapped)
    {
        var e = OpenWith(i => i.Marks["version"], version);
        Assert.Equal(4, e.Offset);
        Assert.Contains($"version {swapped} byte-swapped", e.Message);
        Assert.Contains("big-endian", e.Message);
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(4u)]
    [InlineData(0xFFFFFFFFu)]
    public void UnknownVersionsAreRefused(uint version)
    {
        var e = OpenWith(i => i.Marks["version"], version);
        Assert.Contains($"GGUF version {version} is not supported", e.Message);
    }

    [Theory]
    [InlineData("n_tensors", -1L, "the tensor count is -1, expected a non-negative number")]
    [InlineData("n_tensors", long.MaxValue, "the tensor count is 9223372036854775807, but the remaining")]
    [InlineData("n_kv", 1L << 40, "the metadata entry count is 1099511627776, but the remaining")]
    public void CountsLargerThanTheFileAreRefused(string field, long value, string expected)
    {
        var image = GgufImage.Valid();
        var e = OpenWith(_ => image.Marks[field], (ulong)value, image);
        Assert.Equal(image.Marks[field], e.Offset);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void StringLengthsLargerThanTheFileAreRefused()
    {
        var image = GgufImage.Valid();
        var e = OpenWith(_ => image.Marks["general.architecture.value"], 1UL << 62, image);
        Assert.Equal(image.Marks["general.architecture.value"], e.Offset);
        Assert.Contains("the value of 'general.architecture' claims 4611686018427387904 bytes, but only", e.Message);
    }

    [Fact]
    public void ArrayCountsLargerThanTheFileAreRefused()
    {
        var image = GgufImage.Valid();
        var e = OpenWith(_ => image.Marks["test.tokens.count"], 1UL << 32, image);
        Assert.Equal(image.Marks["test.tokens.count"], e.Offset);
        Assert.Contains("array 'test.tokens' claims 4294967296 str elements, but the remaining", e.Message);
    }

    [Theory]
    [InlineData(13u)]
    [InlineData(0xFFFFFFFFu)]
    public void UnknownValueTypesAreRefused(uint type)
    {
        var image = GgufImage.Valid();
        var at = image.Marks["test.tokens.type"];
        var e = OpenWith(_ => at, type, image);
        Assert.Equal(at, e.Offset);
        Assert.Contains($"the element type of array 'test.tokens' is {type}, expected a GGUF value type (0 to 12)", e.Message);

        var valueTypeAt = image.Marks["general.architecture.value"] - 4;
        e = OpenWith(_ => valueTypeAt, type, image);
        Assert.Equal(valueTypeAt, e.Offset);
        Assert.Contains($"the value type of 'general.architecture' is {type}", e.Message);
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
    public void AlignmentMustBeAPowerOfTwo(uint alignment)
    {
        var image = GgufImage.Valid();
        var e = OpenWith(_ => image.Marks["general.alignment.value"], alignment, image);
        Assert.Equal(image.Marks["general.alignment"], e.Offset);
        Assert.Contains($"general.alignment is u32 {alignment}, expected a u32 power of two", e.Message);
    }

    [Fact]
    public void AlignmentMustBeUInt32()
    {
        var image = new GgufImage().Header(3, 0, 1).Str("general.alignment").U32((uint)GgufValueType.UInt64).U64(32);
        var e = Open(image.ToArray());
        Assert.Contains("general.alignment is u64 32, expected a u32 power of two", e.Message);
    }

    [Fact]
    public void AHugeAlignmentPushesTheDataPastTheEnd()
    {
        var image = GgufImage.Valid();
        var e = OpenWith(_ => image.Marks["general.alignment.value"], 1u << 30, image);
        Assert.Equal(image.Marks["directory.end"], e.Offset);
        Assert.Contains($"expected tensor data from byte {1 << 30}", e.Message);
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(5u)]
    public void DimensionCountsOutside1To4AreRefused(uint dims)
    {
        var image = GgufImage.Valid();
        var e = OpenWith(_ => image.Marks["a.ndims"], dims, image);
        Assert.Equal(image.Marks["a.ndims"], e.Offset);
        Assert.Contains($"tensor 'a' has {dims} dimensions, expected 1 to 4", e.Message);
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(-2L)]
    public void NonPositiveDimensionsAreRefused(long size)
    {
        var image = GgufImage.Valid();
        var e = OpenWith(_ => image.Marks["a.dims"] + 8, (ulong)size, image);
        Assert.Equal(image.Marks["a.dims"] + 8, e.Offset);
        Assert.Contains($"tensor 'a': dimension 1 is {size}, expected a positive size", e.Message);
    }

    [Fact]
    public void ElementCountOverflowIsRefused()
    {
        var image = new GgufImage().Header(3, 1, 0).Tensor("big", GgmlType.F32, 0, 1L << 32, 1L << 30, 4);
        var e = Open(image.ToArray());
        Assert.Equal(image.Marks["big.dims"] + 16, e.Offset);
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
        Assert.Equal(image.Marks["q.dims"], e.Offset);
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
    public void UnknownGgmlTypesAreRefused(uint type)
    {
        var image = GgufImage.Valid();
        var e = OpenWith(_ => image.Marks["b.type"], type, image);
        Assert.Equal(image.Marks["b.type"], e.Offset);
        Assert.Contains($"tensor 'b' has ggml type id {type}, which is not a type ggml defines", e.Message);
    }

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

    [Fact]
    public void TensorDataOutsideTheFileIsRefused()
    {
        var image = GgufImage.Valid();
        var e = OpenWith(_ => image.Marks["b.offset"], 1UL << 40, image);
        Assert.Equal(image.Marks["b.offset"], e.Offset);
        Assert.Contains("tensor 'b' needs 68 bytes at data offset 1099511627776, but the data section (from byte", e.Message);

        e = OpenWith(_ => image.Marks["b.offset"], ulong.MaxValue, image);
        Assert.Contains("beyond any file", e.Message);
    }

    [Fact]
    public void MisalignedOffsetsAreRefused()
    {
        var image = GgufImage.Valid();
        var e = OpenWith(_ => image.Marks["b.offset"], 260UL, image);
        Assert.Equal(image.Marks["b.offset"], e.Offset);
        Assert.Contains("tensor 'b' has data offset 260, expected a multiple of the alignment 32", e.Message);
    }

    [Fact]
    public void OverlappingTensorsAreRefused()
    {
        var image = GgufImage.Valid();
        var e = OpenWith(_ => image.Marks["b.offset"], 224UL, image);
        Assert.Equal(image.Marks["b.offset"], e.Offset);
        Assert.Contains("tensor 'b' data at offset 224 overlaps tensor 'a' (offsets 0 to 256)", e.Message);
    }

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

    private static GgufFormatException OpenWith(Func<GgufImage, long> at, uint value, GgufImage? image = null)
    {
        image ??= GgufImage.Valid();
        var bytes = image.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan((int)at(image)), value);
        return Open(bytes);
    }

    private static GgufFormatException OpenWith(Func<GgufImage, long> at, ulong value, GgufImage image)
    {
        var bytes = image.ToArray();
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan((int)at(image)), value);
        return Open(bytes);
    }
}

internal static class GgufTestExtensions
{
    public static ReadOnlySpan<byte> GetBytesOf(this GgufTensorInfo tensor, GgufFile file) =>
        file.GetTensorBytes(tensor, 0, checked((int)tensor.ByteSize));
}
