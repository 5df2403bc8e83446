using KQuant.Gguf;
using KQuant.Quants;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Quants;

/// <summary>Runs rows through our codec and through ggml and fails with the first difference, naming type, case,
/// row, block and byte (or element).</summary>
public static class CodecComparison
{
    /// <summary>Quantizes <paramref name="data"/> (rows of <paramref name="rowLength"/>) both ways and compares the bytes,
    /// then dequantizes ggml's bytes both ways and compares the floats bit for bit. Returns the number of rows checked.
    /// Ours is the registered codec through <see cref="RowQuantizer"/>, or each of <paramref name="codecs"/> row by row
    /// when given (to check several code paths against one ggml run).</summary>
    public static int AssertMatchesGgml(GgmlType type, string label, float[] data, int rowLength, float[] importance,
        params IRowCodec[] codecs)
    {
        var traits = GgmlTypeTraits.Of(type);
        var rowBytes = (int)traits.RowBytes(rowLength);
        var rows = data.Length / rowLength;
        var context = $"{traits.Name} {label}, rows of {rowLength}, {(importance.Length == 0 ? "no importance" : "with importance")}";

        var expected = GgmlReference.Quantize(type, data, rowLength, importance);
        var actual = new byte[expected.Length];
        foreach (var codec in codecs.Length == 0 ? [null] : codecs.Cast<IRowCodec?>())
        {
            if (codec is null)
            {
                RowQuantizer.Quantize(type, data, actual, rowLength, importance);
            }
            else
            {
                for (var r = 0; r < rows; r++)
                {
                    codec.Quantize(data.AsSpan(r * rowLength, rowLength), actual.AsSpan(r * rowBytes, rowBytes), importance);
                }
            }
            var at = expected.AsSpan().CommonPrefixLength(actual);
            if (at < expected.Length)
            {
                var row = at / rowBytes;
                var block = at % rowBytes / traits.BytesPerBlock;
                var offset = at % rowBytes % traits.BytesPerBlock;
                Assert.Fail($"{context}{PathLabel(codec)}: quantized bytes differ at row {row}, block {block}, byte {offset} of the block " +
                            $"(ggml 0x{expected[at]:x2}, ours 0x{actual[at]:x2}); block from ggml {Hex(expected, at - offset, traits.BytesPerBlock)}, " +
                            $"ours {Hex(actual, at - offset, traits.BytesPerBlock)}");
            }
            AssertDequantizeMatches(type, context + PathLabel(codec), expected, rowLength, data.Length, codec);
        }
        return rows;
    }

    /// <summary>Names an explicitly given codec (its ToString says which code path it runs) in messages.</summary>
    private static string PathLabel(IRowCodec? codec) => codec is null ? "" : $" [{codec}]";

    /// <summary>Dequantizes <paramref name="quantized"/> with ggml's to_float and with ours (<paramref name="codec"/> when
    /// given); fails on the first float whose bits differ.</summary>
    public static void AssertDequantizeMatches(GgmlType type, string context, byte[] quantized, int rowLength, int count,
        IRowCodec? codec = null)
    {
        var traits = GgmlTypeTraits.Of(type);
        var expected = GgmlReference.Dequantize(type, quantized, count);
        var actual = new float[count];
        if (codec is null) RowQuantizer.Dequantize(type, quantized, actual);
        else codec.Dequantize(quantized, actual);
        var at = System.Runtime.InteropServices.MemoryMarshal.Cast<float, uint>(expected)
            .CommonPrefixLength(System.Runtime.InteropServices.MemoryMarshal.Cast<float, uint>(actual));
        if (at < count)
        {
            Assert.Fail($"{context}: dequantized floats differ at row {at / rowLength}, block {at % rowLength / traits.BlockSize}, " +
                        $"element {at % traits.BlockSize} (ggml {expected[at]:R} = 0x{BitConverter.SingleToUInt32Bits(expected[at]):x8}, " +
                        $"ours {actual[at]:R} = 0x{BitConverter.SingleToUInt32Bits(actual[at]):x8})");
        }
    }

    private static string Hex(byte[] bytes, int start, int length) => Convert.ToHexString(bytes, start, length);
}
