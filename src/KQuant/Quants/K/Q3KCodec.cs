using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KQuant.Gguf;

namespace KQuant.Quants.K;

/// <summary>ggml's block_q3_K (110 bytes, 3.4375 bits per weight): 256 weights in sixteen sub-blocks of 16, each
/// x = d·sc·q with 3-bit q in [-4, 3] and 6-bit signed sc. Field order is ggml's.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal struct BlockQ3K
{
    public const int Size = 110;

    /// <summary>Bit k of byte m is set when weight 32k + m has q ≥ 0 (its level, q + 4, has the high bit).</summary>
    public Bytes32 HMask;
    /// <summary>Low two bits of each level (<see cref="KQuantLayout.Pack2Bit"/>).</summary>
    public Bytes64 Qs;
    /// <summary>Sixteen 6-bit scales + 32: low nibbles of 0-7 in bytes 0-7, of 8-15 in their high nibbles; the top
    /// two bits of scale j in bits 2·(j/4) of byte 8 + j%4.</summary>
    public Bytes12 Scales;
    public Half D;
}

/// <summary>Q3_K. Without importance ggml_quantize_chunk runs quantize_row_q3_K_ref (make_q3_quants per sub-block, the
/// largest |scale| sets d); with importance quantize_row_q3_K_impl (make_qx_quants on qw·sqrt(σ² + x²), σ² = 2·mean(x²),
/// and make_qx_quants again, weighted by each sub-block's Σw, for the 6-bit scales). The optimal path has no search from
/// the reference encoding: it encodes from its own start without an imatrix and takes the reference at unit gain with one.</summary>
internal sealed class Q3KCodec : IOptimalRowCodec
{
    /// <summary>The search without an imatrix (with one Q3_K takes the reference at unit gain,
    /// <see cref="KeepBestBlocks.WeightingFor"/>): trial starts with the value of largest magnitude on level −4 (the
    /// reference's choice) or on level 3, times 0.93, 1 and 1.07. On debdocs-llama-10m, over three such grids shifted by
    /// 0.01, Q3_K_M's KLD was ×0.895 of the reference's and Q3_K_S's ×0.964 (×0.915 and ×0.999 searched from the reference
    /// encoding); one factor gave ×0.911 / ×0.976, two (0.95, 1.05) ×0.913 / ×0.993. With the final candidates
    /// (SuperBlockSearch.Encode) ×0.881 / ×0.955, and on debdocs-tiny ×0.932 / ×0.945 (from the reference ×0.956 /
    /// ×0.960). Neighbour integers raised debdocs-tiny's KLD (×0.991 / ×0.991 against ×0.961 / ×0.979 with one factor),
    /// so the candidates round their integers.</summary>
    private static readonly SuperBlockSpec OptimalSpec = new(16, SuperBlockSpec.IntegerLevels(-4, 3), Affine: false, -32, 31)
    {
        StartScales = [0.93f, 1f, 1.07f],
    };

    private const int SubBlock = 16;
    private const int SubBlocks = KQuantLayout.SuperBlock / SubBlock;

    public GgmlType Type => GgmlType.Q3_K;

    public bool UsesImportance => true;

    public void Quantize(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ3K>(destination);
        Span<sbyte> levels = stackalloc sbyte[KQuantLayout.SuperBlock];
        Span<sbyte> scaleLevels = stackalloc sbyte[SubBlocks];
        for (var i = 0; i < blocks.Length; i++)
        {
            ref var block = ref blocks[i];
            var x = source.Slice(i * KQuantLayout.SuperBlock, KQuantLayout.SuperBlock);
            if (importance.IsEmpty)
            {
                block.D = GgmlFp16.FromSingle(ChooseScalesReference(x, levels, scaleLevels));
            }
            else
            {
                block.D = GgmlFp16.FromSingle(ChooseScalesWeighted(x,
                    importance.Slice(i * KQuantLayout.SuperBlock, KQuantLayout.SuperBlock), levels, scaleLevels));
            }
            PackScales(scaleLevels, block.Scales);
            RoundToStoredScales(x, levels, ref block);
            PackLevels(levels, ref block);
        }
    }

    public void QuantizeOptimal(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance, RowRole role) =>
        KeepBestBlocks.Quantize<BlockQ3K>(this, KQuantLayout.SuperBlock, source, destination, importance, role, improve: null,
            importance.IsEmpty ? EncodeBlock : null); // with an imatrix: the reference at unit gain (KeepBestBlocks.WeightingFor)

    private static bool EncodeBlock(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ref BlockQ3K block)
    {
        Span<byte> levels = stackalloc byte[KQuantLayout.SuperBlock];
        Span<int> scales = stackalloc int[SubBlocks];
        if (!SuperBlockSearch.Encode(OptimalSpec, x, w, levels, scales, default, out block.D, out _)) return false;
        Span<sbyte> scaleLevels = stackalloc sbyte[SubBlocks];
        for (var j = 0; j < SubBlocks; j++) scaleLevels[j] = (sbyte)(scales[j] + 32);
        PackScales(scaleLevels, block.Scales);
        PackLevels(MemoryMarshal.Cast<byte, sbyte>(levels), ref block);
        return true;
    }

    /// <summary>The reference path: returns d and fills the levels (q + 4) and the 6-bit scale levels (sc + 32).</summary>
    private static float ChooseScalesReference(ReadOnlySpan<float> x, Span<sbyte> levels, Span<sbyte> scaleLevels)
    {
        Span<float> scales = stackalloc float[SubBlocks];
        BlockSolvers.MakeQ3QuantsForGroups(4, x, SubBlock, levels, scales);
        var (maxScale, _) = BlockSolvers.SignedAbsMax(scales);
        if (maxScale == 0)
        {
            // ggml leaves all scale bytes zero here, which is what 6-bit levels of 0 pack to.
            scaleLevels.Clear();
            return 0f;
        }
        var iscale = -32f / maxScale;
        for (var j = 0; j < SubBlocks; j++)
        {
            // ggml rounds into an int8_t before clamping: truncate first, as it does.
            var l = (sbyte)BlockSolvers.NearestInt(iscale * scales[j]);
            scaleLevels[j] = (sbyte)(Math.Clamp((int)l, -32, 31) + 32);
        }
        return 1 / iscale;
    }

    /// <summary>The importance path: returns d and fills the levels (q + 4) and the 6-bit scale levels (sc + 32).</summary>
    private static float ChooseScalesWeighted(ReadOnlySpan<float> x, ReadOnlySpan<float> importance, Span<sbyte> levels, Span<sbyte> scaleLevels)
    {
        Span<float> scales = stackalloc float[SubBlocks];
        Span<float> subBlockWeights = stackalloc float[SubBlocks];
        Span<float> weights = stackalloc float[KQuantLayout.SuperBlock];
        var sigma2 = 2 * SuperBlockRounding.SumOfSquares(x) / KQuantLayout.SuperBlock;
        SuperBlockRounding.ImportanceWeights(x, importance, sigma2, weights);
        for (var j = 0; j < SubBlocks; j++) subBlockWeights[j] = SuperBlockRounding.Sum(weights.Slice(SubBlock * j, SubBlock));
        BlockSolvers.MakeQxQuantsForGroups(4, x, weights, SubBlock, levels, scales);
        return BlockSolvers.MakeQxQuants(32, scales, scaleLevels, subBlockWeights);
    }

    private static void PackScales(ReadOnlySpan<sbyte> scaleLevels, Span<byte> packed)
    {
        packed.Clear();
        for (var j = 0; j < SubBlocks; j++)
        {
            int l = scaleLevels[j];
            if (j < 8) packed[j] = (byte)(l & 0xF);
            else packed[j - 8] |= (byte)((l & 0xF) << 4);
            packed[j % 4 + 8] |= (byte)((l >> 4) << (2 * (j / 4)));
        }
    }

    /// <summary>The signed 6-bit scale of sub-block <paramref name="j"/>, sc in [-32, 31].</summary>
    internal static int UnpackScale(int j, ReadOnlySpan<byte> packed)
    {
        var low = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
        var high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        return (sbyte)((low | (high << 4)) - 32);
    }

    /// <summary>Rounds every sub-block against its stored scale; a sub-block whose scale is zero keeps the search's levels.</summary>
    private static void RoundToStoredScales(ReadOnlySpan<float> x, Span<sbyte> levels, ref BlockQ3K block)
    {
        var d = (float)block.D;
        ReadOnlySpan<byte> packed = block.Scales;
        for (var j = 0; j < SubBlocks; j++)
        {
            var scale = d * UnpackScale(j, packed);
            if (scale == 0) continue;
            SuperBlockRounding.RoundSymmetric(x.Slice(SubBlock * j, SubBlock), levels.Slice(SubBlock * j, SubBlock), scale, -4, 3);
        }
    }

    /// <summary>Splits each level (0-7) into the high-bit mask and the 2-bit low part.</summary>
    private static void PackLevels(Span<sbyte> levels, ref BlockQ3K block)
    {
        Span<byte> hmask = block.HMask;
        if (Vector256.IsHardwareAccelerated)
        {
            var bytes = MemoryMarshal.AsBytes(levels);
            var mask = Vector256<byte>.Zero;
            for (var k = 0; k < 8; k++)
            {
                var v = Vector256.Create<byte>(bytes[(32 * k)..]);
                mask |= ((v >>> 2) & Vector256<byte>.One) << k;
                (v & Vector256.Create((byte)3)).CopyTo(bytes[(32 * k)..]);
            }
            mask.CopyTo(hmask);
            KQuantLayout.Pack2Bit(bytes, block.Qs);
            return;
        }
        hmask.Clear();
        for (var j = 0; j < KQuantLayout.SuperBlock; j++)
        {
            if (levels[j] > 3)
            {
                hmask[j % 32] |= (byte)(1 << (j / 32));
                levels[j] -= 4;
            }
        }
        KQuantLayout.Pack2Bit(MemoryMarshal.AsBytes(levels), block.Qs);
    }

    /// <summary>dequantize_row_q3_K: y = (d·sc)·(low - (high bit clear ? 4 : 0)).</summary>
    public void Dequantize(ReadOnlySpan<byte> source, Span<float> destination)
    {
        if (KDequantize.UseVector256) DequantizeVector256(source, destination);
        else DequantizeScalar(source, destination);
    }

    internal static unsafe void DequantizeVector256(ReadOnlySpan<byte> source, Span<float> destination)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ3K>(source);
        var three = Vector256.Create(3);
        var one = Vector256.Create(1);
        var four = Vector256.Create(4);
        fixed (BlockQ3K* first = blocks)
        fixed (float* output = destination)
        {
            for (var i = 0; i < blocks.Length; i++)
            {
                var block = first + i;
                var d = (float)block->D;
                ReadOnlySpan<byte> scales = block->Scales;
                var qs = (byte*)&block->Qs;
                var hmask = (byte*)&block->HMask;
                var y = output + (long)i * KQuantLayout.SuperBlock;
                for (var j = 0; j < SubBlocks; j++)
                {
                    var half = j / 8;
                    var pairInHalf = (j % 8) / 2;
                    var shift = 2 * pairInHalf;
                    var offset = 16 * (j % 2);
                    var bit = 4 * half + pairInHalf;
                    var dl = Vector256.Create(d * UnpackScale(j, scales));
                    for (var l = 0; l < SubBlock; l += 8)
                    {
                        var low = (KDequantize.LoadBytes(qs + 32 * half + offset + l) >>> shift) & three;
                        var high = (KDequantize.LoadBytes(hmask + offset + l) >>> bit) & one;
                        KDequantize.StoreScaled(low - four + (high << 2), dl, y + SubBlock * j + l);
                    }
                }
            }
        }
    }

    internal static void DequantizeScalar(ReadOnlySpan<byte> source, Span<float> destination)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ3K>(source);
        for (var i = 0; i < blocks.Length; i++)
        {
            ref readonly var block = ref blocks[i];
            var d = (float)block.D;
            ReadOnlySpan<byte> scales = block.Scales;
            ReadOnlySpan<byte> qs = block.Qs;
            ReadOnlySpan<byte> hmask = block.HMask;
            var y = destination.Slice(i * KQuantLayout.SuperBlock, KQuantLayout.SuperBlock);
            for (var j = 0; j < SubBlocks; j++)
            {
                var half = j / 8;
                var pairInHalf = (j % 8) / 2;
                var shift = 2 * pairInHalf;
                var offset = 16 * (j % 2);
                var highBit = 1 << (4 * half + pairInHalf);
                var q = qs.Slice(32 * half + offset, 16);
                var h = hmask.Slice(offset, 16);
                var dl = d * UnpackScale(j, scales);
                var outGroup = y.Slice(SubBlock * j, SubBlock);
                for (var l = 0; l < SubBlock; l++) outGroup[l] = dl * (((q[l] >> shift) & 3) - ((h[l] & highBit) != 0 ? 0 : 4));
            }
        }
    }
}
