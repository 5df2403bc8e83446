using KQuant.Gguf;
using KQuant.Quants;

namespace KQuant.Tests.Quants;

public class NonFiniteInputTests
{
    public static TheoryData<GgmlType, float> Cases()
    {
        var data = new TheoryData<GgmlType, float>();
        foreach (var type in new[] { GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.Q8_K })
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
        var destination = new byte[GgmlTypeTraits.Of(type).RowBytes(rowLength) * 4];
        foreach (var threads in new[] { 1, 2 })
        {
            var error = Assert.Throws<NonFiniteInputException>(() => RowQuantizer.Quantize(type, data, destination, rowLength, threads: threads));
            Assert.Equal(2, error.Row);
            Assert.Equal(300, error.Column);
            Assert.Contains("row 2", error.Message);
        }
    }
}
