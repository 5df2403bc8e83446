using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KQuant.Gguf;

namespace KQuant.Quants.K;

/// <summary>ggml's block_q2_K (84 bytes, 2.625 bits per weight): 256 weights in sixteen sub-blocks of 16, each
/// x = d·sc·q - dmin·m with 2-bit q and 4-bit sc, m. Field order is ggml's.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal struct BlockQ2K
{
    public const int Size = 84;

    /// <summary>Per sub-block: scale level in the low nibble, min level in the high nibble.</summary>
    public Bytes16 Scales;
    /// <summary>Levels, four per byte (<see cref="KQuantLayout.Pack2Bit"/>).</summary>
    public Bytes64 Qs;
    public Half D;
    public Half DMin;
}

/// <summary>Q2_K. Without importance ggml_quantize_chunk runs quantize_row_q2_K_ref (make_qkx2_quants on |x| weights with
/// absolute error, 4-bit scales from the largest scale and min); with importance quantize_row_q2_K_impl
/// (make_qkx3_quants on qw·sqrt(σ² + x²) with σ² = mean(x²), make_qp_quants for the 4-bit scales and mins).</summary>
internal sealed class Q2KCodec : IOptimalRowCodec
{
    /// <summary>The trial starts: the reference path's scale grid (make_qkx2_quants from nmax − 0.5, 16 steps). Widened
    /// down to nmax − 1 (as Q5_K is) it raised Q2_K's KLD from ×0.890 to ×0.921 of the reference's on debdocs-llama-10m
    /// and from ×0.858 to ×0.914 on debdocs-tiny.</summary>
    private static readonly SuperBlockSpec OptimalSpec = new(16, SuperBlockSpec.IntegerLevels(0, 3), Affine: true, 0, 15, 15)
    {
        NeighbourIntegers = true,
        StartScales = SuperBlockSpec.SpanSteps(3, -0.5f, 16),
    };

    private const int SubBlock = 16;
    private const int SubBlocks = KQuantLayout.SuperBlock / SubBlock;
    private const int Nmax = 3;

    public GgmlType Type => GgmlType.Q2_K;

    public bool UsesImportance => true;

    public void Quantize(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ2K>(destination);
        Span<byte> levels = stackalloc byte[KQuantLayout.SuperBlock];
        for (var i = 0; i < blocks.Length; i++)
        {
            ref var block = ref blocks[i];
            var x = source.Slice(i * KQuantLayout.SuperBlock, KQuantLayout.SuperBlock);
            if (importance.IsEmpty)
            {
                QuantizeReference(x, levels, ref block);
            }
            else
            {
                QuantizeWeighted(x, importance.Slice(i * KQuantLayout.SuperBlock, KQuantLayout.SuperBlock), levels, ref block);
            }
            RoundToStoredScales(x, levels, ref block);
            KQuantLayout.Pack2Bit(levels, block.Qs);
        }
    }

    public void QuantizeOptimal(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance, RowRole role) =>
        KeepBestBlocks.Quantize<BlockQ2K>(this, KQuantLayout.SuperBlock, source, destination, importance, role, ImproveBlock,
            importance.IsEmpty ? EncodeBlock : null); // with an imatrix the search from the reference had the lower KLD

    private static bool EncodeBlock(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ref BlockQ2K block)
    {
        Span<byte> levels = stackalloc byte[KQuantLayout.SuperBlock];
        Span<int> scales = stackalloc int[SubBlocks];
        Span<int> mins = stackalloc int[SubBlocks];
        if (!SuperBlockSearch.Encode(OptimalSpec, x, w, levels, scales, mins, out block.D, out block.DMin)) return false;
        PackScales(scales, mins, block.Scales);
        KQuantLayout.Pack2Bit(levels, block.Qs);
        return true;
    }

    private static void PackScales(ReadOnlySpan<int> scales, ReadOnlySpan<int> mins, Span<byte> packed)
    {
        for (var j = 0; j < SubBlocks; j++) packed[j] = (byte)(scales[j] | (mins[j] << 4));
    }

    private static void ImproveBlock(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ref BlockQ2K block)
    {
        Span<byte> levels = stackalloc byte[KQuantLayout.SuperBlock];
        KQuantLayout.Unpack2Bit(block.Qs, levels);
        Span<int> scales = stackalloc int[SubBlocks];
        Span<int> mins = stackalloc int[SubBlocks];
        Span<byte> packed = block.Scales;
        for (var j = 0; j < SubBlocks; j++) (scales[j], mins[j]) = (packed[j] & 0xF, packed[j] >> 4);
        SuperBlockSearch.Improve(OptimalSpec, x, w, levels, scales, mins, ref block.D, ref block.DMin);
        PackScales(scales, mins, packed);
        KQuantLayout.Pack2Bit(levels, block.Qs);
    }

    private static void QuantizeReference(ReadOnlySpan<float> x, Span<byte> levels, ref BlockQ2K block)
    {
        const float q4scale = 15f;
        Span<float> scales = stackalloc float[SubBlocks];
        Span<float> mins = stackalloc float[SubBlocks];
        Span<float> weights = stackalloc float[KQuantLayout.SuperBlock];
        SuperBlockRounding.AddAbsolute(0f, x, weights);
        BlockSolvers.MakeQkx2QuantsForGroups(Nmax, x, weights, SubBlock, levels, scales, mins, -0.5f, 0.1f, 15, useMad: true);
        float maxScale = 0, maxMin = 0;
        for (var j = 0; j < SubBlocks; j++)
        {
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }

        Span<byte> packed = block.Scales;
        if (maxScale > 0)
        {
            var iscale = q4scale / maxScale;
            for (var j = 0; j < SubBlocks; j++) packed[j] = (byte)BlockSolvers.NearestInt(iscale * scales[j]);
            block.D = GgmlFp16.FromSingle(maxScale / q4scale);
        }
        else
        {
            packed.Clear();
            block.D = GgmlFp16.FromSingle(0f);
        }
        if (maxMin > 0)
        {
            var iscale = q4scale / maxMin;
            for (var j = 0; j < SubBlocks; j++) packed[j] |= (byte)(BlockSolvers.NearestInt(iscale * mins[j]) << 4);
            block.DMin = GgmlFp16.FromSingle(maxMin / q4scale);
        }
        else
        {
            block.DMin = GgmlFp16.FromSingle(0f);
        }
    }

    private static void QuantizeWeighted(ReadOnlySpan<float> x, ReadOnlySpan<float> importance, Span<byte> levels, ref BlockQ2K block)
    {
        Span<float> scales = stackalloc float[SubBlocks];
        Span<float> mins = stackalloc float[SubBlocks];
        Span<float> subBlockWeights = stackalloc float[SubBlocks];
        Span<float> weights = stackalloc float[KQuantLayout.SuperBlock];
        // Unlike Q3_K..Q5_K, Q2_K's σ² is mean(x²), not twice it.
        var sigma2 = SuperBlockRounding.SumOfSquares(x) / KQuantLayout.SuperBlock;
        SuperBlockRounding.ImportanceWeights(x, importance, sigma2, weights);
        for (var j = 0; j < SubBlocks; j++) subBlockWeights[j] = SuperBlockRounding.Sum(weights.Slice(SubBlock * j, SubBlock));
        BlockSolvers.MakeQkx3QuantsForGroups(Nmax, x, weights, SubBlock, levels, scales, mins, -0.9f, 0.05f, 36);

        Span<byte> scaleLevels = stackalloc byte[SubBlocks];
        Span<byte> minLevels = stackalloc byte[SubBlocks];
        block.D = GgmlFp16.FromSingle(BlockSolvers.MakeQpQuants(15, scales, scaleLevels, subBlockWeights));
        block.DMin = GgmlFp16.FromSingle(BlockSolvers.MakeQpQuants(15, mins, minLevels, subBlockWeights));
        Span<byte> packed = block.Scales;
        for (var j = 0; j < SubBlocks; j++) packed[j] = (byte)(scaleLevels[j] | (minLevels[j] << 4));
    }

    /// <summary>Rounds every sub-block against the stored scale and min; a sub-block whose scale is zero keeps the levels
    /// the search chose.</summary>
    private static void RoundToStoredScales(ReadOnlySpan<float> x, Span<byte> levels, ref BlockQ2K block)
    {
        var d = (float)block.D;
        var dmin = (float)block.DMin;
        ReadOnlySpan<byte> packed = block.Scales;
        for (var j = 0; j < SubBlocks; j++)
        {
            var scale = d * (packed[j] & 0xF);
            if (scale == 0) continue;
            SuperBlockRounding.RoundAffine(x.Slice(SubBlock * j, SubBlock), levels.Slice(SubBlock * j, SubBlock), scale,
                dmin * (packed[j] >> 4), Nmax);
        }
    }

    /// <summary>dequantize_row_q2_K: y = (d·sc)·q - dmin·m.</summary>
    public void Dequantize(ReadOnlySpan<byte> source, Span<float> destination)
    {
        if (KDequantize.UseVector256) DequantizeVector256(source, destination);
        else DequantizeScalar(source, destination);
    }

    internal static unsafe void DequantizeVector256(ReadOnlySpan<byte> source, Span<float> destination)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ2K>(source);
        var three = Vector256.Create(3);
        fixed (BlockQ2K* first = blocks)
        fixed (float* output = destination)
        {
            for (var i = 0; i < blocks.Length; i++)
            {
                var block = first + i;
                var d = (float)block->D;
                var min = (float)block->DMin;
                var scales = (byte*)&block->Scales;
                var qs = (byte*)&block->Qs;
                var y = output + (long)i * KQuantLayout.SuperBlock;
                for (var j = 0; j < SubBlocks; j++)
                {
                    var shift = 2 * ((j % 8) / 2);
                    var q = qs + 32 * (j / 8) + 16 * (j % 2);
                    var dl = Vector256.Create(d * (scales[j] & 0xF));
                    var ml = Vector256.Create(min * (scales[j] >> 4));
                    KDequantize.StoreAffine((KDequantize.LoadBytes(q) >>> shift) & three, dl, ml, y + SubBlock * j);
                    KDequantize.StoreAffine((KDequantize.LoadBytes(q + 8) >>> shift) & three, dl, ml, y + SubBlock * j + 8);
                }
            }
        }
    }

    internal static void DequantizeScalar(ReadOnlySpan<byte> source, Span<float> destination)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ2K>(source);
        for (var i = 0; i < blocks.Length; i++)
        {
            ref readonly var block = ref blocks[i];
            var d = (float)block.D;
            var min = (float)block.DMin;
            ReadOnlySpan<byte> scales = block.Scales;
            ReadOnlySpan<byte> qs = block.Qs;
            var y = destination.Slice(i * KQuantLayout.SuperBlock, KQuantLayout.SuperBlock);
            // Sub-block 8h + 2s + t holds bits 2s..2s+1 of bytes 16t..16t+15 of half h's 32 quant bytes.
            for (var j = 0; j < SubBlocks; j++)
            {
                var half = j / 8;
                var shift = 2 * ((j % 8) / 2);
                var q = qs.Slice(32 * half + 16 * (j % 2), 16);
                var dl = d * (scales[j] & 0xF);
                var ml = min * (scales[j] >> 4);
                var outGroup = y.Slice(SubBlock * j, SubBlock);
                for (var l = 0; l < SubBlock; l++) outGroup[l] = dl * ((q[l] >> shift) & 3) - ml;
            }
        }
    }
}
