using System.Buffers.Binary;
using System.Text;
using KQuant.Gguf;

namespace KQuant.Tests.Gguf;

/// <summary>Builds GGUF bytes field by field, so tests can make files that are malformed in exactly one place.
/// <see cref="Mark"/> records the offset of a field under a name the tests refer to.</summary>
internal sealed class GgufImage
{
    private readonly MemoryStream _bytes = new();

    public Dictionary<string, long> Marks { get; } = [];

    public long Length => _bytes.Length;

    public GgufImage Mark(string name)
    {
        Marks[name] = _bytes.Position;
        return this;
    }

    public GgufImage Raw(ReadOnlySpan<byte> bytes)
    {
        _bytes.Write(bytes);
        return this;
    }

    public GgufImage U8(byte v) => Raw([v]);

    public GgufImage U32(uint v)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, v);
        return Raw(b);
    }

    public GgufImage U64(ulong v)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, v);
        return Raw(b);
    }

    public GgufImage I64(long v) => U64((ulong)v);

    public GgufImage Str(string s) => Str(Encoding.UTF8.GetBytes(s));

    public GgufImage Str(byte[] utf8) => U64((ulong)utf8.Length).Raw(utf8);

    public GgufImage Header(uint version, long tensors, long entries) =>
        Raw("GGUF"u8).Mark("version").U32(version).Mark("n_tensors").I64(tensors).Mark("n_kv").I64(entries);

    /// <summary>A metadata entry; marks "key", "key.type" and "key.value".</summary>
    public GgufImage KvString(string key, string value) =>
        Mark(key).Str(key).Mark(key + ".type").U32((uint)GgufValueType.String).Mark(key + ".value").Str(value);

    public GgufImage KvU32(string key, uint value) =>
        Mark(key).Str(key).Mark(key + ".type").U32((uint)GgufValueType.UInt32).Mark(key + ".value").U32(value);

    /// <summary>A tensor directory entry; marks "name", "name.ndims", "name.dim0" etc., "name.type" and "name.offset".</summary>
    public GgufImage Tensor(string name, GgmlType type, long offset, params long[] shape)
    {
        Mark(name).Str(name).Mark(name + ".ndims").U32((uint)shape.Length);
        for (var d = 0; d < shape.Length; d++) Mark($"{name}.dim{d}").I64(shape[d]);
        return Mark(name + ".type").U32((uint)type).Mark(name + ".offset").I64(offset);
    }

    public GgufImage PadTo(int alignment)
    {
        while (_bytes.Length % alignment != 0) U8(0);
        return this;
    }

    /// <summary>Deterministic non-zero filler for tensor data.</summary>
    public GgufImage Data(int count)
    {
        for (var i = 0; i < count; i++) U8((byte)(i * 7 + 1));
        return this;
    }

    public byte[] ToArray() => _bytes.ToArray();

    /// <summary>A small valid file: three metadata entries (a string, general.alignment, a string array) and two
    /// tensors, "a" F32 [32, 2] (256 bytes) at 0 and "b" Q8_0 [64] (68 bytes) at 256, each padded to 32.</summary>
    public static GgufImage Valid()
    {
        var image = new GgufImage().Header(3, 2, 3)
            .KvString("general.architecture", "llama")
            .KvU32("general.alignment", 32)
            .Mark("test.tokens").Str("test.tokens").U32((uint)GgufValueType.Array).Mark("test.tokens.type").U32((uint)GgufValueType.String)
            .Mark("test.tokens.count").U64(3).Str("a").Str("bc").Str("")
            .Tensor("a", GgmlType.F32, 0, 32, 2)
            .Tensor("b", GgmlType.Q8_0, 256, 64)
            .Mark("directory.end").PadTo(32).Mark("data")
            .Data(256).Data(68).Mark("b.end").PadTo(32);
        return image;
    }
}
