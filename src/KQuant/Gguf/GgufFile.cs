using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.ObjectModel;
using System.Diagnostics.CodeAnalysis;

namespace KQuant.Gguf;

/// <summary>A GGUF file (version 2 or 3, little-endian) opened for reading. Metadata and the tensor directory are parsed
/// and validated at open; tensor data stays in a read-only memory mapping, so opening costs no memory in proportion to
/// the file's size. Spans returned by the data accessors point into the mapping and are valid until <see cref="Dispose"/>.
/// Malformed files throw <see cref="GgufFormatException"/>. Reading from several threads at once is safe.</summary>
public sealed unsafe class GgufFile : IDisposable, IGgufMetadataSource
{
    private const int CopyChunkBytes = 16 << 20;

    // Canonical paths of files open for reading in this process, with open counts: the writer refuses to write onto them.
    private static readonly ConcurrentDictionary<string, int> OpenPaths = new(PathComparer);

    private readonly GgufMetadata _metadata;
    private readonly Dictionary<string, GgufTensorInfo> _tensorsByName;
    private readonly IDisposable _owner;
    private readonly string? _registeredPath;
    private byte* _base;

    private GgufFile(string path, byte* data, long length, IDisposable owner, bool register)
    {
        // The header is parsed from the first 2 GiB at most: spans are int-indexed, and no real metadata comes close.
        var header = GgufHeaderReader.Read(new ReadOnlySpan<byte>(data, (int)Math.Min(length, int.MaxValue)), length, path);
        Path = path;
        FileLength = length;
        Version = header.Version;
        Alignment = header.Alignment;
        DataOffset = header.DataOffset;
        _metadata = header.Metadata;
        Metadata = new ReadOnlyCollection<GgufMetadataEntry>(_metadata.ToArray());
        Tensors = new ReadOnlyCollection<GgufTensorInfo>(header.Tensors.ToArray());
        _tensorsByName = header.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        _base = data;
        _owner = owner;
        if (register)
        {
            _registeredPath = CanonicalPath(path);
            OpenPaths.AddOrUpdate(_registeredPath, 1, (_, n) => n + 1);
        }
    }

    /// <summary>Full path of the file (or the display name of an in-memory image).</summary>
    public string Path { get; }

    public uint Version { get; }

    /// <summary>Alignment of tensor data (general.alignment, default 32).</summary>
    public uint Alignment { get; }

    /// <summary>Absolute file offset where the data section starts; tensor offsets are relative to it.</summary>
    public long DataOffset { get; }

    public long FileLength { get; }

    /// <summary>Metadata entries in file order.</summary>
    public IReadOnlyList<GgufMetadataEntry> Metadata { get; }

    /// <summary>The tensor directory in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    /// <summary>Opens and validates <paramref name="path"/>; throws <see cref="GgufFormatException"/> if it is not a
    /// GGUF file KQuant can read. The file is shared for reading only while open.</summary>
    public static GgufFile Open(string path)
    {
        var fullPath = System.IO.Path.GetFullPath(path);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("GGUF reading needs a little-endian machine");
        var stream = new FileStream(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.RandomAccess);
        MappedFileView? view = null;
        try
        {
            var length = stream.Length;
            // An empty file cannot be mapped; report it like any other truncation.
            if (length == 0) throw new GgufFormatException(fullPath, 0, "expected the magic 'GGUF', but the file is empty");
            view = new MappedFileView(stream, length);
            return new GgufFile(fullPath, view.Pointer, length, view, register: true);
        }
        catch
        {
            if (view is not null) view.Dispose();
            else stream.Dispose();
            throw;
        }
    }

    /// <summary>Reads a GGUF image held in memory (the fuzz tests use it to skip the file system). The memory is pinned
    /// until <see cref="Dispose"/>; <paramref name="name"/> stands in for the path in messages.</summary>
    internal static GgufFile Open(ReadOnlyMemory<byte> image, string name)
    {
        var pin = new PinnedMemory(image.Pin());
        try
        {
            return new GgufFile(name, (byte*)pin.Handle.Pointer, image.Length, pin, register: false);
        }
        catch
        {
            pin.Dispose();
            throw;
        }
    }

    public bool TryGetValue(string key, [MaybeNullWhen(false)] out GgufValue value) => _metadata.TryGetValue(key, out value);

    public GgufTensorInfo? FindTensor(string name) => _tensorsByName.GetValueOrDefault(name);

    /// <summary><paramref name="length"/> bytes of <paramref name="tensor"/>'s data from <paramref name="offset"/> (relative
    /// to the tensor's first byte).</summary>
    public ReadOnlySpan<byte> GetTensorBytes(GgufTensorInfo tensor, long offset, int length)
    {
        CheckOwned(tensor);
        if (offset < 0 || length < 0 || offset > tensor.ByteSize - length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"bytes {offset} to {offset + length} are outside tensor '{tensor.Name}' ({tensor.ByteSize} bytes)");
        return new ReadOnlySpan<byte>(_base + DataOffset + tensor.Offset + offset, length);
    }

    /// <summary>The data of <paramref name="rowCount"/> whole rows starting at row <paramref name="firstRow"/>.</summary>
    public ReadOnlySpan<byte> GetRows(GgufTensorInfo tensor, long firstRow, int rowCount)
    {
        CheckOwned(tensor);
        if (firstRow < 0 || rowCount < 0 || firstRow > tensor.RowCount - rowCount)
            throw new ArgumentOutOfRangeException(nameof(firstRow), $"rows {firstRow} to {firstRow + rowCount} are outside tensor '{tensor.Name}' ({tensor.RowCount} rows)");
        var rowBytes = tensor.RowByteSize;
        if (rowCount > int.MaxValue / rowBytes)
            throw new ArgumentOutOfRangeException(nameof(rowCount), $"{rowCount} rows of {rowBytes} bytes exceed the 2 GiB a span can hold");
        return GetTensorBytes(tensor, firstRow * rowBytes, (int)(rowCount * rowBytes));
    }

    /// <summary>Writes the whole of <paramref name="tensor"/>'s data (any size) to <paramref name="destination"/>.</summary>
    public void CopyTensorTo(GgufTensorInfo tensor, Stream destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        for (long done = 0; done < tensor.ByteSize;)
        {
            var chunk = (int)Math.Min(CopyChunkBytes, tensor.ByteSize - done);
            destination.Write(GetTensorBytes(tensor, done, chunk));
            done += chunk;
        }
    }

    public void Dispose()
    {
        if (_base == null) return;
        _base = null;
        _owner.Dispose();
        if (_registeredPath is { } key)
        {
            OpenPaths.AddOrUpdate(key, 0, (_, n) => n - 1);
            OpenPaths.TryRemove(new KeyValuePair<string, int>(key, 0));
        }
    }

    /// <summary>True when a <see cref="GgufFile"/> of this process has the file at <paramref name="canonicalPath"/> open.</summary>
    internal static bool IsOpen(string canonicalPath) => OpenPaths.TryGetValue(canonicalPath, out var n) && n > 0;

    /// <summary>The full path with symbolic links resolved, so two spellings of one file compare equal.</summary>
    internal static string CanonicalPath(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        try
        {
            return File.ResolveLinkTarget(full, returnFinalTarget: true)?.FullName ?? full;
        }
        catch (IOException)
        {
            return full; // a dangling or looping link: compare the path as given
        }
    }

    internal static StringComparer PathComparer =>
        OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal;

    // A GgufTensorInfo from elsewhere (another file, or built by hand) would address bytes this file does not vouch for.
    private void CheckOwned(GgufTensorInfo tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        ObjectDisposedException.ThrowIf(_base == null, this);
        if (!_tensorsByName.TryGetValue(tensor.Name, out var own) || !ReferenceEquals(own, tensor))
            throw new ArgumentException($"tensor '{tensor.Name}' is not from {Path}", nameof(tensor));
    }
}
