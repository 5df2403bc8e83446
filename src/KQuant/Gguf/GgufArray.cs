using System.Collections;
using System.Collections.ObjectModel;
using System.Text;

namespace KQuant.Gguf;

/// <summary>An immutable GGUF array. Elements are stored compactly, since tokenizer arrays hold 150k+ entries: numbers
/// and bools in one typed CLR array (byte[] for UInt8, float[] for Float32, ...), strings as their UTF-8 bytes back to
/// back (decoded on request; bytes that are not valid UTF-8 are written back unchanged), nested arrays as GgufArray[].
/// The indexer wraps one element as a <see cref="GgufValue"/>; bulk readers use <see cref="AsSpan{T}"/>,
/// <see cref="AsStrings"/> or <see cref="GetUtf8"/>.</summary>
public sealed class GgufArray : IReadOnlyList<GgufValue>
{
    private const int DisplayedItems = 8;

    private readonly Array? _items;            // every element type but String
    private readonly Utf8StringList? _strings; // String

    private GgufArray(GgufValueType elementType, Array items)
    {
        ElementType = elementType;
        _items = items;
    }

    private GgufArray(Utf8StringList strings)
    {
        ElementType = GgufValueType.String;
        _strings = strings;
    }

    public GgufValueType ElementType { get; }

    public int Count => _strings?.Count ?? _items!.Length;

    public GgufValue this[int index]
    {
        get
        {
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)index, (uint)Count, nameof(index));
            // Dispatch on ElementType, not on the array's runtime type: the CLR lets short[] pass as ushort[] (and int[]
            // as uint[], ...), so a type test would misread signed elements.
            return ElementType switch
            {
                GgufValueType.String => GgufValue.FromUtf8(_strings![index]),
                GgufValueType.Array => GgufValue.FromArray(((GgufArray[])Items)[index]),
                GgufValueType.Bool => GgufValue.FromBool(((bool[])Items)[index]),
                GgufValueType.Float32 => GgufValue.FromFloat32(((float[])Items)[index]),
                GgufValueType.Float64 => GgufValue.FromFloat64(((double[])Items)[index]),
                _ => GgufValue.FromScalarBits(ElementType, IntegerBits(index)),
            };
        }
    }

    /// <summary>The elements as a span of their CLR type: byte, sbyte, ushort, short, uint, int, float, bool, ulong, long or double.</summary>
    public ReadOnlySpan<T> AsSpan<T>() where T : unmanaged =>
        ElementType is not (GgufValueType.String or GgufValueType.Array) && ElementTypeOf<T>() == ElementType
            ? (T[])_items!
            : throw new InvalidOperationException($"the array holds {GgufValueTypes.Name(ElementType)}, not {typeof(T).Name}");

    /// <summary>The strings, decoded (once, then cached) with U+FFFD for bytes that are not valid UTF-8.</summary>
    public IReadOnlyList<string> AsStrings() => new ReadOnlyCollection<string>(Strings.DecodeAll());

    /// <summary>The UTF-8 bytes of string element <paramref name="index"/>, as stored in the file.</summary>
    public ReadOnlySpan<byte> GetUtf8(int index)
    {
        var strings = Strings;
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)index, (uint)strings.Count, nameof(index));
        return strings[index];
    }

    public IReadOnlyList<GgufArray> AsArrays() =>
        _items is GgufArray[] a ? new ReadOnlyCollection<GgufArray>(a) : throw new InvalidOperationException($"the array holds {GgufValueTypes.Name(ElementType)}, not arrays");

    /// <summary>A numeric or bool array; the element type follows from <typeparamref name="T"/>.</summary>
    public static GgufArray Create<T>(ReadOnlySpan<T> items) where T : unmanaged => new(ElementTypeOf<T>(), items.ToArray());

    public static GgufArray FromStrings(IEnumerable<string> items)
    {
        var array = items.ToArray();
        if (Array.IndexOf(array, null) >= 0) throw new ArgumentException("a string element is null", nameof(items));
        return new(Utf8StringList.Create(array, Encoding.UTF8.GetBytes));
    }

    public static GgufArray FromArrays(IEnumerable<GgufArray> items)
    {
        var array = items.ToArray();
        if (Array.IndexOf(array, null) >= 0) throw new ArgumentException("an array element is null", nameof(items));
        return new(GgufValueType.Array, array);
    }

    /// <summary>An array of <paramref name="elementType"/> from values that all have that type.</summary>
    public static GgufArray Create(GgufValueType elementType, IEnumerable<GgufValue> items)
    {
        var values = items.ToArray();
        foreach (var v in values)
        {
            if (v is null || v.Type != elementType)
                throw new ArgumentException($"an element is {(v is null ? "null" : GgufValueTypes.Name(v.Type))}, expected {GgufValueTypes.Name(elementType)}", nameof(items));
        }
        if (elementType == GgufValueType.String)
            return new(Utf8StringList.Create(values, v => v.InvalidUtf8 ?? Encoding.UTF8.GetBytes(v.AsString())));
        Array typed = elementType switch
        {
            GgufValueType.UInt8 => values.Select(v => (byte)v.ScalarBits).ToArray(),
            GgufValueType.Int8 => values.Select(v => (sbyte)v.ScalarBits).ToArray(),
            GgufValueType.UInt16 => values.Select(v => (ushort)v.ScalarBits).ToArray(),
            GgufValueType.Int16 => values.Select(v => (short)v.ScalarBits).ToArray(),
            GgufValueType.UInt32 => values.Select(v => (uint)v.ScalarBits).ToArray(),
            GgufValueType.Int32 => values.Select(v => (int)v.ScalarBits).ToArray(),
            GgufValueType.UInt64 => values.Select(v => v.ScalarBits).ToArray(),
            GgufValueType.Int64 => values.Select(v => (long)v.ScalarBits).ToArray(),
            GgufValueType.Float32 => values.Select(v => v.AsSingle()).ToArray(),
            GgufValueType.Float64 => values.Select(v => v.AsDouble()).ToArray(),
            GgufValueType.Bool => values.Select(v => v.AsBool()).ToArray(),
            GgufValueType.Array => values.Select(v => v.AsArray()).ToArray(),
            _ => throw new ArgumentOutOfRangeException(nameof(elementType), elementType, "not a GGUF value type"),
        };
        return new(elementType, typed);
    }

    /// <summary>Takes ownership of storage the reader built (no copy).</summary>
    internal static GgufArray Wrap(GgufValueType elementType, Array items) => new(elementType, items);

    internal static GgufArray Wrap(Utf8StringList strings) => new(strings);

    /// <summary>The typed storage of every element type but String, for the writer.</summary>
    internal Array Items => _items ?? throw new InvalidOperationException("a string array has no typed storage");

    /// <summary>The storage of a String array.</summary>
    internal Utf8StringList Strings =>
        _strings ?? throw new InvalidOperationException($"the array holds {GgufValueTypes.Name(ElementType)}, not strings");

    internal static GgufValueType ElementTypeOf<T>() where T : unmanaged =>
        typeof(T) == typeof(byte) ? GgufValueType.UInt8
        : typeof(T) == typeof(sbyte) ? GgufValueType.Int8
        : typeof(T) == typeof(ushort) ? GgufValueType.UInt16
        : typeof(T) == typeof(short) ? GgufValueType.Int16
        : typeof(T) == typeof(uint) ? GgufValueType.UInt32
        : typeof(T) == typeof(int) ? GgufValueType.Int32
        : typeof(T) == typeof(ulong) ? GgufValueType.UInt64
        : typeof(T) == typeof(long) ? GgufValueType.Int64
        : typeof(T) == typeof(float) ? GgufValueType.Float32
        : typeof(T) == typeof(double) ? GgufValueType.Float64
        : typeof(T) == typeof(bool) ? GgufValueType.Bool
        : throw new NotSupportedException($"{typeof(T).Name} is not a GGUF array element type");

    private ulong IntegerBits(int index) => ElementType switch
    {
        GgufValueType.UInt8 => ((byte[])Items)[index],
        GgufValueType.Int8 => (ulong)((sbyte[])Items)[index],
        GgufValueType.UInt16 => ((ushort[])Items)[index],
        GgufValueType.Int16 => (ulong)((short[])Items)[index],
        GgufValueType.UInt32 => ((uint[])Items)[index],
        GgufValueType.Int32 => (ulong)((int[])Items)[index],
        GgufValueType.UInt64 => ((ulong[])Items)[index],
        GgufValueType.Int64 => (ulong)((long[])Items)[index],
        _ => throw new InvalidOperationException($"{GgufValueTypes.Name(ElementType)} is not an integer type"),
    };

    public IEnumerator<GgufValue> GetEnumerator()
    {
        for (var i = 0; i < Count; i++) yield return this[i];
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Element type, count and the first few elements, e.g. <c>[str × 32000: "&lt;unk&gt;", "&lt;s&gt;", …]</c>.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder().Append('[').Append(GgufValueTypes.Name(ElementType)).Append(" × ").Append(Count);
        for (var i = 0; i < Math.Min(Count, DisplayedItems); i++)
        {
            sb.Append(i == 0 ? ": " : ", ").Append(this[i].Display(quoteStrings: true));
        }
        if (Count > DisplayedItems) sb.Append(", …");
        return sb.Append(']').ToString();
    }
}
