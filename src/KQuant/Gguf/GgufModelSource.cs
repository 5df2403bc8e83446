using Microsoft.Win32.SafeHandles;

namespace KQuant.Gguf;

/// <summary>A GGUF file as a model source. Tensor data is read with positioned reads rather than through the memory
/// map, so streaming a large model through a quantizer does not grow the process's resident memory with it.</summary>
public sealed class GgufModelSource : IModelSource
{
    private readonly SafeFileHandle _handle;

    public GgufModelSource(string path)
    {
        File = GgufFile.Open(path);
        try
        {
            _handle = System.IO.File.OpenHandle(File.Path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
        }
        catch
        {
            File.Dispose();
            throw;
        }
    }

    /// <summary>The parsed file (its memory map serves random access, e.g. inspection).</summary>
    public GgufFile File { get; }

    public string Path => File.Path;
    public IReadOnlyList<GgufMetadataEntry> Metadata => File.Metadata;
    public IReadOnlyList<GgufTensorInfo> Tensors => File.Tensors;
    public IReadOnlyList<string> InputFiles => [File.Path];

    public void ReadTensorBytes(GgufTensorInfo tensor, long offset, Span<byte> destination)
    {
        if (offset < 0 || offset > tensor.ByteSize - destination.Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"bytes {offset} to {offset + destination.Length} are outside tensor '{tensor.Name}' ({tensor.ByteSize} bytes)");
        var position = File.DataOffset + tensor.Offset + offset;
        while (!destination.IsEmpty)
        {
            var n = RandomAccess.Read(_handle, destination, position);
            if (n <= 0) throw new InvalidDataException($"{Path}: ended at byte {position} while reading tensor {tensor.Name}");
            destination = destination[n..];
            position += n;
        }
    }

    public void Dispose()
    {
        _handle.Dispose();
        File.Dispose();
    }
}

/// <summary>Opens whatever a path names as a model: a GGUF file, or a Hugging Face model folder (converted on read, as
/// convert_hf_to_gguf.py would convert it, in the checkpoint's own precision).</summary>
public static class ModelSources
{
    public static IModelSource Open(string path)
    {
        if (Directory.Exists(path)) return Conversion.HuggingFaceModelSource.Open(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"model not found: {path}", path);
        return new GgufModelSource(path);
    }
}
