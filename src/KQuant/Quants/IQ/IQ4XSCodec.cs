using System.Runtime.InteropServices;
using KQuant.Gguf;
using KQuant.Quants.Float;

namespace KQuant.Quants.IQ;

/// <summary>GGML_TYPE_IQ4_XS as llama.cpp v0.5.0 writes it: quantize_iq4_xs, i.e. quantize_row_iq4_nl_impl on each 256-weight
/// super-block with ntry = 7, with or without importance. Each 32-weight group gets its best scale from the IQ4 search;
/// the super-block scale is (group scale of largest magnitude)/−32, each group's scale is rounded to a 6-bit multiple of
/// it, and the weights are re-quantized against that rounded scale.</summary>
internal sealed class IQ4XSCodec : BlockRowCodec<BlockIQ4XS>, IOptimalRowCodec
{
    private static readonly SuperBlockSpec OptimalSpec =
        new(GroupWeights, IQ4Grid.Levels.ToArray().Select(v => (float)v).ToArray(), Affine: false, -32, 31) { FreeRounds = 4, NeighbourIntegers = true, StartScales = [0.95f, 1.05f] };

    /// <summary>With an imatrix the integer scales are rounded from the free fits: the neighbour choice raised the KLD
    /// there (debdocs-tiny ×0.972 → ×0.950 of the reference's without it, debdocs-llama-10m ×0.942 → ×0.928), as it had
    /// from the reference start.</summary>
    private static readonly SuperBlockSpec ImportanceSpec = OptimalSpec with { NeighbourIntegers = false };

    private const int Groups = BlockIQ4XS.SubBlocks;
    private const int GroupWeights = IQ4Grid.BlockWeights;

    public IQ4XSCodec() : this(VectorizedByDefault) { }

    internal IQ4XSCodec(bool vectorized) : base(vectorized) { }

    public override GgmlType Type => GgmlType.IQ4_XS;

    protected override void QuantizeBlocks(ReadOnlySpan<float> source, ReadOnlySpan<float> importance, Span<BlockIQ4XS> blocks)
    {
        Span<float> weights = stackalloc float[GroupWeights];
        Span<float> scales = stackalloc float[Groups];
        for (var ibl = 0; ibl < blocks.Length; ibl++)
        {
            var x = source.Slice(ibl * BlockIQ4XS.Weights, BlockIQ4XS.Weights);
            var qw = importance.IsEmpty ? default : importance.Slice(ibl * BlockIQ4XS.Weights, BlockIQ4XS.Weights);
            var sigma2 = importance.IsEmpty ? 0f : IQ4Grid.Sigma2(x);

            // Group scales, and the one of largest magnitude (first on ties).
            float maxScale = 0, amaxScale = 0;
            for (var ib = 0; ib < Groups; ib++)
            {
                var xb = x.Slice(ib * GroupWeights, GroupWeights);
                IQ4Grid.GroupWeights(xb, qw.IsEmpty ? default : qw.Slice(ib * GroupWeights, GroupWeights), sigma2, weights);
                var scale = Vectorized
                    ? IQ4Grid.FitScale(ref MemoryMarshal.GetReference(xb), ref MemoryMarshal.GetReference(weights))
                    : IQ4Grid.FitScale(xb, weights);
                scales[ib] = scale;
                if (MathF.Abs(scale) > amaxScale)
                {
                    amaxScale = MathF.Abs(scale);
                    maxScale = scale;
                }
            }

            ref var block = ref blocks[ibl];
            var d = -maxScale / 32;
            var id = d != 0 ? 1 / d : 0f;
            block.D = Fp16.FromFloat(d);
            ushort scalesHigh = 0;
            for (var ib = 0; ib < Groups; ib++)
            {
                var l = Math.Clamp(BlockSolvers.NearestInt(id * scales[ib]), -32, 31);
                var dl = d * l;
                var idl = dl != 0 ? 1 / dl : 0f;
                var xb = x.Slice(ib * GroupWeights, GroupWeights);
                var packed = ((Span<byte>)block.Qs).Slice(ib * 16, 16);
                if (Vectorized) IQ4Grid.QuantizeGroup(ref MemoryMarshal.GetReference(xb), idl, ref packed[0]);
                else IQ4Grid.QuantizeGroup(xb, idl, packed);

                l += 32;
                if (ib % 2 == 0) block.ScalesL[ib / 2] = (byte)(l & 0xF);
                else block.ScalesL[ib / 2] |= (byte)((l & 0xF) << 4);
                scalesHigh |= (ushort)((l >> 4) << (2 * ib));
            }
            block.ScalesH = scalesHigh;
        }
    }

    /// <summary>From the search's own start in both modes, with no reference encoding (src/KQuant/Quants/README.md). With an
    /// imatrix it had searched from the reference until session 13: the reference's 15 trial scales per group cost as much
    /// as the search after them (2.2× the reference mode's time for the recipe), and the own start on the weights c reached
    /// a lower KLD (debdocs-llama-10m ×0.928 of the reference's against ×0.938, debdocs-tiny ×0.950 against ×0.988).</summary>
    public void QuantizeOptimal(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance, RowRole role) =>
        KeepBestBlocks.Quantize<BlockIQ4XS>(this, BlockIQ4XS.Weights, source, destination, importance, role, improve: null,
            importance.IsEmpty ? EncodeBlock : EncodeBlockWithImportance);

    private static bool EncodeBlock(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ref BlockIQ4XS block) => Encode(OptimalSpec, x, w, ref block);

    private static bool EncodeBlockWithImportance(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ref BlockIQ4XS block) =>
        Encode(ImportanceSpec, x, w, ref block);

    private static bool Encode(SuperBlockSpec spec, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ref BlockIQ4XS block)
    {
        Span<byte> levels = stackalloc byte[BlockIQ4XS.Weights];
        Span<int> scales = stackalloc int[Groups];
        if (!SuperBlockSearch.Encode(spec, x, w, levels, scales, default, out var d, out _)) return false;
        block.D = BitConverter.HalfToUInt16Bits(d);
        Pack(levels, scales, ref block);
        return true;
    }

    /// <summary>Levels (two per byte) and 6-bit group scales (stored + 32, split into low and high bits) into the block.</summary>
    private static void Pack(ReadOnlySpan<byte> levels, ReadOnlySpan<int> scales, ref BlockIQ4XS block)
    {
        Span<byte> packed = block.Qs;
        ushort scalesHigh = 0;
        for (var ib = 0; ib < Groups; ib++)
        {
            for (var j = 0; j < 16; j++)
            {
                packed[ib * 16 + j] = (byte)(levels[ib * GroupWeights + j] | (levels[ib * GroupWeights + j + 16] << 4));
            }
            var l = scales[ib] + 32;
            if (ib % 2 == 0) block.ScalesL[ib / 2] = (byte)(l & 0xF);
            else block.ScalesL[ib / 2] |= (byte)((l & 0xF) << 4);
            scalesHigh |= (ushort)((l >> 4) << (2 * ib));
        }
        block.ScalesH = scalesHigh;
    }

    protected override void DequantizeBlocks(ReadOnlySpan<BlockIQ4XS> blocks, Span<float> destination)
    {
        for (var ibl = 0; ibl < blocks.Length; ibl++)
        {
            ref readonly var block = ref blocks[ibl];
            var d = Fp16.ToFloat(block.D);
            ReadOnlySpan<byte> qs = block.Qs;
            for (var ib = 0; ib < Groups; ib++)
            {
                var ls = ((block.ScalesL[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((block.ScalesH >> (2 * ib)) & 3) << 4);
                var dl = d * (ls - 32);
                var y = destination.Slice(ibl * BlockIQ4XS.Weights + ib * GroupWeights, GroupWeights);
                if (Vectorized) IQ4Grid.DequantizeGroup(qs.Slice(ib * 16, 16), dl, y);
                else IQ4Grid.DequantizeGroupScalar(qs.Slice(ib * 16, 16), dl, y);
            }
        }
    }
}
