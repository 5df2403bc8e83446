using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KQuant.Quants.Float;
using static KQuant.Quants.Legacy.LegacyBlockMath;

namespace KQuant.Quants.Legacy;

/// <summary>Q4_0 and Q5_0, as llama.cpp v0.5.0 writes them: weight = d·(code − nmax) with nmax = 2^(bits−1).
/// Without importance, quantize_row_q{4,5}_0_ref: d = (value of largest magnitude)/−nmax, code =
/// min(2·nmax − 1, (int8_t)(x/d + nmax + 0.5)). With importance, quantize_row_q{4,5}_0_impl: make_qx_quants with error
/// weights qw·√(σ² + x²), σ² = Σx²/n over the row.</summary>
internal abstract class SymmetricLegacyCodec<TBlock> : LegacyCodec<TBlock>, IOptimalRowCodec where TBlock : unmanaged, ILegacyBlock<TBlock>
{
    /// <summary>The levels code − nmax.</summary>
    private static readonly BlockLevelRange OptimalLevels = new(-Nmax, Nmax - 1, Affine: false);

    private static int Nmax
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => 1 << (TBlock.CodeBits - 1);
    }
    private static int MaxCode
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => 2 * Nmax - 1;
    }

    protected SymmetricLegacyCodec(bool vectorized) : base(vectorized) { }

    protected override void QuantizeScalar(ReadOnlySpan<float> source, Span<TBlock> blocks)
    {
        Span<byte> codes = stackalloc byte[BlockWeights];
        for (var ib = 0; ib < blocks.Length; ib++)
        {
            var x = source.Slice(ib * BlockWeights, BlockWeights);
            ref var block = ref blocks[ib];
            var d = BlockSolvers.SignedAbsMaxScalar(x).Max / -Nmax;
            var id = d != 0 ? 1f / d : 0f;
            TBlock.Scale(ref block) = Fp16.FromFloat(d);
            for (var j = 0; j < BlockWeights; j++)
            {
                codes[j] = (byte)Math.Min(MaxCode, (int)(sbyte)TruncateLikeX86(x[j] * id + (Nmax + 0.5f)));
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
            var d = SignedAbsMaxOf32(ref x) / -Nmax;
            var id = Vector256.Create(d != 0 ? 1f / d : 0f);
            TBlock.Scale(ref block) = Fp16.FromFloat(d);
            TBlock.StoreCodes(ref block, Code(ref x, 0, id), Code(ref x, 8, id), Code(ref x, 16, id), Code(ref x, 24, id));
        }

        static Vector256<int> Code(ref float x, nuint offset, Vector256<float> id) =>
            Vector256.Min(LowByteSigned(TruncateLikeX86(Vector256.LoadUnsafe(ref x, offset) * id + Vector256.Create(Nmax + 0.5f))),
                Vector256.Create(MaxCode));
    }

    protected override void QuantizeWeighted(ReadOnlySpan<float> source, ReadOnlySpan<float> importance, Span<TBlock> blocks)
    {
        var sigma2 = MeanSquare(source);
        Span<float> weights = stackalloc float[WeightedChunkBlocks * BlockWeights];
        Span<sbyte> codes = stackalloc sbyte[WeightedChunkBlocks * BlockWeights];
        Span<float> scales = stackalloc float[WeightedChunkBlocks];
        for (var first = 0; first < blocks.Length; first += WeightedChunkBlocks)
        {
            var count = Math.Min(WeightedChunkBlocks, blocks.Length - first);
            var x = source.Slice(first * BlockWeights, count * BlockWeights);
            ImportanceWeights(x, importance.Slice(first * BlockWeights, x.Length), sigma2, weights);
            BlockSolvers.MakeQxQuantsForGroups(Nmax, x, weights[..x.Length], BlockWeights, codes, scales);
            for (var i = 0; i < count; i++)
            {
                ref var block = ref blocks[first + i];
                TBlock.Scale(ref block) = Fp16.FromFloat(scales[i]);
                TBlock.StoreCodes(ref block, MemoryMarshal.AsBytes(codes.Slice(i * BlockWeights, BlockWeights)));
            }
        }
    }

    /// <summary>Without importance, trial scales against the reference computed in lanes (<see cref="ScaleTrialLaneSearch"/>);
    /// with it, the greedy step search (<see cref="BlockLaneSearch"/>): Q4_0's from a trial start in the lanes (since
    /// session 13; make_qx_quants' nineteen trial scales cost as much as the search after them), Q5_0's from
    /// make_qx_quants' encoding, computed in the search's lanes (the codec's bytes, never packed and read back).</summary>
    public void QuantizeOptimal(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance, RowRole role)
    {
        if (importance.IsEmpty) ScaleTrialLaneSearch.Quantize<TBlock, TrialFormat>(this, source, destination, importance, WriteLevels);
        else BlockLaneSearch.Quantize<TBlock, LinearLaneLevels>(this, OptimalLevels, source, destination, importance, role, ReadLevels, WriteLevels,
            StartTrials, makeQxStart: StartTrials.Length == 0, maxRounds: StartTrials.Length == 0 ? Q5SearchRounds : BlockLaneSearch.MaxRounds);
    }

    /// <summary>Rounds of Q5_0's search with importance. A round is one pass over the 32 weights of eight blocks, and a
    /// group takes as many as its slowest block: unbounded, 5.3 per group on the synthetic benchmark model's ffn_down
    /// (0.9 steps per block), 1.6× the reference codec's time (the start alone, make_qx_quants' trials, is 1.2×). Four
    /// rounds: 1.39–1.45× in two builds, weighted error 0.955 of the reference's against 0.951 unbounded (debdocs-llama-10m's ffn_down 0.971
    /// against 0.970).</summary>
    private const int Q5SearchRounds = 4;

    /// <summary>The search with importance from the codec's own encoding of the row, packed and read back: Q5_0's start
    /// until make_qx_quants' trials moved into the search's lanes (session 15), which must give the same bytes
    /// (BlockLaneSearchTests).</summary>
    internal void QuantizeOptimalFromCodecEncoding(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance) =>
        BlockLaneSearch.Quantize<TBlock, LinearLaneLevels>(this, OptimalLevels, source, destination, importance, RowRole.Product, ReadLevels,
            WriteLevels, maxRounds: Q5SearchRounds);

    /// <summary>The trial start of Q4_0's search with importance, as the level the block's value of largest magnitude is
    /// put on: −8 ± 0.9 in steps of 0.3 (make_qx_quants tries −8 ± 0.9 in steps of 0.1) and 7, the other end. KLD against
    /// the search from make_qx_quants' encoding (of the reference's; debdocs-llama-10m / debdocs-tiny / stories260K):
    /// ×0.988 / ×0.987 / ×0.992 against ×0.973 / ×0.993 / ×0.998, at 0.8× the reference codec's time instead of 1.7×
    /// (Gaussian rows, spread importance). Q5_0 (empty: from make_qx_quants' encoding) measured ×0.977 / ×0.979 against
    /// ×0.968 / ×0.997 with the same start, but ×1.006 on stories260K, and the recipes whose Q4_K tensors fall back to
    /// Q5_0 there ×1.013 (Q4_K_S) and ×1.020 (Q4_K_M) against ×0.960 and ×0.978.</summary>
    private static readonly float[] StartTrials = TBlock.CodeBits == 4
        ? [-(Nmax + 0.9f), -(Nmax + 0.6f), -(Nmax + 0.3f), -Nmax, -(Nmax - 0.3f), -(Nmax - 0.6f), -(Nmax - 0.9f), Nmax - 1]
        : [];

    /// <summary>quantize_row_q{4,5}_0_ref in lanes: d = m/−nmax (m the value of largest magnitude), level =
    /// min(nmax − 1, ⌊x/d + nmax + ½⌋ − nmax); the argument of ⌊⌋ is positive, so it equals the reference's truncation.</summary>
    private readonly struct TrialFormat : IScaleTrialFormat
    {
        public static int Lowest => -Nmax;

        public static int Highest => Nmax - 1;

        public static int ReferenceSpan => Nmax;

        public static Vector256<float> ReferenceScale(Vector256<float> signedMax, Vector256<float> absMax) =>
            signedMax / Vector256.Create((float)-Nmax);

        public static Vector256<float> ReferenceLevel(Vector256<float> x, Vector256<float> inverse) =>
            Vector256.MinNative(Vector256.Floor(x * inverse + Vector256.Create(Nmax + 0.5f)), Vector256.Create((float)MaxCode))
            - Vector256.Create((float)Nmax);
    }

    private static void ReadLevels(in TBlock block, Span<float> levels, out float scale, out float offset)
    {
        (scale, offset) = (Fp16.ToFloat(TBlock.Scale(ref Unsafe.AsRef(in block))), 0f);
        CodesToLevels(in block, levels, Nmax);
    }

    private static void WriteLevels(ref TBlock block, ReadOnlySpan<float> levels, ushort scale, ushort offset)
    {
        TBlock.Scale(ref block) = scale;
        LevelsToCodes(ref block, levels, Nmax);
    }

    protected override void DequantizeScalar(ReadOnlySpan<TBlock> blocks, Span<float> destination)
    {
        for (var ib = 0; ib < blocks.Length; ib++)
        {
            var d = Fp16.ToFloat(TBlock.Scale(ref Unsafe.AsRef(in blocks[ib])));
            var y = destination.Slice(ib * BlockWeights, BlockWeights);
            for (var j = 0; j < BlockWeights; j++) y[j] = (TBlock.LoadCode(in blocks[ib], j) - Nmax) * d;
        }
    }

    protected override void DequantizeVector256(ReadOnlySpan<TBlock> blocks, Span<float> destination)
    {
        ref var y = ref MemoryMarshal.GetReference(destination);
        var offset = Vector256.Create(Nmax);
        for (var ib = 0; ib < blocks.Length; ib++, y = ref Unsafe.Add(ref y, BlockWeights))
        {
            var d = Vector256.Create(Fp16.ToFloat(TBlock.Scale(ref Unsafe.AsRef(in blocks[ib]))));
            var (q0, q1, q2, q3) = TBlock.LoadCodes(in blocks[ib]);
            (Vector256.ConvertToSingle(q0 - offset) * d).StoreUnsafe(ref y);
            (Vector256.ConvertToSingle(q1 - offset) * d).StoreUnsafe(ref y, 8);
            (Vector256.ConvertToSingle(q2 - offset) * d).StoreUnsafe(ref y, 16);
            (Vector256.ConvertToSingle(q3 - offset) * d).StoreUnsafe(ref y, 24);
        }
    }
}
