using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Unicode;

namespace KQuant.Gguf;

/// <summary>What <see cref="GgufHeaderReader"/> found: everything before the tensor data.</summary>
internal sealed record GgufHeader(uint Version, uint Alignment, GgufMetadata Metadata, IReadOnlyList<GgufTensorInfo> Tensors, long DataOffset);

/// <summary>Parses and validates the header, metadata and tensor directory of a GGUF file held in memory (a mapping or
/// an array). Every count and length read from the file is checked against the bytes that remain before anything is
/// allocated for it, and every problem becomes one <see cref="GgufFormatException"/> naming the byte offset.</summary>
/// <remarks>Follows ggml's gguf.cpp (llama.cpp v0.5.0) in what it accepts, with these differences: a dimension must be
/// positive (ggml allows 0); arrays of arrays are read (ggml refuses them), up to <see cref="MaxArrayNesting"/> deep;
/// tensor data may lie in any order as long as each tensor is aligned, inside the file and disjoint from the others
/// (ggml demands the packed order its writer produces); empty tensor names, and keys or tensor names that are not
/// valid UTF-8, are refused; tensor names of 64 bytes or more are accepted (ggml's limit is a C buffer size). String
/// values that are not valid UTF-8 are accepted and kept byte for byte (see <see cref="GgufValue"/>). The metadata must
/// lie within the first 2 GiB of the file.</remarks>
internal ref struct GgufHeaderReader
{
    public const int MaxArrayNesting = 8;

    /// <summary>ggml's GGUF_MAX_ARRAY_ELEMENTS.</summary>
    public const long MaxArrayElements = 1L << 30;

    /// <summary>Longest string value accepted: far beyond any real chat template, and small enough to decode into a .NET string.</summary>
    public const int MaxStringBytes = 256 << 20;

    public const uint MinVersion = 2;
    public const uint MaxVersion = 3;

    // The fewest bytes one metadata entry and one tensor directory entry can take; they bound the counts in the header.
    private const int MinMetadataEntryBytes = 8 + 1 + 4 + 1;     // key length, 1-byte key, value type, 1-byte value
    private const int MinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8; // name length, 1-byte name, n_dims, one dimension, type, offset

    private readonly ReadOnlySpan<byte> _data; // the whole file, or its first 2 GiB
    private readonly long _fileLength;
    private readonly string _path;
    private int _pos;

    private GgufHeaderReader(ReadOnlySpan<byte> data, long fileLength, string path)
    {
        _data = data;
        _fileLength = fileLength;
        _path = path;
    }

    public static GgufHeader Read(ReadOnlySpan<byte> data, long fileLength, string path) =>
        new GgufHeaderReader(data, fileLength, path).ReadHeader();

    private readonly int Remaining => _data.Length - _pos;

    private GgufHeader ReadHeader()
    {
        var magic = Take(4, "the magic 'GGUF'");
        if (!magic.SequenceEqual("GGUF"u8)) throw Fail(0, $"expected the magic 'GGUF', found {Printable(magic)}: not a GGUF file");
        var version = ReadUInt32("the version");
        CheckVersion(version);
        var tensorCount = ReadCount("the tensor count", MinTensorInfoBytes);
        var entryCount = ReadCount("the metadata entry count", MinMetadataEntryBytes);

        var metadata = ReadMetadata(entryCount);
        var alignment = metadata.Alignment;
        var (tensors, offsetFields) = ReadTensorDirectory(tensorCount);

        // As ggml's reader computes it: with tensors, data starts at the next multiple of the alignment; without, right
        // after the directory (gguf-py writes tensorless files with no padding).
        long dataOffset = _pos;
        if (tensors.Count > 0)
        {
            dataOffset = (_pos + (long)alignment - 1) / alignment * alignment;
            if (dataOffset > _fileLength)
                throw Fail(_pos, $"expected tensor data from byte {dataOffset} (the directory padded to the alignment {alignment}), but the file ends at byte {_fileLength}");
        }
        CheckLayout(tensors, offsetFields, dataOffset, alignment);
        return new GgufHeader(version, alignment, metadata, tensors, dataOffset);
    }

    private void CheckVersion(uint version)
    {
        const int at = 4;
        if (version == 1)
            throw Fail(at, "GGUF version 1 is not supported: expected version 2 or 3 (convert the model again with a current llama.cpp)");
        if (version != 0 && (version & 0xFFFF) == 0)
            throw Fail(at, $"the version reads as {version} (0x{version:X8}), which is version {BinaryPrimitives.ReverseEndianness(version)} byte-swapped: "
                + "this is a big-endian GGUF file, and only little-endian files are supported");
        if (version is < MinVersion or > MaxVersion)
            throw Fail(at, $"GGUF version {version} is not supported: expected version 2 or 3");
    }

    private long ReadCount(string what, int minBytesEach)
    {
        var at = _pos;
        var count = ReadInt64(what);
        if (count < 0) throw Fail(at, $"{what} is {count}, expected a non-negative number");
        if (count > Remaining / minBytesEach)
            throw Fail(at, $"{what} is {count}, but the remaining {Remaining} bytes can hold at most {Remaining / minBytesEach}");
        return count;
    }

    private GgufMetadata ReadMetadata(long count)
    {
        var metadata = new GgufMetadata();
        for (long i = 0; i < count; i++)
        {
            var at = _pos;
            var key = ReadName($"the key of metadata entry {i}");
            if (metadata.ContainsKey(key)) throw Fail(at, $"duplicate metadata key '{key}'");
            var value = ReadValue(ReadValueType($"the value type of '{key}'"), key);
            if (key == GgufMetadata.AlignmentKey && !GgufMetadata.IsValidAlignment(value))
                throw Fail(at, $"{key} is {GgufValueTypes.Name(value.Type)} {value}, expected a u32 power of two");
            metadata.Add(key, value);
        }
        return metadata;
    }

    private GgufValue ReadValue(GgufValueType type, string key) => type switch
    {
        GgufValueType.Array => GgufValue.FromArray(ReadArray(key, depth: 1)),
        GgufValueType.String => GgufValue.FromUtf8(ReadStringBytes($"the value of '{key}'")),
        _ => GgufValue.FromScalarBits(type, GgufValueTypes.ReadScalarBits(type, Take(GgufValueTypes.FixedSize(type), $"the value of '{key}'"))),
    };

    private GgufArray ReadArray(string key, int depth)
    {
        var typeAt = _pos;
        var elementType = ReadValueType($"the element type of array '{key}'");
        if (elementType == GgufValueType.Array && depth >= MaxArrayNesting)
            throw Fail(typeAt, $"array '{key}' nests arrays more than {MaxArrayNesting} deep");
        var countAt = _pos;
        var count = ReadUInt64($"the element count of array '{key}'");
        var minBytes = GgufValueTypes.MinEncodedSize(elementType);
        if (count > MaxArrayElements || count > (ulong)(Remaining / minBytes))
            throw Fail(countAt, $"array '{key}' claims {count} {GgufValueTypes.Name(elementType)} elements, but the remaining {Remaining} bytes can hold at most {Remaining / minBytes}");
        var n = (int)count;
        var what = $"the elements of array '{key}'";
        switch (elementType)
        {
            case GgufValueType.String:
                return GgufArray.Wrap(ReadStrings(n, what));
            case GgufValueType.Array:
                var arrays = new GgufArray[n];
                for (var i = 0; i < n; i++) arrays[i] = ReadArray(key, depth + 1);
                return GgufArray.Wrap(elementType, arrays);
            case GgufValueType.Bool:
                var bytes = Take(n, what);
                var bools = new bool[n];
                for (var i = 0; i < n; i++) bools[i] = bytes[i] != 0;
                return GgufArray.Wrap(elementType, bools);
            default:
                return GgufArray.Wrap(elementType, ReadNumbers(elementType, n, what));
        }
    }

    /// <summary>Two passes: the first validates every length and sums them, the second copies the bytes into one array
    /// (see <see cref="Utf8StringList"/>).</summary>
    private Utf8StringList ReadStrings(int count, string what)
    {
        var start = _pos;
        long total = 0;
        for (var i = 0; i < count; i++) total += ReadStringBytes(what).Length;
        _pos = start;
        var bytes = new byte[total]; // at most the bytes just walked, so no more than the file holds
        var ends = new int[count];
        var end = 0;
        for (var i = 0; i < count; i++)
        {
            var length = (int)BinaryPrimitives.ReadUInt64LittleEndian(_data.Slice(_pos));
            _data.Slice(_pos + 8, length).CopyTo(bytes.AsSpan(end));
            _pos += 8 + length;
            ends[i] = end += length;
        }
        return new Utf8StringList(bytes, ends);
    }

    private Array ReadNumbers(GgufValueType type, int count, string what) => type switch
    {
        GgufValueType.UInt8 => ReadNumbers<byte>(count, what),
        GgufValueType.Int8 => ReadNumbers<sbyte>(count, what),
        GgufValueType.UInt16 => ReadNumbers<ushort>(count, what),
        GgufValueType.Int16 => ReadNumbers<short>(count, what),
        GgufValueType.UInt32 => ReadNumbers<uint>(count, what),
        GgufValueType.Int32 => ReadNumbers<int>(count, what),
        GgufValueType.Float32 => ReadNumbers<float>(count, what),
        GgufValueType.UInt64 => ReadNumbers<ulong>(count, what),
        GgufValueType.Int64 => ReadNumbers<long>(count, what),
        GgufValueType.Float64 => ReadNumbers<double>(count, what),
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "not a numeric type"),
    };

    // The caller has checked count * size against the remaining bytes, so the product fits in an int.
    private T[] ReadNumbers<T>(int count, string what) where T : unmanaged =>
        MemoryMarshal.Cast<byte, T>(Take(count * Unsafe.SizeOf<T>(), what)).ToArray();

    private (List<GgufTensorInfo> Tensors, List<int> OffsetFields) ReadTensorDirectory(long count)
    {
        var tensors = new List<GgufTensorInfo>();
        var offsetFields = new List<int>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (long i = 0; i < count; i++)
        {
            var at = _pos;
            var name = ReadName($"the name of tensor {i}");
            if (!names.Add(name)) throw Fail(at, $"duplicate tensor name '{name}'");

            var dimsAt = _pos;
            var dims = ReadUInt32($"the dimension count of tensor '{name}'");
            if (dims is 0 or > GgufTensorInfo.MaxDimensions)
                throw Fail(dimsAt, $"tensor '{name}' has {dims} dimensions, expected 1 to {GgufTensorInfo.MaxDimensions}");
            var shapeAt = _pos;
            var shape = new long[dims];
            for (var d = 0; d < shape.Length; d++) shape[d] = ReadInt64($"dimension {d} of tensor '{name}'");

            var typeAt = _pos;
            var typeId = ReadUInt32($"the type of tensor '{name}'");
            if (!GgmlTypeTraits.TryGet(typeId, out var traits))
                throw Fail(typeAt, $"tensor '{name}' has ggml type id {typeId}, which is not a type ggml defines (or one it has removed)");
            if (GgufTensorInfo.CheckShape(traits.Value, shape, out var badDimension, out var elements, out var bytes) is { } problem)
                throw Fail(badDimension >= 0 ? shapeAt + 8L * badDimension : shapeAt, $"tensor '{name}': {problem}");

            var offsetAt = _pos;
            var offset = ReadUInt64($"the data offset of tensor '{name}'");
            if (offset > long.MaxValue) throw Fail(offsetAt, $"tensor '{name}' has data offset {offset}, beyond any file");
            tensors.Add(new GgufTensorInfo(name, traits.Value, shape, elements, bytes, (long)offset));
            offsetFields.Add(offsetAt);
        }
        return (tensors, offsetFields);
    }

    /// <summary>Each tensor's data must be aligned, inside the file and disjoint from every other tensor's.</summary>
    private readonly void CheckLayout(List<GgufTensorInfo> tensors, List<int> offsetFields, long dataOffset, uint alignment)
    {
        var dataLength = _fileLength - dataOffset;
        for (var i = 0; i < tensors.Count; i++)
        {
            var t = tensors[i];
            if (t.Offset % alignment != 0)
                throw Fail(offsetFields[i], $"tensor '{t.Name}' has data offset {t.Offset}, expected a multiple of the alignment {alignment}");
            if (t.Offset > dataLength || t.ByteSize > dataLength - t.Offset)
                throw Fail(offsetFields[i], $"tensor '{t.Name}' needs {t.ByteSize} bytes at data offset {t.Offset}, but the data section (from byte {dataOffset}) holds only {dataLength}");
        }
        var order = Enumerable.Range(0, tensors.Count).OrderBy(i => tensors[i].Offset).ToArray();
        for (var k = 1; k < order.Length; k++)
        {
            var previous = tensors[order[k - 1]];
            var current = tensors[order[k]];
            if (previous.Offset + previous.ByteSize > current.Offset)
                throw Fail(offsetFields[order[k]], $"tensor '{current.Name}' data at offset {current.Offset} overlaps tensor '{previous.Name}' (offsets {previous.Offset} to {previous.Offset + previous.ByteSize})");
        }
    }

    /// <summary>A key or tensor name: non-empty, valid UTF-8.</summary>
    private string ReadName(string what)
    {
        var at = _pos;
        var bytes = ReadStringBytes(what);
        if (bytes.IsEmpty) throw Fail(at, $"{what} is empty");
        if (!Utf8.IsValid(bytes)) throw Fail(at + 8, $"{what} is not valid UTF-8");
        return Encoding.UTF8.GetString(bytes);
    }

    private ReadOnlySpan<byte> ReadStringBytes(string what)
    {
        var at = _pos;
        // Called per element of tokenizer arrays (150k+), so the description of the length field is built only on failure.
        if (Remaining < 8) throw Truncated($"the length of {what}", 8);
        var length = BinaryPrimitives.ReadUInt64LittleEndian(_data.Slice(_pos));
        _pos += 8;
        if (length > (ulong)Remaining)
            throw Fail(at, $"{what} claims {length} bytes, but only {Remaining} remain");
        if (length > MaxStringBytes)
            throw Fail(at, $"{what} is {length} bytes long, more than the {MaxStringBytes} KQuant accepts");
        return Take((int)length, what);
    }

    private GgufValueType ReadValueType(string what)
    {
        var at = _pos;
        var id = ReadUInt32(what);
        return GgufValueTypes.IsDefined(id) ? (GgufValueType)id : throw Fail(at, $"{what} is {id}, expected a GGUF value type (0 to 12)");
    }

    private uint ReadUInt32(string what) => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, what));

    private ulong ReadUInt64(string what) => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, what));

    private long ReadInt64(string what) => BinaryPrimitives.ReadInt64LittleEndian(Take(8, what));

    private ReadOnlySpan<byte> Take(int count, string what)
    {
        if (count > Remaining) throw Truncated(what, count);
        var span = _data.Slice(_pos, count);
        _pos += count;
        return span;
    }

    private readonly GgufFormatException Truncated(string what, int count) => _data.Length < _fileLength
        ? Fail(_pos, $"expected {what}, but the metadata runs past the first 2 GiB of the file, which KQuant does not support")
        : Fail(_pos, $"expected {what} ({count} bytes), but the file ends at byte {_fileLength}");

    private readonly GgufFormatException Fail(long offset, string problem) => new(_path, offset, problem);

    private static string Printable(ReadOnlySpan<byte> bytes)
    {
        var sb = new StringBuilder("'");
        foreach (var b in bytes) sb.Append(b is >= 0x20 and < 0x7F ? (char)b : '?');
        return sb.Append("' (").Append(Convert.ToHexString(bytes)).Append(')').ToString();
    }
}
