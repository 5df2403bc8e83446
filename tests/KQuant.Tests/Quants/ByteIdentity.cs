using System.Runtime.InteropServices;
using KQuant.Gguf;

namespace KQuant.Tests.Quants;

/// <summary>Assertions that name where two encodings first differ: type, case, row, block and byte (or element).</summary>
public static class ByteIdentity
{
    public static void AssertSameBytes(GgmlType type, string label, ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual, int rowLength)
    {
        Assert.Equal(expected.Length, actual.Length);
        var mismatch = FirstDifference(expected, actual);
        if (mismatch < 0) return;
        var traits = GgmlTypeTraits.Of(type);
        var rowBytes = (int)traits.RowBytes(rowLength);
        var row = mismatch / rowBytes;
        var inRow = mismatch % rowBytes;
        var block = inRow / traits.BytesPerBlock;
        var inBlock = inRow % traits.BytesPerBlock;
        var blockStart = row * rowBytes + block * traits.BytesPerBlock;
        Assert.Fail($"{traits.Name} {label}: row {row}, block {block}, byte {inBlock} differs " +
            $"(ggml 0x{expected[mismatch]:X2}, ours 0x{actual[mismatch]:X2}); ggml block {Convert.ToHexString(expected.Slice(blockStart, traits.BytesPerBlock))}, " +
            $"ours {Convert.ToHexString(actual.Slice(blockStart, traits.BytesPerBlock))}");
    }

    public static void AssertSameFloatBits(GgmlType type, string label, ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, int rowLength)
    {
        Assert.Equal(expected.Length, actual.Length);
        var mismatch = FirstDifference(MemoryMarshal.AsBytes(expected),
            MemoryMarshal.AsBytes(actual));
        if (mismatch < 0) return;
        var index = mismatch / sizeof(float);
        var traits = GgmlTypeTraits.Of(type);
        var row = index / rowLength;
        var block = index % rowLength / traits.BlockSize;
        var element = index % traits.BlockSize;
        Assert.Fail($"{traits.Name} {label}: dequantized row {row}, block {block}, element {element} differs " +
            $"(ggml 0x{BitConverter.SingleToUInt32Bits(expected[index]):X8} = {expected[index]}, " +
            $"ours 0x{BitConverter.SingleToUInt32Bits(actual[index]):X8} = {actual[index]})");
    }

    private static int FirstDifference(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        var common = a.CommonPrefixLength(b);
        return common == a.Length ? -1 : common;
    }
}
