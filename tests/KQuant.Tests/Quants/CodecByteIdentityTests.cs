using System.Runtime.InteropServices;
using KQuant.Gguf;
using KQuant.Quants;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Quants;

/// <summary>Every codec of this branch against ggml_quantize_chunk and to_float of llama.cpp v0.5.0, on every TestRows case,
/// with and without importance, on each code path: quantized bytes must be equal, dequantized floats bitwise equal.</summary>
public class CodecByteIdentityTests
{
    /// <summary>Types checked here (the float, legacy and IQ4 codecs).</summary>
    public static readonly GgmlType[] Types = [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0, GgmlType.IQ4_NL, GgmlType.IQ4_XS];

    public static TheoryData<GgmlType, bool, bool> Variants()
    {
        var data = new TheoryData<GgmlType, bool, bool>();
        foreach (var type in Types)
        foreach (var vectorized in CodecVariants.Paths)
        foreach (var withImportance in new[] { false, true })
        {
            data.Add(type, vectorized, withImportance);
        }
        return data;
    }

    /// <summary>(row length, rows) per test case: 1,000 rows of lengths 32 to 16384 (multiples of the block size).</summary>
    public static IEnumerable<(int RowLength, int Rows)> RowShapes(GgmlType type) =>
        GgmlTypeTraits.Of(type).BlockSize == 256
            ? [(256, 600), (512, 200), (1024, 100), (4096, 80), (16384, 20)]
            : [(32, 400), (64, 250), (96, 150), (256, 120), (4096, 60), (16384, 20)];

    [SkippableTheory]
    [MemberData(nameof(Variants))]
    public void QuantizeAndDequantizeMatchGgml(GgmlType type, bool vectorized, bool withImportance)
    {
        GgmlReference.Require();
        var codec = CodecVariants.Create(type, vectorized);
        var rowsChecked = 0;
        foreach (var kind in TestRows.Cases)
        {
            foreach (var (rowLength, rows) in RowShapes(type))
            {
                var seed = HashCode.Combine(kind, rowLength) & 0x7FFFFFFF;
                var data = TestRows.Make(kind, rows, rowLength, seed);
                var importance = withImportance ? TestRows.Importance(rowLength, seed) : [];
                var label = $"{CodecVariants.PathName(vectorized)} {kind} n={rowLength}{(withImportance ? " +importance" : "")}";
                CheckRows(codec, label, data, rowLength, importance);
                rowsChecked += rows;
            }
        }
        Assert.True(rowsChecked >= 1000 * TestRows.Cases.Length);
    }

    /// <summary>Quantizes <paramref name="data"/> with ggml and with <paramref name="codec"/>, row by row, and dequantizes the
    /// bytes with both; asserts identity at each step.</summary>
    public static void CheckRows(IRowCodec codec, string label, float[] data, int rowLength, ReadOnlySpan<float> importance)
    {
        var type = codec.Type;
        var rowBytes = (int)GgmlTypeTraits.Of(type).RowBytes(rowLength);
        var rows = data.Length / rowLength;
        var expected = GgmlReference.Quantize(type, data, rowLength, importance);
        var actual = new byte[expected.Length];
        for (var r = 0; r < rows; r++)
        {
            codec.Quantize(data.AsSpan(r * rowLength, rowLength), actual.AsSpan(r * rowBytes, rowBytes), importance);
        }
        ByteIdentity.AssertSameBytes(type, label, expected, actual, rowLength);

        var expectedFloats = ReferenceDequantize(type, expected, data.Length);
        var actualFloats = new float[data.Length];
        for (var r = 0; r < rows; r++)
        {
            codec.Dequantize(expected.AsSpan(r * rowBytes, rowBytes), actualFloats.AsSpan(r * rowLength, rowLength));
        }
        ByteIdentity.AssertSameFloatBits(type, label, expectedFloats, actualFloats, rowLength);
    }

    [SkippableTheory]
    [MemberData(nameof(Variants))]
    public void DequantizeOfArbitraryBytesMatchesGgml(GgmlType type, bool vectorized, bool withImportance)
    {
        GgmlReference.Require();
        Skip.If(withImportance, "dequantization has no importance variant");
        var codec = CodecVariants.Create(type, vectorized);
        var traits = GgmlTypeTraits.Of(type);
        const int Blocks = 4096;
        var bytes = new byte[Blocks * traits.BytesPerBlock];
        new Random(1234).NextBytes(bytes);
        var count = Blocks * traits.BlockSize;
        var expected = ReferenceDequantize(type, bytes, count);
        var actual = new float[count];
        codec.Dequantize(bytes, actual);
        ByteIdentity.AssertSameFloatBits(type, $"{CodecVariants.PathName(vectorized)} random bytes", expected, actual, count);
    }

    /// <summary>ggml's to_float; F32 has none in ggml's type table (its rows are the floats themselves).</summary>
    public static float[] ReferenceDequantize(GgmlType type, byte[] bytes, int count) =>
        type == GgmlType.F32 ? MemoryMarshal.Cast<byte, float>(bytes).ToArray() : GgmlReference.Dequantize(type, bytes, count);
}
