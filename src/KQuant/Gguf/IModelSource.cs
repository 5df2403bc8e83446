namespace KQuant.Gguf;

/// <summary>Where a model's metadata and tensors come from: a GGUF file, or anything converted on the fly (e.g. a
/// Hugging Face folder). Tensors are described as they would be stored in GGUF: llama.cpp names, ggml types and shapes.</summary>
public interface IModelSource : IDisposable
{
    /// <summary>A path to name in messages (the file or folder).</summary>
    string Path { get; }

    IReadOnlyList<GgufMetadataEntry> Metadata { get; }

    IReadOnlyList<GgufTensorInfo> Tensors { get; }

    /// <summary>Total bytes of tensor data, for progress.</summary>
    long TensorBytes => Tensors.Sum(t => t.ByteSize);

    /// <summary>Files this source reads, which an output must never replace.</summary>
    IReadOnlyList<string> InputFiles { get; }

    /// <summary>Copies <paramref name="destination"/>.Length bytes of <paramref name="tensor"/>'s data, starting at
    /// <paramref name="offset"/> within the tensor. Thread-safe.</summary>
    void ReadTensorBytes(GgufTensorInfo tensor, long offset, Span<byte> destination);
}
