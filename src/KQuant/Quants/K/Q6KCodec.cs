using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KQuant.Gguf;

namespace KQuant.Quants.K;

/// <summary>ggml's block_q6_K (210 bytes, 6.5625 bits per weight): 256 weights in sixteen sub-blocks of 16, each
/// x = d·sc·q with 6-bit q in [-32, 31] and 8-bit signed sc. Field order is ggml's.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal struct BlockQ6K
{
    public const int Size = 210;

    /// <summary>Low four bits of the levels (q + 32): per 128 weights, 64 bytes; byte l holds weights l and l+64 of
    /// the half, byte 32+l weights l+32 and l+96.</summary>
    public Bytes128 Ql;
    /// <summary>High two bits: per 128 weights, 32 bytes; byte l holds weights l, l+32, l+64, l+96 from the low bits up.</summary>
    public Bytes64 Qh;
    public SBytes16 Scales;
    public Half D;
}

/// <summary>Q6_K. ggml_quantize_chunk runs quantize_row_q6_K_ref without importance and quantize_row_q6_K_impl with it;
/// both call make_qx_quants per sub-block (weights x² without importance, the importance values themselves with it —
/// Q6_K does not use σ²).</summary>
internal sealed class Q6KCodec : IOptimalRowCodec
{
    private const int SubBlock = 16;
    private const int SubBlocks = KQuantLayout.SuperBlock / SubBlock;

    public GgmlType Type => GgmlType.Q6_K;

    public bool UsesImportance => true;

    public void Quantize(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ6K>(destination);
        Span<sbyte> levels = stackalloc sbyte[KQuantLayout.SuperBlock];
        Span<float> scales = stackalloc float[SubBlocks];
        for (var i = 0; i < blocks.Length; i++)
        {
            ref var block = ref blocks[i];
            var x = source.Slice(i * KQuantLayout.SuperBlock, KQuantLayout.SuperBlock);
            var blockImportance = KQuantLayout.BlockImportance(importance, i);
            BlockSolvers.MakeQxQuantsForGroups(32, x, blockImportance, SubBlock, levels, scales);
            var (maxScale, maxAbsScale) = BlockSolvers.SignedAbsMax(scales);
            if (maxAbsScale < BlockSolvers.GroupMaxEps)
            {
                block = default;
                continue;
            }

            var iscale = -128f / maxScale;
            block.D = GgmlFp16.FromSingle(1 / iscale);
            Span<sbyte> packedScales = block.Scales;
            for (var j = 0; j < SubBlocks; j++) packedScales[j] = (sbyte)Math.Min(127, BlockSolvers.NearestInt(iscale * scales[j]));

            var d = (float)block.D;
            for (var j = 0; j < SubBlocks; j++)
            {
                var scale = d * packedScales[j];
                if (scale == 0) continue;
                SuperBlockRounding.RoundSymmetric(x.Slice(SubBlock * j, SubBlock), levels.Slice(SubBlock * j, SubBlock), scale, -32, 31);
            }
            PackLevels(MemoryMarshal.AsBytes(levels), block.Ql, block.Qh);
        }
    }

    /// <summary>The optimal path encodes every block from its own start (<see cref="IntegerScaleSweep"/>): no reference
    /// encoding, and a block it cannot encode (nothing above GROUP_MAX_EPS, a D beyond fp16) goes to <see cref="Quantize"/>.</summary>
    public void QuantizeOptimal(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance, RowRole role) =>
        KeepBestBlocks.Quantize<BlockQ6K>(this, KQuantLayout.SuperBlock, source, destination, importance, role, improve: null, Encode);

    private static bool Encode(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ref BlockQ6K block)
    {
        Span<byte> levels = stackalloc byte[KQuantLayout.SuperBlock];
        if (!IntegerScaleSweep.Encode(x, w, block.Scales, levels, out var d)) return false;
        block.D = d;
        PackLevels(levels, block.Ql, block.Qh);
        return true;
    }

    private static void PackLevels(ReadOnlySpan<byte> levels, Span<byte> ql, Span<byte> qh)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            var lowNibble = Vector256.Create((byte)0xF);
            for (var half = 0; half < 2; half++)
            {
                var src = levels.Slice(128 * half, 128);
                var a = Vector256.Create(src);
                var b = Vector256.Create(src[32..]);
                var c = Vector256.Create(src[64..]);
                var d = Vector256.Create(src[96..]);
                ((a & lowNibble) | ((c & lowNibble) << 4)).CopyTo(ql[(64 * half)..]);
                ((b & lowNibble) | ((d & lowNibble) << 4)).CopyTo(ql[(64 * half + 32)..]);
                ((a >>> 4) | ((b >>> 4) << 2) | ((c >>> 4) << 4) | ((d >>> 4) << 6)).CopyTo(qh[(32 * half)..]);
            }
            return;
        }
        for (var half = 0; half < 2; half++)
        {
            var src = levels.Slice(128 * half, 128);
            var low = ql.Slice(64 * half, 64);
            var high = qh.Slice(32 * half, 32);
            for (var l = 0; l < 32; l++)
            {
                low[l] = (byte)((src[l] & 0xF) | ((src[l + 64] & 0xF) << 4));
                low[l + 32] = (byte)((src[l + 32] & 0xF) | ((src[l + 96] & 0xF) << 4));
                high[l] = (byte)((src[l] >> 4) | ((src[l + 32] >> 4) << 2) | ((src[l + 64] >> 4) << 4) | ((src[l + 96] >> 4) << 6));
            }
        }
    }

    /// <summary>dequantize_row_q6_K: y = (d·sc)·q.</summary>
    public void Dequantize(ReadOnlySpan<byte> source, Span<float> destination)
    {
        if (KDequantize.UseVector256) DequantizeVector256(source, destination);
        else DequantizeScalar(source, destination);
    }

    internal static unsafe void DequantizeVector256(ReadOnlySpan<byte> source, Span<float> destination)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ6K>(source);
        var lowNibble = Vector256.Create(0xF);
        var three = Vector256.Create(3);
        var bias = Vector256.Create(32);
        fixed (BlockQ6K* first = blocks)
        fixed (float* output = destination)
        {
            for (var i = 0; i < blocks.Length; i++)
            {
                var block = first + i;
                var d = (float)block->D;
                var scales = (sbyte*)&block->Scales;
                for (var half = 0; half < 2; half++)
                {
                    var ql = (byte*)&block->Ql + 64 * half;
                    var qh = (byte*)&block->Qh + 32 * half;
                    var sc = scales + 8 * half;
                    var y = output + (long)i * KQuantLayout.SuperBlock + 128 * half;
                    for (var l = 0; l < 32; l += 8)
                    {
                        var group = l / 16;
                        var low1 = KDequantize.LoadBytes(ql + l);
                        var low2 = KDequantize.LoadBytes(ql + l + 32);
                        var high = KDequantize.LoadBytes(qh + l);
                        KDequantize.StoreScaled(((low1 & lowNibble) | ((high & three) << 4)) - bias, Vector256.Create(d * sc[group]), y + l);
                        KDequantize.StoreScaled(((low2 & lowNibble) | (((high >>> 2) & three) << 4)) - bias, Vector256.Create(d * sc[group + 2]), y + l + 32);
                        KDequantize.StoreScaled(((low1 >>> 4) | (((high >>> 4) & three) << 4)) - bias, Vector256.Create(d * sc[group + 4]), y + l + 64);
                        KDequantize.StoreScaled(((low2 >>> 4) | (((high >>> 6) & three) << 4)) - bias, Vector256.Create(d * sc[group + 6]), y + l + 96);
                    }
                }
            }
        }
    }

    internal static void DequantizeScalar(ReadOnlySpan<byte> source, Span<float> destination)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ6K>(source);
        for (var i = 0; i < blocks.Length; i++)
        {
            ref readonly var block = ref blocks[i];
            var d = (float)block.D;
            ReadOnlySpan<byte> ql = block.Ql;
            ReadOnlySpan<byte> qh = block.Qh;
            ReadOnlySpan<sbyte> sc = block.Scales;
            var y = destination.Slice(i * KQuantLayout.SuperBlock, KQuantLayout.SuperBlock);
            for (var half = 0; half < 2; half++)
            {
                var low = ql.Slice(64 * half, 64);
                var high = qh.Slice(32 * half, 32);
                var s = sc.Slice(8 * half, 8);
                var outHalf = y.Slice(128 * half, 128);
                for (var l = 0; l < 32; l++)
                {
                    var group = l / 16;
                    var q1 = (sbyte)((low[l] & 0xF) | (((high[l] >> 0) & 3) << 4)) - 32;
                    var q2 = (sbyte)((low[l + 32] & 0xF) | (((high[l] >> 2) & 3) << 4)) - 32;
                    var q3 = (sbyte)((low[l] >> 4) | (((high[l] >> 4) & 3) << 4)) - 32;
                    var q4 = (sbyte)((low[l + 32] >> 4) | (((high[l] >> 6) & 3) << 4)) - 32;
                    outHalf[l] = d * s[group] * q1;
                    outHalf[l + 32] = d * s[group + 2] * q2;
                    outHalf[l + 64] = d * s[group + 4] * q3;
                    outHalf[l + 96] = d * s[group + 6] * q4;
                }
            }
        }
    }
}
