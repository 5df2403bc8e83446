using System.Runtime.InteropServices;

namespace KQuant.Model.Kernels;

/// <summary>The input of one or more matrix products: <see cref="Rows"/> float rows (one per token) and, made on first
/// request, their conversion to each <see cref="ActivationFormat"/> a weight type asks for. Q, K and V of a layer share
/// one batch, so the activations are quantized once per format rather than once per matrix.</summary>
internal sealed unsafe class ActivationBatch : IDisposable
{
    private readonly NativeBuffer[] _converted = new NativeBuffer[Enum.GetValues<ActivationFormat>().Length];
    private readonly bool[] _valid = new bool[Enum.GetValues<ActivationFormat>().Length];

    public float* Source { get; private set; }

    public int Rows { get; private set; }

    public int Columns { get; private set; }

    /// <summary>Points the batch at new rows (row-major, <paramref name="columns"/> floats each) and forgets every
    /// earlier conversion.</summary>
    public void Reset(float* source, int rows, int columns)
    {
        Source = source;
        Rows = rows;
        Columns = columns;
        Array.Clear(_valid);
    }

    /// <summary>The rows in <paramref name="format"/>, each <see cref="ActivationFormats.RowBytes"/> long.</summary>
    public byte* Get(ActivationFormat format, Parallelism parallel)
    {
        if (format == ActivationFormat.F32) return (byte*)Source;
        var index = (int)format;
        var rowBytes = ActivationFormats.RowBytes(format, Columns);
        if (!_valid[index])
        {
            var buffer = _converted[index] ??= new NativeBuffer();
            var destination = buffer.Ensure((nuint)rowBytes * (nuint)Rows);
            var source = Source;
            var columns = Columns;
            // A few rows per item: quantizing one row is too little work to hand to another thread.
            const int rowsPerItem = 8;
            parallel.For((Rows + rowsPerItem - 1) / rowsPerItem, item =>
            {
                var end = Math.Min(Rows, (item + 1) * rowsPerItem);
                for (var r = item * rowsPerItem; r < end; r++)
                {
                    ActivationQuantizer.Quantize(format, new ReadOnlySpan<float>(source + (nint)r * columns, columns),
                        new Span<byte>(destination + (nint)r * rowBytes, rowBytes));
                }
            });
            _valid[index] = true;
        }
        return _converted[index].Pointer;
    }

    public void Dispose()
    {
        foreach (var buffer in _converted) buffer?.Dispose();
    }
}

/// <summary>Native memory, 64-byte aligned, that grows on demand and keeps its largest size.</summary>
internal sealed unsafe class NativeBuffer : IDisposable
{
    private nuint _capacity;

    public byte* Pointer { get; private set; }

    public byte* Ensure(nuint bytes)
    {
        if (bytes > _capacity)
        {
            if (Pointer != null) NativeMemory.AlignedFree(Pointer);
            Pointer = (byte*)NativeMemory.AlignedAlloc(Math.Max(bytes, 64), 64);
            _capacity = bytes;
        }
        return Pointer;
    }

    public float* Floats(nuint count) => (float*)Ensure(count * sizeof(float));

    public void Dispose()
    {
        if (Pointer != null) NativeMemory.AlignedFree(Pointer);
        Pointer = null;
        _capacity = 0;
    }
}
