using System.Buffers.Binary;
using System.Collections.ObjectModel;
using System.Text.Json;
using KQuant.Gguf;

namespace KQuant.Conversion;

/// <summary>One tensor of a safetensors file: name, element type, shape (in PyTorch order: the last dimension is the
/// contiguous one) and where its bytes lie.</summary>
public sealed class SafetensorsTensor
{
    internal SafetensorsTensor(string name, SafetensorsDtype dtype, long[] shape, long elementCount, long dataOffset, long byteLength, string filePath)
    {
        Name = name;
        Dtype = dtype;
        ShapeArray = shape;
        ElementCount = elementCount;
        DataOffset = dataOffset;
        ByteLength = byteLength;
        FilePath = filePath;
    }

    public string Name { get; }

    public SafetensorsDtype Dtype { get; }

    /// <summary>A copy of the dimensions, outermost first (a weight matrix is [out_features, in_features]).</summary>
    public long[] Shape => (long[])ShapeArray.Clone();

    internal long[] ShapeArray { get; }

    public long ElementCount { get; }

    /// <summary>Offset of the first byte relative to the data section (the byte after the JSON header).</summary>
    public long DataOffset { get; }

    public long ByteLength { get; }

    /// <summary>The file holding this tensor.</summary>
    public string FilePath { get; }

    public override string ToString() => $"{Name} {Dtype.Name()} [{string.Join(", ", ShapeArray)}]";
}

/// <summary>A safetensors file opened for reading: an 8-byte little-endian header length, a JSON header naming each
/// tensor's dtype, shape and byte range, then the data. The header is validated at open as strictly as
/// <see cref="GgufFile"/> validates GGUF (lengths, JSON, dtype, shape against byte count, ranges inside the data and not
/// overlapping, no duplicate names); a malformed file throws <see cref="SafetensorsFormatException"/> naming it. Data stays
/// in a read-only memory mapping; spans are valid until <see cref="Dispose"/>. Reading from several threads is safe.</summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>The largest header accepted (the reference safetensors implementation's limit).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private const string MetadataKey = "__metadata__";

    private readonly Dictionary<string, SafetensorsTensor> _byName;
    private readonly IDisposable _owner;
    private byte* _base;

    private SafetensorsFile(string path, byte* data, long length, IDisposable owner)
    {
        Path = path;
        FileLength = length;
        var (dataOffset, tensors, metadata) = ParseHeader(path, new ReadOnlySpan<byte>(data, (int)Math.Min(length, int.MaxValue)), length);
        DataOffset = dataOffset;
        // Sorted by name, as the safetensors library (and so convert_hf_to_gguf.py) lists them.
        Tensors = new ReadOnlyCollection<SafetensorsTensor>([.. tensors.OrderBy(t => t.Name, StringComparer.Ordinal)]);
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        Metadata = new ReadOnlyDictionary<string, string>(metadata);
        _base = data;
        _owner = owner;
    }

    public string Path { get; }

    public long FileLength { get; }

    /// <summary>Absolute offset of the data section (8 + header length).</summary>
    public long DataOffset { get; }

    /// <summary>Tensors sorted by name (ordinal).</summary>
    public IReadOnlyList<SafetensorsTensor> Tensors { get; }

    /// <summary>The free-form string map under "__metadata__" (e.g. format: pt); empty when absent.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public static SafetensorsFile Open(string path)
    {
        var fullPath = System.IO.Path.GetFullPath(path);
        var stream = new FileStream(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.RandomAccess);
        MappedFileView? view = null;
        try
        {
            var length = stream.Length;
            if (length < 8) throw new SafetensorsFormatException(fullPath, $"the file has {length} bytes, fewer than the 8-byte header length that starts a safetensors file");
            view = new MappedFileView(stream, length);
            return new SafetensorsFile(fullPath, view.Pointer, length, view);
        }
        catch
        {
            if (view is not null) view.Dispose();
            else stream.Dispose();
            throw;
        }
    }

    /// <summary>Reads an image held in memory (fuzz tests); <paramref name="name"/> stands in for the path.</summary>
    internal static SafetensorsFile Open(ReadOnlyMemory<byte> image, string name)
    {
        if (image.Length < 8) throw new SafetensorsFormatException(name, $"the file has {image.Length} bytes, fewer than the 8-byte header length that starts a safetensors file");
        var pin = new PinnedMemory(image.Pin());
        try
        {
            return new SafetensorsFile(name, (byte*)pin.Handle.Pointer, image.Length, pin);
        }
        catch
        {
            pin.Dispose();
            throw;
        }
    }

    public SafetensorsTensor? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary><paramref name="length"/> bytes of <paramref name="tensor"/>'s data from <paramref name="offset"/> within it.</summary>
    public ReadOnlySpan<byte> GetBytes(SafetensorsTensor tensor, long offset, int length)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        ObjectDisposedException.ThrowIf(_base == null, this);
        if (!_byName.TryGetValue(tensor.Name, out var own) || !ReferenceEquals(own, tensor))
            throw new ArgumentException($"tensor '{tensor.Name}' is not from {Path}", nameof(tensor));
        if (offset < 0 || length < 0 || offset > tensor.ByteLength - length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"bytes {offset} to {offset + length} are outside tensor '{tensor.Name}' ({tensor.ByteLength} bytes)");
        return new ReadOnlySpan<byte>(_base + DataOffset + tensor.DataOffset + offset, length);
    }

    public void Dispose()
    {
        if (_base == null) return;
        _base = null;
        _owner.Dispose();
    }

    private static (long DataOffset, List<SafetensorsTensor> Tensors, Dictionary<string, string> Metadata) ParseHeader(string path, ReadOnlySpan<byte> file, long fileLength)
    {
        SafetensorsFormatException Fail(string problem) => new(path, problem);

        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(file);
        if (headerLength > (ulong)(fileLength - 8))
            throw Fail($"the header length {headerLength} is larger than the file ({fileLength} bytes)");
        if (headerLength > MaxHeaderBytes)
            throw Fail($"the header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit");
        if (headerLength < 2) throw Fail($"the header length {headerLength} is too small for a JSON object");
        var header = file.Slice(8, (int)headerLength);
        if (header[0] != (byte)'{') throw Fail("the header does not start with '{'; is this a safetensors file?");
        var dataOffset = 8 + (long)headerLength;
        var dataLength = fileLength - dataOffset;

        JsonDocument document;
        try
        {
            // Writers pad the header with spaces to align the data; JSON allows trailing whitespace.
            document = JsonDocument.Parse(header.ToArray(), new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw Fail($"the header is not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1} of the line): {FirstSentence(e.Message)}");
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Fail($"the header is a JSON {root.ValueKind}, expected an object");
            var tensors = new List<SafetensorsTensor>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var sawMetadata = false;
            foreach (var entry in root.EnumerateObject())
            {
                if (entry.Name == MetadataKey)
                {
                    if (sawMetadata) throw Fail($"the header has '{MetadataKey}' twice");
                    sawMetadata = true;
                    ReadMetadata(entry.Value, metadata, Fail);
                    continue;
                }
                if (!names.Add(entry.Name)) throw Fail($"the header names tensor '{entry.Name}' twice");
                tensors.Add(ReadTensor(path, entry.Name, entry.Value, dataLength, Fail));
            }
            CheckNoOverlap(tensors, Fail);
            return (dataOffset, tensors, metadata);
        }
    }

    private static void ReadMetadata(JsonElement value, Dictionary<string, string> metadata, Func<string, SafetensorsFormatException> fail)
    {
        if (value.ValueKind != JsonValueKind.Object) throw fail($"'{MetadataKey}' is a JSON {value.ValueKind}, expected an object of strings");
        foreach (var item in value.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String) throw fail($"'{MetadataKey}'.'{item.Name}' is a JSON {item.Value.ValueKind}, expected a string");
            if (!metadata.TryAdd(item.Name, item.Value.GetString()!)) throw fail($"'{MetadataKey}' has the key '{item.Name}' twice");
        }
    }

    private static SafetensorsTensor ReadTensor(string path, string name, JsonElement value, long dataLength, Func<string, SafetensorsFormatException> fail)
    {
        if (name.Length == 0) throw fail("a tensor has an empty name");
        if (value.ValueKind != JsonValueKind.Object) throw fail($"tensor '{name}': its entry is a JSON {value.ValueKind}, expected an object");
        JsonElement? dtypeElement = null, shapeElement = null, offsetsElement = null;
        foreach (var field in value.EnumerateObject())
        {
            var seen = field.Name switch
            {
                "dtype" => dtypeElement,
                "shape" => shapeElement,
                "data_offsets" => offsetsElement,
                _ => throw fail($"tensor '{name}': unexpected field '{field.Name}' (expected dtype, shape, data_offsets)"),
            };
            if (seen is not null) throw fail($"tensor '{name}': field '{field.Name}' appears twice");
            switch (field.Name)
            {
                case "dtype": dtypeElement = field.Value; break;
                case "shape": shapeElement = field.Value; break;
                default: offsetsElement = field.Value; break;
            }
        }
        if (dtypeElement is not { ValueKind: JsonValueKind.String } d) throw fail($"tensor '{name}': missing or non-string 'dtype'");
        if (!SafetensorsDtypes.TryParse(d.GetString()!, out var dtype)) throw fail($"tensor '{name}': unknown dtype '{d.GetString()}'");
        if (shapeElement is not { ValueKind: JsonValueKind.Array } s) throw fail($"tensor '{name}': missing or non-array 'shape'");
        if (offsetsElement is not { ValueKind: JsonValueKind.Array } o || o.GetArrayLength() != 2)
            throw fail($"tensor '{name}': 'data_offsets' must be an array of two integers");

        var shape = new long[s.GetArrayLength()];
        long elements = 1;
        var i = 0;
        foreach (var dim in s.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out var n) || n < 0)
                throw fail($"tensor '{name}': shape dimension {i} is {dim.GetRawText()}, expected a non-negative integer");
            if (n != 0 && elements > long.MaxValue / n) throw fail($"tensor '{name}': shape [{string.Join(", ", s.EnumerateArray().Select(e => e.GetRawText()))}] has more elements than a 64-bit count holds");
            elements *= n;
            shape[i++] = n;
        }
        var offsets = new long[2];
        i = 0;
        foreach (var item in o.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out var n) || n < 0)
                throw fail($"tensor '{name}': data_offsets[{i}] is {item.GetRawText()}, expected a non-negative integer");
            offsets[i++] = n;
        }
        var (begin, end) = (offsets[0], offsets[1]);
        if (begin > end) throw fail($"tensor '{name}': data_offsets [{begin}, {end}] end before they begin");
        if (end > dataLength) throw fail($"tensor '{name}': data_offsets [{begin}, {end}] lie outside the data section ({dataLength} bytes after the header)");
        var size = dtype.ElementSize();
        if (elements > long.MaxValue / size || elements * size != end - begin)
            throw fail($"tensor '{name}': shape [{string.Join(", ", shape)}] of {dtype.Name()} takes {(elements > long.MaxValue / size ? "more than 2^63" : (elements * size).ToString())} bytes, but data_offsets [{begin}, {end}] span {end - begin}");
        return new SafetensorsTensor(name, dtype, shape, elements, begin, end - begin, path);
    }

    private static void CheckNoOverlap(List<SafetensorsTensor> tensors, Func<string, SafetensorsFormatException> fail)
    {
        SafetensorsTensor? previous = null;
        foreach (var t in tensors.Where(t => t.ByteLength > 0).OrderBy(t => t.DataOffset))
        {
            if (previous is not null && t.DataOffset < previous.DataOffset + previous.ByteLength)
                throw fail($"tensors '{previous.Name}' [{previous.DataOffset}, {previous.DataOffset + previous.ByteLength}] and '{t.Name}' [{t.DataOffset}, {t.DataOffset + t.ByteLength}] overlap");
            previous = t;
        }
    }

    private static string FirstSentence(string message)
    {
        var cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        return cut > 0 ? message[..cut] : message;
    }
}
