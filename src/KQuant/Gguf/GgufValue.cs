using System.Globalization;
using System.Text;
using System.Text.Unicode;

namespace KQuant.Gguf;

/// <summary>One immutable GGUF metadata value: a scalar, a string or an array (<see cref="GgufArray"/>).</summary>
/// <remarks>A string that was not valid UTF-8 in the file reads as text with U+FFFD replacements, but its original bytes
/// are kept and written back unchanged, so a rewrite is byte-identical.</remarks>
public sealed class GgufValue
{
    // Scalars keep their payload in 64 bits: integers sign- or zero-extended, floats as IEEE bits, bools as 0/1.
    private readonly ulong _bits;
    private readonly object? _object; // string or GgufArray
    private readonly byte[]? _invalidUtf8;

    private GgufValue(GgufValueType type, ulong bits, object? obj = null, byte[]? invalidUtf8 = null)
    {
        Type = type;
        _bits = bits;
        _object = obj;
        _invalidUtf8 = invalidUtf8;
    }

    public GgufValueType Type { get; }

    public bool IsInteger => GgufValueTypes.IsInteger(Type);

    public static GgufValue FromUInt8(byte value) => new(GgufValueType.UInt8, value);
    public static GgufValue FromInt8(sbyte value) => new(GgufValueType.Int8, (ulong)value);
    public static GgufValue FromUInt16(ushort value) => new(GgufValueType.UInt16, value);
    public static GgufValue FromInt16(short value) => new(GgufValueType.Int16, (ulong)value);
    public static GgufValue FromUInt32(uint value) => new(GgufValueType.UInt32, value);
    public static GgufValue FromInt32(int value) => new(GgufValueType.Int32, (ulong)value);
    public static GgufValue FromUInt64(ulong value) => new(GgufValueType.UInt64, value);
    public static GgufValue FromInt64(long value) => new(GgufValueType.Int64, (ulong)value);
    public static GgufValue FromFloat32(float value) => new(GgufValueType.Float32, BitConverter.SingleToUInt32Bits(value));
    public static GgufValue FromFloat64(double value) => new(GgufValueType.Float64, BitConverter.DoubleToUInt64Bits(value));
    public static GgufValue FromBool(bool value) => new(GgufValueType.Bool, value ? 1UL : 0UL);

    public static GgufValue FromString(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        return new(GgufValueType.String, 0, value);
    }

    public static GgufValue FromArray(GgufArray array)
    {
        ArgumentNullException.ThrowIfNull(array);
        return new(GgufValueType.Array, 0, array);
    }

    /// <summary>An array of <paramref name="elementType"/>; every item must have that type.</summary>
    public static GgufValue FromArray(GgufValueType elementType, IEnumerable<GgufValue> items) =>
        FromArray(GgufArray.Create(elementType, items));

    /// <summary>A numeric or bool array; the element type follows from <typeparamref name="T"/> (float: Float32, int: Int32, ...).</summary>
    public static GgufValue FromArray<T>(ReadOnlySpan<T> items) where T : unmanaged => FromArray(GgufArray.Create(items));

    public static GgufValue FromStrings(IEnumerable<string> items) => FromArray(GgufArray.FromStrings(items));

    /// <summary>Decodes file bytes; keeps them verbatim when they are not valid UTF-8.</summary>
    internal static GgufValue FromUtf8(ReadOnlySpan<byte> utf8) =>
        new(GgufValueType.String, 0, Encoding.UTF8.GetString(utf8), Utf8.IsValid(utf8) ? null : utf8.ToArray());

    /// <summary>A scalar of a fixed-size type from its 64-bit payload (see <see cref="GgufValueTypes.ReadScalarBits"/>).</summary>
    internal static GgufValue FromScalarBits(GgufValueType type, ulong bits) => new(type, bits);

    /// <summary>The original bytes of a string that was not valid UTF-8, or null.</summary>
    internal byte[]? InvalidUtf8 => _invalidUtf8;

    internal ulong ScalarBits => _bits;

    public string AsString() => _object as string ?? throw WrongType("a string");

    public GgufArray AsArray() => _object as GgufArray ?? throw WrongType("an array");

    public bool AsBool() => Type == GgufValueType.Bool ? _bits != 0 : throw WrongType("a bool");

    /// <summary>Any integer type whose value fits in a long.</summary>
    public long AsInt64()
    {
        if (!IsInteger) throw WrongType("an integer");
        if (Type == GgufValueType.UInt64 && _bits > long.MaxValue) throw OutOfRange("long");
        return (long)_bits;
    }

    /// <summary>Any integer type whose value is not negative.</summary>
    public ulong AsUInt64()
    {
        if (!IsInteger) throw WrongType("an integer");
        if (GgufValueTypes.IsSigned(Type) && (long)_bits < 0) throw OutOfRange("ulong");
        return _bits;
    }

    /// <summary>Any integer type whose value fits in an int.</summary>
    public int AsInt32()
    {
        var v = AsInt64();
        return v is >= int.MinValue and <= int.MaxValue ? (int)v : throw OutOfRange("int");
    }

    /// <summary>Any integer type whose value fits in a uint.</summary>
    public uint AsUInt32()
    {
        var v = AsUInt64();
        return v <= uint.MaxValue ? (uint)v : throw OutOfRange("uint");
    }

    /// <summary>Any numeric type, converted to double.</summary>
    public double AsDouble() => Type switch
    {
        GgufValueType.Float32 => BitConverter.UInt32BitsToSingle((uint)_bits),
        GgufValueType.Float64 => BitConverter.UInt64BitsToDouble(_bits),
        GgufValueType.UInt64 => _bits,
        _ when IsInteger => (long)_bits,
        _ => throw WrongType("a number"),
    };

    /// <summary>Any numeric type, converted to float.</summary>
    public float AsSingle() => Type == GgufValueType.Float32 ? BitConverter.UInt32BitsToSingle((uint)_bits) : (float)AsDouble();

    /// <summary>The value for display: numbers in invariant culture, strings as they are, arrays summarized.</summary>
    public override string ToString() => Display(quoteStrings: false);

    internal string Display(bool quoteStrings) => Type switch
    {
        GgufValueType.String when quoteStrings => Quote((string)_object!),
        GgufValueType.String => (string)_object!,
        GgufValueType.Array => _object!.ToString()!,
        GgufValueType.Bool => _bits != 0 ? "true" : "false",
        GgufValueType.Float32 => BitConverter.UInt32BitsToSingle((uint)_bits).ToString(CultureInfo.InvariantCulture),
        GgufValueType.Float64 => BitConverter.UInt64BitsToDouble(_bits).ToString(CultureInfo.InvariantCulture),
        GgufValueType.UInt64 => _bits.ToString(CultureInfo.InvariantCulture),
        _ => ((long)_bits).ToString(CultureInfo.InvariantCulture),
    };

    private static string Quote(string s)
    {
        var sb = new StringBuilder(s.Length + 2).Append('"');
        foreach (var c in s)
        {
            _ = c switch
            {
                '"' => sb.Append("\\\""),
                '\\' => sb.Append("\\\\"),
                '\n' => sb.Append("\\n"),
                '\r' => sb.Append("\\r"),
                '\t' => sb.Append("\\t"),
                _ when char.IsControl(c) => sb.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}"),
                _ => sb.Append(c),
            };
        }
        return sb.Append('"').ToString();
    }

    private InvalidOperationException WrongType(string expected) =>
        new($"the value is {GgufValueTypes.Name(Type)}, not {expected}");

    private InvalidOperationException OutOfRange(string target) =>
        new($"the {GgufValueTypes.Name(Type)} value {Display(false)} does not fit in {target}");
}
