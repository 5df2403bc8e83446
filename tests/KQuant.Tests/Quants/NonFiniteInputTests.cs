using KQuant.Gguf;
using KQuant.Quants;

namespace KQuant.Tests.Quants;

public class NonFiniteInputTests
{
    public static TheoryData<GgmlType, float> Cases()
    {
        var data = new TheoryData<GgmlType, float>();
        foreach (var type in RowCodecs.Supported)
        {
            data.Add(type, float.NaN);
            data.Add(type, float.PositiveInfinity);
            data.Add(type, float.NegativeInfinity);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void NonFiniteValueIsReportedWithItsRow(GgmlType type, float bad)
    {
        const int rowLength = 512;
        var data = TestRows.Make("gaussian", 4, rowLength, 3);
        data[2 * rowLength + 300] = bad;
        data[3 * rowLength + 511] = bad; // a later row's last column, after the vector loops (only the first is reported)
        var destination = new byte[GgmlTypeTraits.Of(type).RowBytes(rowLength) * 4];
        foreach (var threads in new[] { 1, 2 })
        {
            var error = Assert.Throws<NonFiniteInputException>(() => RowQuantizer.Quantize(type, data, destination, rowLength, threads: threads));
            Assert.Equal(2, error.Row);
            Assert.Equal(300, error.Column);
            Assert.Contains("row 2", error.Message);
        }
    }

    /// <summary>F32 checks while it copies (vector body and scalar tail); both parts must catch a bad value.</summary>
    [Theory]
    [InlineData(3)]
    [InlineData(36)]
    public void F32CopyFindsNonFiniteInBodyAndTail(int column)
    {
        const int rowLength = 37;
        var data = TestRows.Make("gaussian", 2, rowLength, 5);
        data[rowLength + column] = float.NaN;
        var destination = new byte[GgmlTypeTraits.Of(GgmlType.F32).RowBytes(rowLength) * 2];
        var error = Assert.Throws<NonFiniteInputException>(() => RowQuantizer.Quantize(GgmlType.F32, data, destination, rowLength));
        Assert.Equal((1, column), (error.Row, error.Column));
    }
}
