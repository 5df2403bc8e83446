using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KQuant.Gguf;

namespace KQuant.Quants.K;

/// <summary>ggml's block_q5_K (176 bytes, 5.5 bits per weight): as Q4_K with a fifth bit per level in <see cref="Qh"/>.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal struct BlockQ5K
{
    public const int Size = 176;

    public Half D;
    public Half DMin;
    /// <summary>Eight 6-bit scales and eight 6-bit mins (<see cref="KQuantLayout.PackScaleMins"/>).</summary>
    public Bytes12 Scales;
    /// <summary>High bits: bit 2p of byte l is the fifth bit of weight 64p + l, bit 2p+1 that of weight 64p + 32 + l.</summary>
    public Bytes32 Qh;
    /// <summary>Low four bits, packed as in Q4_K.</summary>
    public Bytes128 Qs;
}

/// <summary>Q5_K. Without importance ggml_quantize_chunk runs quantize_row_q5_K_ref (make_qkx2_quants, weights rms + |x|,
/// search -0.5 + 0.1·step, 16 steps); with importance quantize_row_q5_K_impl (as Q4_K's, scale levels clamped to 63).</summary>
internal sealed class Q5KCodec : IOptimalRowCodec
{
    private static readonly AffineSuperBlock.Format Format = new(Nmax: 31, ReferenceRmin: -0.5f, ReferenceSteps: 15, ClampScaleLevels: true);

    public GgmlType Type => GgmlType.Q5_K;

    public bool UsesImportance => true;

    public void Quantize(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ5K>(destination);
        Span<byte> levels = stackalloc byte[KQuantLayout.SuperBlock];
        for (var i = 0; i < blocks.Length; i++)
        {
            ref var block = ref blocks[i];
            AffineSuperBlock.Quantize(Format, source.Slice(i * KQuantLayout.SuperBlock, KQuantLayout.SuperBlock),
                KQuantLayout.BlockImportance(importance, i), levels, block.Scales, out block.D, out block.DMin);
            PackLevels(levels, block.Qs, block.Qh);
        }
    }

    public void QuantizeOptimal(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance, RowRole role) =>
        KeepBestBlocks.Quantize<BlockQ5K>(this, KQuantLayout.SuperBlock, source, destination, importance, role, ImproveBlock,
            importance.IsEmpty ? EncodeBlock : null); // with an imatrix the search from the reference had the lower KLD

    private static bool EncodeBlock(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ref BlockQ5K block)
    {
        Span<byte> levels = stackalloc byte[KQuantLayout.SuperBlock];
        if (!AffineSuperBlock.Encode(Format, x, w, levels, block.Scales, out block.D, out block.DMin)) return false;
        PackLevels(levels, block.Qs, block.Qh);
        return true;
    }

    private static void ImproveBlock(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ref BlockQ5K block)
    {
        Span<byte> levels = stackalloc byte[KQuantLayout.SuperBlock];
        ReadOnlySpan<byte> qs = block.Qs;
        ReadOnlySpan<byte> qh = block.Qh;
        for (var pair = 0; pair < 4; pair++)
        {
            for (var l = 0; l < 32; l++)
            {
                levels[64 * pair + l] = (byte)((qs[32 * pair + l] & 0xF) | (((qh[l] >> (2 * pair)) & 1) << 4));
                levels[64 * pair + 32 + l] = (byte)((qs[32 * pair + l] >> 4) | (((qh[l] >> (2 * pair + 1)) & 1) << 4));
            }
        }
        AffineSuperBlock.Improve(Format, x, w, levels, block.Scales, ref block.D, ref block.DMin);
        PackLevels(levels, block.Qs, block.Qh);
    }

    /// <summary>Low four bits of each level into <paramref name="qs"/> as in Q4_K; the fifth bit into <paramref name="qh"/>.</summary>
    private static void PackLevels(ReadOnlySpan<byte> levels, Span<byte> qs, Span<byte> qh)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            var low = Vector256.Create((byte)0xF);
            var high = Vector256<byte>.Zero;
            for (var pair = 0; pair < 4; pair++)
            {
                var l1 = Vector256.Create(levels[(64 * pair)..]);
                var l2 = Vector256.Create(levels[(64 * pair + 32)..]);
                ((l1 & low) | ((l2 & low) << 4)).CopyTo(qs[(32 * pair)..]);
                high |= ((l1 >>> 4) << (2 * pair)) | ((l2 >>> 4) << (2 * pair + 1));
            }
            high.CopyTo(qh);
            return;
        }
        qh.Clear();
        for (var pair = 0; pair < KQuantLayout.SuperBlock / 64; pair++)
        {
            var src = levels.Slice(64 * pair, 64);
            var dst = qs.Slice(32 * pair, 32);
            var lowBit = (byte)(1 << (2 * pair));
            var highBit = (byte)(2 << (2 * pair));
            for (var j = 0; j < 32; j++)
            {
                int l1 = src[j], l2 = src[j + 32];
                if (l1 > 15) { l1 -= 16; qh[j] |= lowBit; }
                if (l2 > 15) { l2 -= 16; qh[j] |= highBit; }
                dst[j] = (byte)(l1 | (l2 << 4));
            }
        }
    }

    /// <summary>dequantize_row_q5_K: y = (d·sc)·(q + 16·h) - dmin·m.</summary>
    public void Dequantize(ReadOnlySpan<byte> source, Span<float> destination)
    {
        if (KDequantize.UseVector256) DequantizeVector256(source, destination);
        else DequantizeScalar(source, destination);
    }

    internal static unsafe void DequantizeVector256(ReadOnlySpan<byte> source, Span<float> destination)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ5K>(source);
        var lowNibble = Vector256.Create(0xF);
        var one = Vector256.Create(1);
        fixed (BlockQ5K* first = blocks)
        fixed (float* output = destination)
        {
            for (var i = 0; i < blocks.Length; i++)
            {
                var block = first + i;
                var d = (float)block->D;
                var min = (float)block->DMin;
                ReadOnlySpan<byte> scales = block->Scales;
                var qs = (byte*)&block->Qs;
                var qh = (byte*)&block->Qh;
                var y = output + (long)i * KQuantLayout.SuperBlock;
                for (var pair = 0; pair < 4; pair++)
                {
                    var (scale1, offset1, scale2, offset2) = AffineSuperBlock.PairScales(d, min, scales, pair);
                    var d1 = Vector256.Create(scale1);
                    var min1 = Vector256.Create(offset1);
                    var d2 = Vector256.Create(scale2);
                    var min2 = Vector256.Create(offset2);
                    var q = qs + 32 * pair;
                    var out1 = y + 64 * pair;
                    for (var l = 0; l < 32; l += 8)
                    {
                        var v = KDequantize.LoadBytes(q + l);
                        var h = KDequantize.LoadBytes(qh + l);
                        var high1 = ((h >>> (2 * pair)) & one) << 4;
                        var high2 = ((h >>> (2 * pair + 1)) & one) << 4;
                        KDequantize.StoreAffine((v & lowNibble) + high1, d1, min1, out1 + l);
                        KDequantize.StoreAffine((v >>> 4) + high2, d2, min2, out1 + 32 + l);
                    }
                }
            }
        }
    }

    internal static void DequantizeScalar(ReadOnlySpan<byte> source, Span<float> destination)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ5K>(source);
        for (var i = 0; i < blocks.Length; i++)
        {
            ref readonly var block = ref blocks[i];
            var d = (float)block.D;
            var min = (float)block.DMin;
            ReadOnlySpan<byte> scales = block.Scales;
            ReadOnlySpan<byte> qs = block.Qs;
            ReadOnlySpan<byte> qh = block.Qh;
            var y = destination.Slice(i * KQuantLayout.SuperBlock, KQuantLayout.SuperBlock);
            for (var pair = 0; pair < 4; pair++)
            {
                var (d1, min1, d2, min2) = AffineSuperBlock.PairScales(d, min, scales, pair);
                var lowBit = 1 << (2 * pair);
                var highBit = 2 << (2 * pair);
                var q = qs.Slice(32 * pair, 32);
                var out1 = y.Slice(64 * pair, 32);
                var out2 = y.Slice(64 * pair + 32, 32);
                for (var l = 0; l < 32; l++) out1[l] = d1 * ((q[l] & 0xF) + ((qh[l] & lowBit) != 0 ? 16 : 0)) - min1;
                for (var l = 0; l < 32; l++) out2[l] = d2 * ((q[l] >> 4) + ((qh[l] & highBit) != 0 ? 16 : 0)) - min2;
            }
        }
    }
}
