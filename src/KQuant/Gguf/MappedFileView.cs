using System.IO.MemoryMappedFiles;

namespace KQuant.Gguf;

/// <summary>A read-only memory mapping of a whole file and a pointer to its first byte (GGUF and safetensors readers).
/// The mapping owns the stream it was made from.</summary>
internal sealed unsafe class MappedFileView : IDisposable
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _accessor;

    public MappedFileView(FileStream stream, long length)
    {
        _file = MemoryMappedFile.CreateFromFile(stream, null, length, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
        try
        {
            _accessor = _file.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            byte* p = null;
            _accessor.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            Pointer = p + _accessor.PointerOffset;
        }
        catch
        {
            _accessor?.Dispose();
            _file.Dispose();
            throw;
        }
    }

    public byte* Pointer { get; }

    public void Dispose()
    {
        _accessor.SafeMemoryMappedViewHandle.ReleasePointer();
        _accessor.Dispose();
        _file.Dispose();
    }
}

/// <summary>Keeps memory pinned while a reader holds a pointer into it (in-memory images, e.g. in fuzz tests).</summary>
internal sealed class PinnedMemory(System.Buffers.MemoryHandle handle) : IDisposable
{
    public System.Buffers.MemoryHandle Handle = handle;

    public void Dispose() => Handle.Dispose();
}
