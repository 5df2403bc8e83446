using System.Runtime.InteropServices;
using KQuant.Gguf;

namespace KQuant.Quants.K;

/// <summary>ggml's block_q8_K (292 bytes): 256 weights as x = d·q with a float d, int8 q, and the sums of each 16
/// quants (used by the K-quant dot products). Field order is ggml's.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal struct BlockQ8K
{
    public const int Size = 292;

    public float D;
    public KSBytes256 Qs;
    public KShorts16 BlockSums;
}

/// <summary>Q8_K, the activation format of the K-quant dot products: quantize_row_q8_K_ref (ggml_quantize_chunk has no
/// Q8_K case; importance does not apply) and dequantize_row_q8_K.</summary>
internal sealed class Q8KCodec : IRowCodec
{
    public GgmlType Type => GgmlType.Q8_K;

    public bool UsesImportance => false;

    public void Quantize(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ8K>(destination);
        for (var i = 0; i < blocks.Length; i++)
        {
            ref var block = ref blocks[i];
            var x = source.Slice(i * KQuantLayout.SuperBlock, KQuantLayout.SuperBlock);
            float max = 0, amax = 0;
            for (var j = 0; j < x.Length; j++)
            {
                var ax = MathF.Abs(x[j]);
                if (ax > amax) { amax = ax; max = x[j]; }
            }
            if (amax == 0)
            {
                block = default;
                continue;
            }
            // ggml scales by -127/max rather than -128/max so that the AVX dot products can treat q as symmetric.
            var iscale = -127f / max;
            Span<sbyte> qs = block.Qs;
            // Tiny blocks make iscale infinite; nearest_int then yields values whose low byte ggml stores, as we do.
            for (var j = 0; j < x.Length; j++) qs[j] = (sbyte)Math.Min(127, BlockSolvers.NearestInt(iscale * x[j]));
            Span<short> sums = block.BlockSums;
            for (var j = 0; j < 16; j++)
            {
                var sum = 0;
                for (var l = 0; l < 16; l++) sum += qs[16 * j + l];
                sums[j] = (short)sum;
            }
            block.D = 1 / iscale;
        }
    }

    /// <summary>dequantize_row_q8_K: y = d·q.</summary>
    public void Dequantize(ReadOnlySpan<byte> source, Span<float> destination)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ8K>(source);
        for (var i = 0; i < blocks.Length; i++)
        {
            ref readonly var block = ref blocks[i];
            ReadOnlySpan<sbyte> qs = block.Qs;
            var y = destination.Slice(i * KQuantLayout.SuperBlock, KQuantLayout.SuperBlock);
            for (var j = 0; j < qs.Length; j++) y[j] = block.D * qs[j];
        }
    }
}
