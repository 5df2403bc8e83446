using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KQuant.Gguf;

namespace KQuant.Quants.K;

/// <summary>ggml's block_q8_K (292 bytes): 256 weights as x = d·q with a float d, int8 q, and the sums of each 16
/// quants (used by the K-quant dot products). Field order is ggml's.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal struct BlockQ8K
{
    public const int Size = 292;

    public float D;
    public SBytes256 Qs;
    public Shorts16 BlockSums;
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
            var (max, amax) = BlockSolvers.SignedAbsMax(x);
            if (amax == 0)
            {
                block = default;
                continue;
            }
            // ggml scales by -127/max rather than -128/max so that the AVX dot products can treat q as symmetric.
            var iscale = -127f / max;
            if (BlockSolvers.UseVector256) RoundVector256(x, iscale, block.Qs, block.BlockSums);
            else RoundScalar(x, iscale, block.Qs, block.BlockSums);
            block.D = 1 / iscale;
        }
    }

    /// <summary>q = min(127, nearest_int(iscale·x)), stored as its low byte: tiny blocks make iscale infinite and
    /// nearest_int return values outside int8, which ggml truncates into its int8_t array, as we do. Then the sums of
    /// each 16 stored quants.</summary>
    private static void RoundScalar(ReadOnlySpan<float> x, float iscale, Span<sbyte> qs, Span<short> sums)
    {
        for (var j = 0; j < x.Length; j++) qs[j] = (sbyte)Math.Min(127, BlockSolvers.NearestInt(iscale * x[j]));
        for (var j = 0; j < 16; j++)
        {
            var sum = 0;
            for (var l = 0; l < 16; l++) sum += qs[16 * j + l];
            sums[j] = (short)sum;
        }
    }

    private static void RoundVector256(ReadOnlySpan<float> x, float iscale, Span<sbyte> qs, Span<short> sums)
    {
        var scale = Vector256.Create(iscale);
        var limit = Vector256.Create(127);
        var lowByte = Vector256.Create(0xFF);
        var bytes = MemoryMarshal.AsBytes(qs);
        ref var src = ref MemoryMarshal.GetReference(x);
        for (var j = 0; j < x.Length; j += 16)
        {
            // Keep the low byte explicitly (what ggml's int8_t store keeps), then sign-extend it for the sum.
            var a = Vector256.Min(BlockSolvers.NearestInt(scale * Vector256.LoadUnsafe(ref src, (nuint)j)), limit) & lowByte;
            var b = Vector256.Min(BlockSolvers.NearestInt(scale * Vector256.LoadUnsafe(ref src, (nuint)j + 8)), limit) & lowByte;
            SuperBlockRounding.StoreBytes(a, b, bytes[j..]);
            sums[j / 16] = (short)Vector256.Sum(((a << 24) >> 24) + ((b << 24) >> 24));
        }
    }

    /// <summary>dequantize_row_q8_K: y = d·q.</summary>
    public void Dequantize(ReadOnlySpan<byte> source, Span<float> destination)
    {
        if (KDequantize.UseVector256) DequantizeVector256(source, destination);
        else DequantizeScalar(source, destination);
    }

    internal static unsafe void DequantizeVector256(ReadOnlySpan<byte> source, Span<float> destination)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ8K>(source);
        fixed (BlockQ8K* first = blocks)
        fixed (float* output = destination)
        {
            for (var i = 0; i < blocks.Length; i++)
            {
                var block = first + i;
                var d = Vector256.Create(block->D);
                var qs = (sbyte*)&block->Qs;
                var y = output + (long)i * KQuantLayout.SuperBlock;
                for (var j = 0; j < KQuantLayout.SuperBlock; j += 8) KDequantize.StoreScaled(KDequantize.LoadSignedBytes(qs + j), d, y + j);
            }
        }
    }

    internal static void DequantizeScalar(ReadOnlySpan<byte> source, Span<float> destination)
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
