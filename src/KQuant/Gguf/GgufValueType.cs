namespace KQuant.Gguf;

/// <summary>Metadata value types, numbered as GGUF stores them (enum gguf_type in gguf.h). The values must never change.</summary>
public enum GgufValueType : uint
{
    UInt8 = 0,
    Int8 = 1,
    UInt16 = 2,
    Int16 = 3,
    UInt32 = 4,
    Int32 = 5,
    Float32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    UInt64 = 10,
    Int64 = 11,
    Float64 = 12,
}

/// <summary>Encoding facts about <see cref="GgufValueType"/>, shared by the reader and the writer.</summary>
internal static class GgufValueTypes
{
    public static bool IsDefined(uint id) => id <= (uint)GgufValueType.Float64;

    /// <summary>Bytes of one encoded value of a fixed-size type; 0 for String and Array.</summary>
    public static int FixedSize(GgufValueType type) => type switch
    {
        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
        GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
        _ => 0,
    };

    /// <summary>The fewest bytes one encoded value can take: a string is at least its 8-byte length, an array at least
    /// its element type and count. The reader bounds counts with it before allocating.</summary>
    public static int MinEncodedSize(GgufValueType type) => type switch
    {
        GgufValueType.String => 8,
        GgufValueType.Array => 12,
        _ => FixedSize(type),
    };

    public static bool IsInteger(GgufValueType type) => type is GgufValueType.UInt8 or GgufValueType.Int8
        or GgufValueType.UInt16 or GgufValueType.Int16 or GgufValueType.UInt32 or GgufValueType.Int32
        or GgufValueType.UInt64 or GgufValueType.Int64;

    public static bool IsSigned(GgufValueType type) => type is GgufValueType.Int8 or GgufValueType.Int16
        or GgufValueType.Int32 or GgufValueType.Int64;

    /// <summary>Short lower-case names, as ggml's gguf_type_name prints them.</summary>
    public static string Name(GgufValueType type) => type switch
    {
        GgufValueType.UInt8 => "u8",
        GgufValueType.Int8 => "i8",
        GgufValueType.UInt16 => "u16",
        GgufValueType.Int16 => "i16",
        GgufValueType.UInt32 => "u32",
        GgufValueType.Int32 => "i32",
        GgufValueType.Float32 => "f32",
        GgufValueType.Bool => "bool",
        GgufValueType.String => "str",
        GgufValueType.Array => "arr",
        GgufValueType.UInt64 => "u64",
        GgufValueType.Int64 => "i64",
        GgufValueType.Float64 => "f64",
        _ => $"type {(uint)type}",
    };

    /// <summary>Sign- or zero-extends a little-endian fixed-size scalar into the 64-bit payload <see cref="GgufValue"/> keeps.</summary>
    public static ulong ReadScalarBits(GgufValueType type, ReadOnlySpan<byte> bytes) => type switch
    {
        GgufValueType.UInt8 => bytes[0],
        GgufValueType.Int8 => (ulong)(sbyte)bytes[0],
        GgufValueType.Bool => bytes[0] != 0 ? 1UL : 0UL,
        GgufValueType.UInt16 => System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(bytes),
        GgufValueType.Int16 => (ulong)System.Buffers.Binary.BinaryPrimitives.ReadInt16LittleEndian(bytes),
        GgufValueType.UInt32 or GgufValueType.Float32 => System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(bytes),
        GgufValueType.Int32 => (ulong)System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(bytes),
        GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(bytes),
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "not a fixed-size scalar type"),
    };
}
