using KQuant.Gguf;

namespace KQuant.Tests.Gguf;

public class GgufValueTests
{
    [Fact]
    public void IntegerAccessorsAcceptAnyIntegerTypeInRange()
    {
        Assert.Equal(-5L, GgufValue.FromInt8(-5).AsInt64());
        Assert.Equal(200L, GgufValue.FromUInt8(200).AsInt64());
        Assert.Equal(65535u, GgufValue.FromUInt16(65535).AsUInt32());
        Assert.Equal(-3, GgufValue.FromInt64(-3).AsInt32());
        Assert.Equal(7u, GgufValue.FromInt32(7).AsUInt32());
        Assert.Equal(ulong.MaxValue, GgufValue.FromUInt64(ulong.MaxValue).AsUInt64());
        Assert.Equal(-1.0, GgufValue.FromInt16(-1).AsDouble());

        Assert.Throws<InvalidOperationException>(() => GgufValue.FromUInt64(ulong.MaxValue).AsInt64());
        Assert.Throws<InvalidOperationException>(() => GgufValue.FromInt32(-1).AsUInt32());
        Assert.Throws<InvalidOperationException>(() => GgufValue.FromInt64(1L << 40).AsInt32());
        Assert.Throws<InvalidOperationException>(() => GgufValue.FromFloat32(1).AsInt64());
        var e = Assert.Throws<InvalidOperationException>(() => GgufValue.FromString("x").AsUInt32());
        Assert.Equal("the value is str, not an integer", e.Message);
    }

    [Fact]
    public void OtherAccessorsCheckTheType()
    {
        Assert.Equal(0.5f, GgufValue.FromFloat32(0.5f).AsSingle());
        Assert.Equal(0.25, GgufValue.FromFloat64(0.25).AsDouble());
        Assert.True(GgufValue.FromBool(true).AsBool());
        Assert.Equal("hé", GgufValue.FromString("hé").AsString());
        Assert.Throws<InvalidOperationException>(() => GgufValue.FromUInt8(1).AsBool());
        Assert.Throws<InvalidOperationException>(() => GgufValue.FromBool(true).AsString());
        Assert.Throws<InvalidOperationException>(() => GgufValue.FromString("x").AsArray());
        Assert.Throws<InvalidOperationException>(() => GgufValue.FromString("x").AsDouble());
    }

    [Fact]
    public void ArraysStoreTypedElements()
    {
        var floats = GgufValue.FromArray<float>([1.5f, -2f]);
        Assert.Equal(GgufValueType.Array, floats.Type);
        var array = floats.AsArray();
        Assert.Equal(GgufValueType.Float32, array.ElementType);
        Assert.Equal(2, array.Count);
        Assert.Equal([1.5f, -2f], array.AsSpan<float>().ToArray());
        Assert.Equal(-2f, array[1].AsSingle());
        Assert.Throws<InvalidOperationException>(() => array.AsSpan<int>());
        Assert.Throws<InvalidOperationException>(() => GgufArray.Create<int>([1]).AsSpan<uint>()); // the CLR would allow the cast
        Assert.Throws<InvalidOperationException>(() => array.AsStrings());
        Assert.Throws<ArgumentOutOfRangeException>(() => array[2]);

        var ints = GgufArray.Create(GgufValueType.Int16, [GgufValue.FromInt16(-1), GgufValue.FromInt16(2)]);
        Assert.Equal([(short)-1, (short)2], ints.AsSpan<short>().ToArray());
        Assert.Equal(-1L, ints[0].AsInt64());
        Assert.Throws<ArgumentException>(() => GgufArray.Create(GgufValueType.Int16, [GgufValue.FromInt32(1)]));

        var strings = GgufValue.FromStrings(["a", "b"]).AsArray();
        Assert.Equal(["a", "b"], strings.AsStrings());
        Assert.Equal("b", strings[1].AsString());

        var nested = GgufArray.FromArrays([ints, strings]);
        Assert.Equal(GgufValueType.Array, nested.ElementType);
        Assert.Same(strings, nested.AsArrays()[1]);
        Assert.Equal(2, nested.Count(v => v.Type == GgufValueType.Array));
    }

    [Fact]
    public void DisplayIsInvariantAndSummarizesArrays()
    {
        Assert.Equal("1.5", GgufValue.FromFloat32(1.5f).ToString());
        Assert.Equal("-7", GgufValue.FromInt64(-7).ToString());
        Assert.Equal("18446744073709551615", GgufValue.FromUInt64(ulong.MaxValue).ToString());
        Assert.Equal("true", GgufValue.FromBool(true).ToString());
        Assert.Equal("plain \"text\"", GgufValue.FromString("plain \"text\"").ToString());
        Assert.Equal("[u8 × 3: 1, 2, 3]", GgufValue.FromArray<byte>([1, 2, 3]).ToString());
        Assert.Equal("[str × 2: \"a\\n\", \"\\\"\"]", GgufValue.FromStrings(["a\n", "\""]).ToString());
        Assert.Equal("[i32 × 10: 0, 1, 2, 3, 4, 5, 6, 7, …]", GgufValue.FromArray<int>(Enumerable.Range(0, 10).ToArray()).ToString());
        Assert.Equal("[arr × 1: [bool × 1: false]]", GgufValue.FromArray(GgufArray.FromArrays([GgufArray.Create<bool>([false])])).ToString());
    }

    [Fact]
    public void MetadataSetKeepsThePositionAndRemoveReindexes()
    {
        var m = new GgufMetadata();
        m.Set("a", GgufValue.FromUInt32(1));
        m.Set("b", GgufValue.FromUInt32(2));
        m.Set("c", GgufValue.FromUInt32(3));
        m.Set("a", GgufValue.FromString("one"));
        Assert.Equal(["a", "b", "c"], m.Select(e => e.Key));
        Assert.Equal("one", m.GetString("a"));

        Assert.True(m.Remove("b"));
        Assert.False(m.Remove("b"));
        Assert.Equal(["a", "c"], m.Select(e => e.Key));
        Assert.Equal(1, m.IndexOf("c"));
        Assert.Equal(3u, m.GetUInt32("c"));
        m["d"] = GgufValue.FromBool(true);
        Assert.Equal(2, m.IndexOf("d"));
        Assert.Throws<KeyNotFoundException>(() => m["zz"]);
        Assert.Throws<ArgumentException>(() => m.Add("a", GgufValue.FromUInt32(0)));
        Assert.Throws<ArgumentException>(() => new GgufMetadata([new("k", GgufValue.FromUInt8(1)), new("k", GgufValue.FromUInt8(2))]));
        Assert.Throws<ArgumentException>(() => m.Set("", GgufValue.FromUInt8(1)));
    }

    [Fact]
    public void MetadataAlignmentMustBeAUInt32PowerOfTwo()
    {
        var m = new GgufMetadata();
        Assert.Equal(32u, m.Alignment);
        m.Set(GgufMetadata.AlignmentKey, GgufValue.FromUInt32(64));
        Assert.Equal(64u, m.Alignment);
        Assert.Throws<ArgumentException>(() => m.Set(GgufMetadata.AlignmentKey, GgufValue.FromUInt32(48)));
        Assert.Throws<ArgumentException>(() => m.Set(GgufMetadata.AlignmentKey, GgufValue.FromUInt32(0)));
        Assert.Throws<ArgumentException>(() => m.Set(GgufMetadata.AlignmentKey, GgufValue.FromUInt64(64)));
    }

    [Fact]
    public void TensorInfoValidatesItsShape()
    {
        var t = new GgufTensorInfo("w", GgmlType.Q4_K, [512, 3, 2]);
        Assert.Equal(3072, t.ElementCount);
        Assert.Equal(6, t.RowCount);
        Assert.Equal(12 * 144, t.ByteSize);
        Assert.Equal(GgmlType.Q8_0, t.WithType(GgmlType.Q8_0).Type);
        Assert.Equal(6 * 16 * 34, t.WithType(GgmlType.Q8_0).ByteSize);

        Assert.Throws<ArgumentException>(() => new GgufTensorInfo("w", GgmlType.Q4_K, [128]));
        Assert.Throws<ArgumentException>(() => new GgufTensorInfo("w", GgmlType.F32, []));
        Assert.Throws<ArgumentException>(() => new GgufTensorInfo("w", GgmlType.F32, [1, 1, 1, 1, 1]));
        Assert.Throws<ArgumentException>(() => new GgufTensorInfo("w", GgmlType.F32, [4, 0]));
        Assert.Throws<ArgumentException>(() => new GgufTensorInfo("", GgmlType.F32, [4]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GgufTensorInfo("w", (GgmlType)4, [4]));
    }
}
