using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KQuant.Gguf;

namespace KQuant.Quants.K;

/// <summary>ggml's block_q4_K (144 bytes, 4.5 bits per weight): 256 weights in eight sub-blocks of 32, each
/// x = d·sc·q - dmin·m with 4-bit q and 6-bit sc, m. Field order is ggml's.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal struct BlockQ4K
{
    public const int Size = 144;

    /// <summary>Super-block scale of the sub-block scales.</summary>
    public Half D;
    /// <summary>Super-block scale of the sub-block mins.</summary>
    public Half DMin;
    /// <summary>Eight 6-bit scales and eight 6-bit mins (<see cref="KQuantLayout.PackScaleMins"/>).</summary>
    public Bytes12 Scales;
    /// <summary>Levels, two per byte: byte l of each 32-byte run holds weight l (low nibble) and l+32 (high nibble) of a 64-weight pair of sub-blocks.</summary>
    public Bytes128 Qs;
}

/// <summary>Q4_K. Without importance ggml_quantize_chunk runs quantize_row_q4_K_ref (make_qkx2_quants, weights rms + |x|);
/// with importance quantize_row_q4_K_impl (make_qkx3_quants with qw·sqrt(σ² + x²), make_qp_quants for the 6-bit scales).</summary>
internal sealed class Q4KCodec : IOptimalRowCodec
{
    private static readonly AffineSuperBlock.Format Format = new(Nmax: 15, ReferenceRmin: -1f, ReferenceSteps: 20, ClampScaleLevels: false);

    public GgmlType Type => GgmlType.Q4_K;

    public bool UsesImportance => true;

    public void Quantize(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ4K>(destination);
        Span<byte> levels = stackalloc byte[KQuantLayout.SuperBlock];
        for (var i = 0; i < blocks.Length; i++)
        {
            ref var block = ref blocks[i];
            AffineSuperBlock.Quantize(Format, source.Slice(i * KQuantLayout.SuperBlock, KQuantLayout.SuperBlock),
                KQuantLayout.BlockImportance(importance, i), levels, block.Scales, out block.D, out block.DMin);
            PackNibbles(levels, block.Qs);
        }
    }

    public void QuantizeOptimal(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance, RowRole role) =>
        KeepBestBlocks.Quantize<BlockQ4K>(this, KQuantLayout.SuperBlock, source, destination, importance, role, ImproveBlock,
            importance.IsEmpty ? EncodeBlock : null); // with an imatrix the search from the reference had the lower KLD

    private static bool EncodeBlock(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ref BlockQ4K block)
    {
        Span<byte> levels = stackalloc byte[KQuantLayout.SuperBlock];
        if (!AffineSuperBlock.Encode(Format, x, w, levels, block.Scales, out block.D, out block.DMin)) return false;
        PackNibbles(levels, block.Qs);
        return true;
    }

    private static void ImproveBlock(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ref BlockQ4K block)
    {
        Span<byte> levels = stackalloc byte[KQuantLayout.SuperBlock];
        UnpackNibbles(block.Qs, levels);
        AffineSuperBlock.Improve(Format, x, w, levels, block.Scales, ref block.D, ref block.DMin);
        PackNibbles(levels, block.Qs);
    }

    /// <summary>The inverse of <see cref="PackNibbles"/>.</summary>
    private static void UnpackNibbles(ReadOnlySpan<byte> qs, Span<byte> levels)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            var lowNibble = Vector256.Create((byte)0xF);
            for (var pair = 0; pair < 4; pair++)
            {
                var packed = Vector256.Create(qs[(32 * pair)..]);
                (packed & lowNibble).CopyTo(levels[(64 * pair)..]);
                (packed >>> 4).CopyTo(levels[(64 * pair + 32)..]);
            }
            return;
        }
        for (var pair = 0; pair < KQuantLayout.SuperBlock / 64; pair++)
        {
            for (var l = 0; l < 32; l++)
            {
                levels[64 * pair + l] = (byte)(qs[32 * pair + l] & 0xF);
                levels[64 * pair + 32 + l] = (byte)(qs[32 * pair + l] >> 4);
            }
        }
    }

    /// <summary>Each 64 weights become 32 bytes: weight l in the low nibble, weight l+32 in the high one.</summary>
    private static void PackNibbles(ReadOnlySpan<byte> levels, Span<byte> qs)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            for (var pair = 0; pair < 4; pair++)
            {
                (Vector256.Create(levels[(64 * pair)..]) | (Vector256.Create(levels[(64 * pair + 32)..]) << 4)).CopyTo(qs[(32 * pair)..]);
            }
            return;
        }
        for (var pair = 0; pair < KQuantLayout.SuperBlock / 64; pair++)
        {
            var src = levels.Slice(64 * pair, 64);
            var dst = qs.Slice(32 * pair, 32);
            for (var l = 0; l < 32; l++) dst[l] = (byte)(src[l] | (src[l + 32] << 4));
        }
    }

    /// <summary>dequantize_row_q4_K: y = (d·sc)·q - dmin·m.</summary>
    public void Dequantize(ReadOnlySpan<byte> source, Span<float> destination)
    {
        if (KDequantize.UseVector256) DequantizeVector256(source, destination);
        else DequantizeScalar(source, destination);
    }

    internal static unsafe void DequantizeVector256(ReadOnlySpan<byte> source, Span<float> destination)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ4K>(source);
        var lowNibble = Vector256.Create(0xF);
        fixed (BlockQ4K* first = blocks)
        fixed (float* output = destination)
        {
            for (var i = 0; i < blocks.Length; i++)
            {
                var block = first + i;
                var d = (float)block->D;
                var min = (float)block->DMin;
                ReadOnlySpan<byte> scales = block->Scales;
                var qs = (byte*)&block->Qs;
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
                        KDequantize.StoreAffine(v & lowNibble, d1, min1, out1 + l);
                        KDequantize.StoreAffine(v >>> 4, d2, min2, out1 + 32 + l);
                    }
                }
            }
        }
    }

    internal static void DequantizeScalar(ReadOnlySpan<byte> source, Span<float> destination)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ4K>(source);
        for (var i = 0; i < blocks.Length; i++)
        {
            ref readonly var block = ref blocks[i];
            var d = (float)block.D;
            var min = (float)block.DMin;
            ReadOnlySpan<byte> scales = block.Scales;
            ReadOnlySpan<byte> qs = block.Qs;
            var y = destination.Slice(i * KQuantLayout.SuperBlock, KQuantLayout.SuperBlock);
            for (var pair = 0; pair < 4; pair++)
            {
                var (d1, min1, d2, min2) = AffineSuperBlock.PairScales(d, min, scales, pair);
                var q = qs.Slice(32 * pair, 32);
                var out1 = y.Slice(64 * pair, 32);
                var out2 = y.Slice(64 * pair + 32, 32);
                for (var l = 0; l < 32; l++) out1[l] = d1 * (q[l] & 0xF) - min1;
                for (var l = 0; l < 32; l++) out2[l] = d2 * (q[l] >> 4) - min2;
            }
        }
    }
}
