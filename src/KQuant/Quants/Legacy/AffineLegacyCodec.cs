using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KQuant.Quants.Float;
using static KQuant.Quants.Legacy.LegacyBlockMath;

namespace KQuant.Quants.Legacy;

/// <summary>Q4_1 and Q5_1, as llama.cpp v0.5.0 writes them: weight = d·code + m with nmax = 2^bits − 1. Without importance,
/// quantize_row_q{4,5}_1_ref: m = block minimum, d = (max − min)/nmax, code = (x − min)/d + 0.5 truncated. With importance,
/// quantize_row_q{4,5}_1_impl: make_qkx3_quants (rmin −0.9, rdelta 0.05, 36 steps) with error weights qw·√(σ² + x²).</summary>
internal abstract class AffineLegacyCodec<TBlock> : LegacyCodec<TBlock>, IOptimalRowCodec where TBlock : unmanaged, IAffineLegacyBlock<TBlock>
{
    /// <summary>The levels 0..nmax (value = d·code + m).</summary>
    private static readonly BlockLevelRange OptimalLevels = new(0, Nmax, Affine: true);

    private static int Nmax
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => (1 << TBlock.CodeBits) - 1;
    }

    protected AffineLegacyCodec(bool vectorized) : base(vectorized) { }

    // ggml stores Q4_1's code as min(15, (int8_t)v) and Q5_1's as (uint8_t)v, v = trunc((x − min)/d + 0.5) done by cvttss2si.
    // v is in [0, nmax] (x − min ≤ max − min) or int.MinValue (an infinite or NaN (x − min)/d), whose low byte is 0, so
    // min(nmax, (int8_t)v) gives both formats' bytes.
    protected override void QuantizeScalar(ReadOnlySpan<float> source, Span<TBlock> blocks)
    {
        Span<byte> codes = stackalloc byte[BlockWeights];
        for (var ib = 0; ib < blocks.Length; ib++)
        {
            var x = source.Slice(ib * BlockWeights, BlockWeights);
            ref var block = ref blocks[ib];
            // ggml's scan starts from ±FLT_MAX rather than x[0]; for finite input the extremes (and zero signs) are the same.
            var (min, max) = BlockSolvers.RangeScalar(x);
            var d = (max - min) / Nmax;
            var id = d != 0 ? 1f / d : 0f;
            TBlock.Scale(ref block) = Fp16.FromFloat(d);
            TBlock.Offset(ref block) = Fp16.FromFloat(min);
            for (var j = 0; j < BlockWeights; j++)
            {
                codes[j] = (byte)Math.Min(Nmax, (int)(sbyte)TruncateLikeX86((x[j] - min) * id + 0.5f));
            }
            TBlock.StoreCodes(ref block, codes);
        }
    }

    protected override void QuantizeVector256(ReadOnlySpan<float> source, Span<TBlock> blocks)
    {
        ref var x = ref MemoryMarshal.GetReference(source);
        for (var ib = 0; ib < blocks.Length; ib++, x = ref Unsafe.Add(ref x, BlockWeights))
        {
            ref var block = ref blocks[ib];
            var (min, max) = MinMaxOf32(ref x);
            var d = (max - min) / Nmax;
            var id = Vector256.Create(d != 0 ? 1f / d : 0f);
            TBlock.Scale(ref block) = Fp16.FromFloat(d);
            TBlock.Offset(ref block) = Fp16.FromFloat(min);
            var minV = Vector256.Create(min);
            TBlock.StoreCodes(ref block, Code(ref x, 0, minV, id), Code(ref x, 8, minV, id), Code(ref x, 16, minV, id),
                Code(ref x, 24, minV, id));
        }

        static Vector256<int> Code(ref float x, nuint offset, Vector256<float> min, Vector256<float> id) =>
            Vector256.Min(LowByteSigned(TruncateLikeX86((Vector256.LoadUnsafe(ref x, offset) - min) * id + Vector256.Create(0.5f))),
                Vector256.Create(Nmax));
    }

    protected override void QuantizeWeighted(ReadOnlySpan<float> source, ReadOnlySpan<float> importance, Span<TBlock> blocks)
    {
        var sigma2 = MeanSquare(source);
        Span<float> weights = stackalloc float[WeightedChunkBlocks * BlockWeights];
        Span<byte> codes = stackalloc byte[WeightedChunkBlocks * BlockWeights];
        Span<float> scales = stackalloc float[WeightedChunkBlocks];
        Span<float> negatedMins = stackalloc float[WeightedChunkBlocks];
        for (var first = 0; first < blocks.Length; first += WeightedChunkBlocks)
        {
            var count = Math.Min(WeightedChunkBlocks, blocks.Length - first);
            var x = source.Slice(first * BlockWeights, count * BlockWeights);
            ImportanceWeights(x, importance.Slice(first * BlockWeights, x.Length), sigma2, weights);
            BlockSolvers.MakeQkx3QuantsForGroups(Nmax, x, weights[..x.Length], BlockWeights, codes, scales, negatedMins, -0.9f, 0.05f, 36);
            for (var i = 0; i < count; i++)
            {
                ref var block = ref blocks[first + i];
                TBlock.Scale(ref block) = Fp16.FromFloat(scales[i]);
                TBlock.Offset(ref block) = Fp16.FromFloat(-negatedMins[i]);
                TBlock.StoreCodes(ref block, codes.Slice(i * BlockWeights, BlockWeights));
            }
        }
    }

    /// <summary>Without importance, trial ranges against the reference computed in lanes (<see cref="ScaleTrialLaneSearch"/>);
    /// with it, the greedy step search from make_qkx3_quants' encoding (<see cref="BlockLaneSearch"/>).</summary>
    public void QuantizeOptimal(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance, RowRole role)
    {
        if (importance.IsEmpty) ScaleTrialLaneSearch.QuantizeAffine<TBlock, TrialFormat>(this, source, destination, WriteLevels);
        else BlockLaneSearch.Quantize<TBlock, LinearLaneLevels>(this, OptimalLevels, source, destination, importance, role, ReadLevels, WriteLevels);
    }

    private readonly struct TrialFormat : IAffineTrialFormat
    {
        public static int Highest => Nmax;
    }

    private static void ReadLevels(in TBlock block, Span<float> levels, out float scale, out float offset)
    {
        ref var stored = ref Unsafe.AsRef(in block);
        (scale, offset) = (Fp16.ToFloat(TBlock.Scale(ref stored)), Fp16.ToFloat(TBlock.Offset(ref stored)));
        CodesToLevels(in block, levels, 0);
    }

    private static void WriteLevels(ref TBlock block, ReadOnlySpan<float> levels, ushort scale, ushort offset)
    {
        (TBlock.Scale(ref block), TBlock.Offset(ref block)) = (scale, offset);
        LevelsToCodes(ref block, levels, 0);
    }

    protected override void DequantizeScalar(ReadOnlySpan<TBlock> blocks, Span<float> destination)
    {
        for (var ib = 0; ib < blocks.Length; ib++)
        {
            ref var block = ref Unsafe.AsRef(in blocks[ib]);
            var d = Fp16.ToFloat(TBlock.Scale(ref block));
            var m = Fp16.ToFloat(TBlock.Offset(ref block));
            var y = destination.Slice(ib * BlockWeights, BlockWeights);
            for (var j = 0; j < BlockWeights; j++) y[j] = TBlock.LoadCode(in block, j) * d + m;
        }
    }

    protected override void DequantizeVector256(ReadOnlySpan<TBlock> blocks, Span<float> destination)
    {
        ref var y = ref MemoryMarshal.GetReference(destination);
        for (var ib = 0; ib < blocks.Length; ib++, y = ref Unsafe.Add(ref y, BlockWeights))
        {
            ref var block = ref Unsafe.AsRef(in blocks[ib]);
            var d = Vector256.Create(Fp16.ToFloat(TBlock.Scale(ref block)));
            var m = Vector256.Create(Fp16.ToFloat(TBlock.Offset(ref block)));
            var (q0, q1, q2, q3) = TBlock.LoadCodes(in block);
            (Vector256.ConvertToSingle(q0) * d + m).StoreUnsafe(ref y);
            (Vector256.ConvertToSingle(q1) * d + m).StoreUnsafe(ref y, 8);
            (Vector256.ConvertToSingle(q2) * d + m).StoreUnsafe(ref y, 16);
            (Vector256.ConvertToSingle(q3) * d + m).StoreUnsafe(ref y, 24);
        }
    }
}
