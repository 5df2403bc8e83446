using System.Runtime.InteropServices;
using KQuant.Model.Kernels;

namespace KQuant.Model;

/// <summary>Keys and values of every layer for positions 0..<see cref="Capacity"/>−1, in F32 (llama.cpp defaults to
/// F16; F32 keeps the comparison with its F32-cache mode exact up to summation order). Keys are stored transposed
/// per KV head ([dimension][position]), so the scores of eight consecutive positions are one vector FMA per
/// dimension; values are stored per position ([position][dimension]) for the weighted sum.</summary>
internal sealed unsafe class KvCache : IDisposable
{
    private readonly NativeBuffer _keys = new();
    private readonly NativeBuffer _values = new();
    private readonly int _kvHeads;
    private readonly int _headDimension;

    public KvCache(int layers, int kvHeads, int headDimension, int capacity)
    {
        Capacity = capacity;
        // Whole vectors of eight positions can be read past the last one (their scores are never used).
        Stride = (capacity + 7) & ~7;
        _kvHeads = kvHeads;
        _headDimension = headDimension;
        var perLayer = (nuint)kvHeads * (nuint)headDimension * (nuint)Stride;
        NativeMemory.Clear(_keys.Floats(perLayer * (nuint)layers), perLayer * (nuint)layers * sizeof(float));
        NativeMemory.Clear(_values.Floats(perLayer * (nuint)layers), perLayer * (nuint)layers * sizeof(float));
        LayerStride = (nint)perLayer;
    }

    public int Capacity { get; }

    /// <summary>Floats between consecutive dimensions of the transposed keys, and positions reserved per head.</summary>
    public int Stride { get; }

    private nint LayerStride { get; }

    /// <summary>Keys of <paramref name="layer"/>, KV head <paramref name="head"/>: [dimension][position], rows
    /// <see cref="Stride"/> apart.</summary>
    public float* Keys(int layer, int head) => (float*)_keys.Pointer + layer * LayerStride + (nint)head * _headDimension * Stride;

    /// <summary>Values of <paramref name="layer"/>, KV head <paramref name="head"/>: [position][dimension].</summary>
    public float* Values(int layer, int head) => (float*)_values.Pointer + layer * LayerStride + (nint)head * _headDimension * Stride;

    /// <summary>Stores one token's keys and values (all KV heads, roped keys) at <paramref name="position"/>.</summary>
    public void Store(int layer, int position, ReadOnlySpan<float> keys, ReadOnlySpan<float> values)
    {
        for (var h = 0; h < _kvHeads; h++)
        {
            var k = Keys(layer, h);
            for (var d = 0; d < _headDimension; d++) k[(nint)d * Stride + position] = keys[h * _headDimension + d];
            values.Slice(h * _headDimension, _headDimension).CopyTo(new Span<float>(Values(layer, h) + (nint)position * _headDimension, _headDimension));
        }
    }

    public void Dispose()
    {
        _keys.Dispose();
        _values.Dispose();
    }
}
