using System.Runtime.InteropServices;
using KQuant.Quants.Float;
using KQuant.Model.Kernels;

namespace KQuant.Model;

/// <summary>Keys and values of every layer for positions 0..<see cref="Capacity"/>−1, held as floats but rounded to fp16
/// as they are stored: llama.cpp's default cache type, and what its flash attention casts any cache to, so attention sees
/// the values llama.cpp's sees. Keys are stored transposed
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
        // Attention reads keys a whole tile of positions at a time, past the last one (those scores are masked).
        Stride = (capacity + CausalAttention.KeyTile - 1) / CausalAttention.KeyTile * CausalAttention.KeyTile;
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
            for (var d = 0; d < _headDimension; d++) k[(nint)d * Stride + position] = Round(keys[h * _headDimension + d]);
            var v = Values(layer, h) + (nint)position * _headDimension;
            for (var d = 0; d < _headDimension; d++) v[d] = Round(values[h * _headDimension + d]);
        }
    }

    private static float Round(float value) => Fp16.ToFloat(Fp16.FromFloat(value));

    public void Dispose()
    {
        _keys.Dispose();
        _values.Dispose();
    }
}

