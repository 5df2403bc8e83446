using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;

namespace KQuant.Gguf;

/// <summary>Writes a GGUF file as a stream: the header, metadata and tensor directory are written at construction, then
/// the caller streams each tensor's data in directory order (in as many chunks as it likes) and calls <see cref="Commit"/>.
/// Everything goes to a temporary file beside the target, renamed onto it only by <see cref="Commit"/>; disposing
/// without committing deletes it.</summary>
/// <remarks>The layout is ggml's (gguf.cpp, llama.cpp v0.5.0): tensor offsets are assigned in directory order, each
/// tensor's data padded with zeros to the alignment; the directory is padded to the alignment when there are tensors.
/// With no tensors nothing follows the directory, as in the files gguf-py writes (ggml's own writer pads them too; both
/// read the same). Reading a file and writing it back with the same metadata, tensors and version gives identical bytes.</remarks>
public sealed class GgufWriter : IDisposable
{
    public const uint DefaultVersion = 3;

    private static readonly byte[] Zeros = new byte[4096];

    private readonly Stream _stream;
    private readonly string _tempPath;
    private readonly bool _overwrite;
    private readonly HashSet<string> _inputPaths;
    private readonly GgufTensorInfo[] _tensors;
    private byte[] _scratch = new byte[256];
    private long _position;
    private int _current;        // index of the tensor whose data comes next
    private long _currentWritten; // bytes of it written so far
    private bool _committed;
    private bool _disposed;

    /// <summary>Creates the temporary file and writes everything before the tensor data.</summary>
    /// <param name="path">The target. Refused when it is open as a <see cref="GgufFile"/> in this process or listed in
    /// <paramref name="inputPaths"/>, and when it exists unless <paramref name="overwrite"/> is set.</param>
    /// <param name="metadata">Entries in the order to write them, e.g. a <see cref="GgufMetadata"/> or <see cref="GgufFile.Metadata"/>.</param>
    /// <param name="tensors">Name, type and shape of every tensor, in the order their data will come. Their
    /// <see cref="GgufTensorInfo.Offset"/> is ignored; the writer assigns offsets (see <see cref="Tensors"/>).</param>
    /// <param name="version">GGUF version to write: 3, or 2 to reproduce an old file.</param>
    /// <param name="overwrite">Replace an existing target.</param>
    /// <param name="inputPaths">Files this output is made from, which it must not replace.</param>
    public GgufWriter(string path, IEnumerable<GgufMetadataEntry> metadata, IEnumerable<GgufTensorInfo> tensors,
        uint version = DefaultVersion, bool overwrite = false, IEnumerable<string>? inputPaths = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (version is < GgufHeaderReader.MinVersion or > GgufHeaderReader.MaxVersion)
            throw new ArgumentOutOfRangeException(nameof(version), version, "GGUF version must be 2 or 3");
        var entries = new GgufMetadata(metadata); // validates keys, uniqueness and general.alignment
        Alignment = entries.Alignment;
        _tensors = AssignOffsets(tensors, Alignment);
        Path = System.IO.Path.GetFullPath(path);
        Version = version;
        _overwrite = overwrite;
        _inputPaths = new HashSet<string>((inputPaths ?? []).Select(GgufFile.CanonicalPath), GgufFile.PathComparer);
        CheckTarget();

        var directory = System.IO.Path.GetDirectoryName(Path)!;
        _tempPath = System.IO.Path.Combine(directory, $".{System.IO.Path.GetFileName(Path)}.tmp-{Guid.NewGuid():N}");
        _stream = new FileStream(_tempPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 20);
        try
        {
            WriteHeader(entries);
            DataOffset = _position;
        }
        catch
        {
            Discard();
            throw;
        }
    }

    // Writes only the header, to a stream that counts bytes: used to size a file without writing it.
    private GgufWriter(GgufMetadata metadata, IEnumerable<GgufTensorInfo> tensors, uint version)
    {
        Alignment = metadata.Alignment;
        _tensors = AssignOffsets(tensors, Alignment);
        Path = _tempPath = "";
        Version = version;
        _inputPaths = [];
        _stream = Stream.Null;
        WriteHeader(metadata);
        DataOffset = _position;
        _committed = true;
    }

    /// <summary>The exact size of the file a writer with these arguments produces, without writing it.</summary>
    public static long MeasureFile(IEnumerable<GgufMetadataEntry> metadata, IEnumerable<GgufTensorInfo> tensors, uint version = DefaultVersion)
    {
        using var measure = new GgufWriter(new GgufMetadata(metadata), tensors, version);
        var last = measure._tensors.Length == 0 ? null : measure._tensors[^1];
        return measure.DataOffset + (last is null ? 0 : last.Offset + AlignUp(last.ByteSize, measure.Alignment));
    }

    /// <summary>Full path of the target.</summary>
    public string Path { get; }

    public uint Version { get; }

    public uint Alignment { get; }

    /// <summary>Absolute offset of the data section in the output.</summary>
    public long DataOffset { get; }

    /// <summary>The tensor directory as written, with offsets relative to the data section.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors => _tensors;

    /// <summary>The tensor whose data <see cref="WriteTensorData"/> expects next; null once all are written.</summary>
    public GgufTensorInfo? PendingTensor => _current < _tensors.Length ? _tensors[_current] : null;

    /// <summary>Appends the next bytes of <see cref="PendingTensor"/>. A chunk must not run past the end of that tensor;
    /// once the tensor is complete the writer pads it and moves on to the next.</summary>
    public void WriteTensorData(ReadOnlySpan<byte> data)
    {
        ThrowIfFinished();
        var tensor = PendingTensor ?? throw new InvalidOperationException($"all {_tensors.Length} tensors of {Path} have been written");
        var missing = tensor.ByteSize - _currentWritten;
        if (data.Length > missing)
            throw new InvalidOperationException($"tensor '{tensor.Name}' needs {missing} more bytes, but {data.Length} were given");
        Write(data);
        Advance(data.Length);
    }

    /// <summary>Writes all of <paramref name="tensor"/>'s data from <paramref name="source"/> as the pending tensor,
    /// which must have the same name, type and shape (e.g. a tensor kept as it is while others are converted).</summary>
    public void CopyTensorFrom(GgufFile source, GgufTensorInfo tensor)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(tensor);
        ThrowIfFinished();
        var pending = PendingTensor;
        if (pending is null || _currentWritten != 0 || pending.Name != tensor.Name || pending.Type != tensor.Type
            || !pending.ShapeSpan.SequenceEqual(tensor.ShapeSpan))
            throw new InvalidOperationException($"{tensor} is not the next tensor to write; expected {pending?.ToString() ?? "none"}");
        source.CopyTensorTo(tensor, _stream);
        _position += tensor.ByteSize;
        Advance(tensor.ByteSize);
    }

    /// <summary>Flushes the temporary file to disk and renames it onto the target. All tensor data must have been written.</summary>
    public void Commit()
    {
        ThrowIfFinished();
        if (PendingTensor is { } pending)
            throw new InvalidOperationException($"cannot commit {Path}: tensor '{pending.Name}' has {_currentWritten} of {pending.ByteSize} bytes, and {_tensors.Length - _current - 1} more tensors follow");
        CheckTarget(); // again: an input may have been opened since construction
        if (_stream is FileStream file) file.Flush(flushToDisk: true);
        _stream.Dispose();
        try
        {
            File.Move(_tempPath, Path, _overwrite);
        }
        catch (IOException e) when (!_overwrite && File.Exists(Path))
        {
            throw new OutputRefusedException($"{Path} already exists; pass overwrite: true to replace it", e);
        }
        _committed = true;
    }

    /// <summary>Deletes the temporary file unless <see cref="Commit"/> succeeded.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (!_committed) Discard();
    }

    /// <summary>Copies <paramref name="input"/> to <paramref name="output"/>: same version, metadata in the same order,
    /// tensors as opaque bytes. For a file laid out as ggml lays files out, the copy is byte-identical.</summary>
    public static void Rewrite(GgufFile input, string output, bool overwrite = false)
    {
        ArgumentNullException.ThrowIfNull(input);
        using var writer = new GgufWriter(output, input.Metadata, input.Tensors, input.Version, overwrite, [input.Path]);
        foreach (var tensor in input.Tensors) writer.CopyTensorFrom(input, tensor);
        writer.Commit();
    }

    private static GgufTensorInfo[] AssignOffsets(IEnumerable<GgufTensorInfo> tensors, uint alignment)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var names = new HashSet<string>(StringComparer.Ordinal);
        var result = new List<GgufTensorInfo>();
        long offset = 0;
        foreach (var t in tensors)
        {
            ArgumentNullException.ThrowIfNull(t, nameof(tensors));
            if (!names.Add(t.Name)) throw new ArgumentException($"duplicate tensor name '{t.Name}'", nameof(tensors));
            result.Add(t.WithOffset(offset));
            var padded = AlignUp(t.ByteSize, alignment);
            if (padded < 0 || offset > long.MaxValue - padded) throw new ArgumentException("the tensors add up to more than 2^63 bytes", nameof(tensors));
            offset += padded;
        }
        return [.. result];
    }

    private void CheckTarget()
    {
        var canonical = GgufFile.CanonicalPath(Path);
        if (_inputPaths.Contains(canonical) || GgufFile.IsOpen(canonical))
            throw new OutputRefusedException($"refusing to write {Path}: it is one of the input files");
        if (!_overwrite && File.Exists(Path))
            throw new OutputRefusedException($"{Path} already exists; pass overwrite: true to replace it");
        if (Directory.Exists(Path)) throw new OutputRefusedException($"{Path} is a directory");
    }

    private void WriteHeader(GgufMetadata metadata)
    {
        Write("GGUF"u8);
        WriteUInt32(Version);
        WriteUInt64((ulong)_tensors.Length);
        WriteUInt64((ulong)metadata.Count);
        foreach (var entry in metadata)
        {
            WriteString(entry.Key, null);
            WriteUInt32((uint)entry.Value.Type);
            WriteValue(entry.Value);
        }
        foreach (var t in _tensors)
        {
            WriteString(t.Name, null);
            WriteUInt32((uint)t.Dimensions);
            foreach (var d in t.ShapeSpan) WriteUInt64((ulong)d);
            WriteUInt32((uint)t.Type);
            WriteUInt64((ulong)t.Offset);
        }
        if (_tensors.Length > 0) Pad();
    }

    private void WriteValue(GgufValue value)
    {
        switch (value.Type)
        {
            case GgufValueType.String:
                WriteString(value.AsString(), value.InvalidUtf8);
                break;
            case GgufValueType.Array:
                WriteArray(value.AsArray());
                break;
            default:
                Span<byte> bits = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(bits, value.ScalarBits);
                Write(bits[..GgufValueTypes.FixedSize(value.Type)]); // the low bytes, little-endian
                break;
        }
    }

    private void WriteArray(GgufArray array)
    {
        WriteUInt32((uint)array.ElementType);
        WriteUInt64((ulong)array.Count);
        switch (array.ElementType)
        {
            case GgufValueType.String:
                var strings = array.Strings;
                for (var i = 0; i < strings.Count; i++) WriteUtf8(strings[i]);
                break;
            case GgufValueType.Array:
                foreach (var a in array.AsArrays()) WriteArray(a);
                break;
            default:
                Write(RawBytes(array));
                break;
        }
    }

    /// <summary>The little-endian bytes of a numeric or bool array (.NET bools are the bytes 0 and 1, as GGUF stores them).</summary>
    private static ReadOnlySpan<byte> RawBytes(GgufArray array) =>
        MemoryMarshal.CreateReadOnlySpan(ref MemoryMarshal.GetArrayDataReference(array.Items), array.Count * GgufValueTypes.FixedSize(array.ElementType));

    /// <summary>A string value or key: its original bytes when the file had invalid UTF-8 (see <see cref="GgufValue"/>).</summary>
    private void WriteString(string text, byte[]? originalBytes)
    {
        if (originalBytes is not null)
        {
            WriteUtf8(originalBytes);
            return;
        }
        var needed = Encoding.UTF8.GetMaxByteCount(text.Length);
        if (_scratch.Length < needed) _scratch = new byte[Math.Max(needed, _scratch.Length * 2)];
        WriteUtf8(_scratch.AsSpan(0, Encoding.UTF8.GetBytes(text, _scratch)));
    }

    private void WriteUtf8(ReadOnlySpan<byte> bytes)
    {
        WriteUInt64((ulong)bytes.Length);
        Write(bytes);
    }

    private void WriteUInt32(uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        Write(b);
    }

    private void WriteUInt64(ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        Write(b);
    }

    /// <summary>Counts <paramref name="bytes"/> of the pending tensor as written; pads and moves on when it is complete.</summary>
    private void Advance(long bytes)
    {
        _currentWritten += bytes;
        if (_currentWritten < _tensors[_current].ByteSize) return;
        Pad();
        _current++;
        _currentWritten = 0;
    }

    private void Pad()
    {
        for (var n = AlignUp(_position, Alignment) - _position; n > 0;)
        {
            var chunk = (int)Math.Min(n, Zeros.Length);
            Write(Zeros.AsSpan(0, chunk));
            n -= chunk;
        }
    }

    private void Write(ReadOnlySpan<byte> bytes)
    {
        _stream.Write(bytes);
        _position += bytes.Length;
    }

    private static long AlignUp(long n, uint alignment) => (n + alignment - 1) / alignment * alignment;

    private void ThrowIfFinished()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_committed) throw new InvalidOperationException($"{Path} has been committed already");
    }

    private void Discard()
    {
        _stream.Dispose();
        File.Delete(_tempPath);
    }
}

/// <summary>The writer will not write its target: it exists (and overwriting was not asked for), it is a folder, or it is
/// one of the files the output is made from.</summary>
public sealed class OutputRefusedException(string message, Exception? inner = null) : IOException(message, inner);
