using System.Runtime.InteropServices;
using KQuant.Gguf;
using KQuant.Quants.Float;

namespace KQuant.Quants.IQ;

/// <summary>GGML_TYPE_IQ4_NL as llama.cpp v0.5.0 writes it: quantize_iq4_nl, i.e. quantize_row_iq4_nl_impl on each 32-weight
/// block with ntry = 7, with or without importance (ggml_quantize_chunk never takes the quantize_row_iq4_nl_ref shortcut,
/// whose ntry = −1 would give other bytes). Error weights are x² without importance and qw·√(σ² + x²) with it, σ² being
/// 2·Σx²/32 over the block.</summary>
internal sealed class IQ4NLCodec : BlockRowCodec<BlockIQ4NL>, IOptimalRowCodec
{
    /// <summary>The search runs on grid indices 0..15.</summary>
    private static readonly BlockLevelRange OptimalLevels = new(0, 15, Affine: false);

    public IQ4NLCodec() : this(VectorizedByDefault) { }

    internal IQ4NLCodec(bool vectorized) : base(vectorized) { }

    public override GgmlType Type => GgmlType.IQ4_NL;

    protected override void QuantizeBlocks(ReadOnlySpan<float> source, ReadOnlySpan<float> importance, Span<BlockIQ4NL> blocks)
    {
        Span<float> weights = stackalloc float[BlockIQ4NL.Weights];
        for (var ib = 0; ib < blocks.Length; ib++)
        {
            var x = source.Slice(ib * BlockIQ4NL.Weights, BlockIQ4NL.Weights);
            var sigma2 = importance.IsEmpty ? 0f : IQ4Grid.Sigma2(x);
            IQ4Grid.GroupWeights(x, importance.IsEmpty ? default : importance.Slice(ib * BlockIQ4NL.Weights, BlockIQ4NL.Weights),
                sigma2, weights);
            ref var block = ref blocks[ib];
            var d = Vectorized
                ? IQ4Grid.FitScale(ref MemoryMarshal.GetReference(x), ref MemoryMarshal.GetReference(weights))
                : IQ4Grid.FitScale(x, weights);
            block.D = Fp16.FromFloat(d);
            var id = d != 0 ? 1 / d : 0f;
            if (Vectorized) IQ4Grid.QuantizeGroup(ref MemoryMarshal.GetReference(x), id, ref block.Qs[0]);
            else IQ4Grid.QuantizeGroup(x, id, block.Qs);
        }
    }

    /// <summary>The trial scales of the optimal path's start, as the level value n the block's value of largest magnitude
    /// m is put on (scale m/n; beyond the grid's ends, −127 and 113, it clips there): the reference's first guess (+127)
    /// and seven of its fifteen trials (−134..−120), but scored on the search's weights and with no reference encoding
    /// (src/KQuant/Quants/README.md). One pass over the block per trial: the reference's sixteen on these weights took
    /// the optimal path to 1.64× the reference codec's time with an imatrix, these eight to 1.14×. Other sets measured on
    /// the KLD: the largest value also on 113, 117 and 109 (five negative trials) gave debdocs-llama-10m ×0.951 / ×0.909
    /// of the reference's without / with an imatrix but debdocs-tiny ×1.041 with one; −134..−120 in steps of 2 gave
    /// debdocs-llama-10m ×0.995 without one.</summary>
    private static readonly float[] StartTrials = [127, -134, -132, -130, -128, -126, -124, -121];

    public void QuantizeOptimal(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance, RowRole role) =>
        BlockLaneSearch.Quantize<BlockIQ4NL, IQ4LaneLevels>(this, OptimalLevels, source, destination, importance, role, ReadLevels, WriteLevels,
            StartTrials);

    private static void ReadLevels(in BlockIQ4NL block, Span<float> levels, out float scale, out float offset)
    {
        (scale, offset) = (Fp16.ToFloat(block.D), 0f);
        for (var j = 0; j < 16; j++)
        {
            levels[j] = block.Qs[j] & 0xF;
            levels[j + 16] = block.Qs[j] >> 4;
        }
    }

    private static void WriteLevels(ref BlockIQ4NL block, ReadOnlySpan<float> levels, ushort scale, ushort offset)
    {
        block.D = scale;
        for (var j = 0; j < 16; j++) block.Qs[j] = (byte)((int)levels[j] | ((int)levels[j + 16] << 4));
    }

    protected override void DequantizeBlocks(ReadOnlySpan<BlockIQ4NL> blocks, Span<float> destination)
    {
        for (var ib = 0; ib < blocks.Length; ib++)
        {
            var y = destination.Slice(ib * BlockIQ4NL.Weights, BlockIQ4NL.Weights);
            var d = Fp16.ToFloat(blocks[ib].D);
            if (Vectorized) IQ4Grid.DequantizeGroup(blocks[ib].Qs, d, y);
            else IQ4Grid.DequantizeGroupScalar(blocks[ib].Qs, d, y);
        }
    }
}
