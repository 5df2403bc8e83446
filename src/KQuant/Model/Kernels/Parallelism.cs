using System.Runtime.InteropServices;

namespace KQuant.Model.Kernels;

/// <summary>Runs the items of one step of the forward pass on up to <see cref="Threads"/> threads, items taken in
/// order as threads free up (a shared machine rarely gives every thread the same speed). One thread runs inline.</summary>
internal sealed class Parallelism(int threads)
{
    public int Threads { get; } = Math.Max(1, threads);

    public void For(int count, Action<int> body)
    {
        if (count <= 0) return;
        if (Threads == 1 || count == 1)
        {
            for (var i = 0; i < count; i++) body(i);
            return;
        }
        Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = Threads }, body);
    }
}

/// <summary>Per-thread scratch memory for decoded weights: 64-byte aligned, grown on demand, kept for the thread's
/// lifetime (pool threads are reused, so this settles at the largest row panel of the model).</summary>
internal static unsafe class Scratch
{
    [ThreadStatic] private static byte* _buffer;
    [ThreadStatic] private static nuint _capacity;

    public static byte* Get(nuint bytes)
    {
        if (bytes > _capacity)
        {
            if (_buffer != null) NativeMemory.AlignedFree(_buffer);
            _capacity = Math.Max(bytes, 64 * 1024);
            _buffer = (byte*)NativeMemory.AlignedAlloc(_capacity, 64);
        }
        return _buffer;
    }
}
