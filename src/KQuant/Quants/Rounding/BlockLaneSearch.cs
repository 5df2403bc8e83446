using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KQuant.Quants.Float;
using static KQuant.Quants.LaneLayout;

namespace KQuant.Quants;

/// <summary>The level indices <see cref="Lowest"/>..<see cref="Highest"/> of a 32-weight block format, with
/// weight = d·value(index) (+ m when <see cref="Affine"/>); value(index) is the index itself for the linear formats
/// (<see cref="LinearLaneLevels"/>) and a table entry for IQ4_NL.</summary>
internal readonly record struct BlockLevelRange(int Lowest, int Highest, bool Affine);

/// <summary>How a lane search maps level indices (floats holding integers) to level values, eight lanes at a time.</summary>
internal interface ILaneLevels
{
    /// <summary>Whether value(index) = index. The JIT then drops the table arithmetic from the search.</summary>
    static abstract bool Linear { get; }

    /// <summary>The value of each lane's level index; any result for an index outside the range (the search masks those).</summary>
    static abstract Vector256<float> ValueOf(Vector256<float> index);

    /// <summary>The index of the level nearest to each lane of <paramref name="scaled"/> (x/d), within the range, and its value.</summary>
    static abstract Vector256<float> Nearest(Vector256<float> scaled, BlockLevelRange range, out Vector256<float> value);
}

/// <summary>The linear formats' levels: value = index.</summary>
internal readonly struct LinearLaneLevels : ILaneLevels
{
    public static bool Linear => true;

    public static Vector256<float> ValueOf(Vector256<float> index) => index;

    public static Vector256<float> Nearest(Vector256<float> scaled, BlockLevelRange range, out Vector256<float> value) =>
        value = Vector256.Min(Vector256.Max(Vector256.Round(scaled), Vector256.Create((float)range.Lowest)), Vector256.Create((float)range.Highest));
}

/// <summary>Reads one block: its 32 levels as floats and its decoded scale and offset (0 without one).</summary>
internal delegate void BlockLevelReader<TBlock>(in TBlock block, Span<float> levels, out float scale, out float offset)
    where TBlock : unmanaged;

/// <summary>Writes one block from 32 levels and the fp16 bits of its scale and offset (ignored without one).</summary>
internal delegate void BlockLevelWriter<TBlock>(ref TBlock block, ReadOnlySpan<float> levels, ushort scale, ushort offset)
    where TBlock : unmanaged;

/// <summary>
/// The optimal path of the 32-weight block formats (Q4_0, Q5_0, Q8_0, Q4_1, Q5_1 and IQ4_NL): the greedy quant-step search
/// of ik_llama.cpp PR 295 (from the reference's levels, each round takes the single ±1 index step that most lowers the
/// error of the least-squares fit; stop when none does) run on eight blocks at once, one block per SIMD lane, with the keep-the-better comparison of
/// <see cref="KeepBestBlocks"/> (unit gain included, for IQ4_NL) done in the same lanes. A block of 32 is too small for SIMD
/// across its weights to pay (every round would end in horizontal sums); across blocks, a round is 32 vector steps whose sums
/// stay in their lanes. A lane whose block has no step left takes the next block of a chunk of 32, so the rounds are not
/// set by the slowest block of each eight; the comparison then runs on groups of eight with each block's searched scale.
/// Sums are in float: each step's rise is computed from its residual and must clear a noise bound, so
/// float rounding neither hides small steps nor cycles a step back and forth. A lane whose outcome float cannot call (errors
/// within 0.1%, a unit-gain scale near an fp16 rounding boundary, degenerate gains) is settled by the scalar comparison of
/// <see cref="KeepBestBlocks.KeepCandidate"/>, so the written block is always the one that comparison would keep.
/// </summary>
internal static class BlockLaneSearch
{
    private const int Weights = 32;
    private const int Group = Lanes * Weights;

    /// <summary>Bound on rounds: far more than a search from the reference takes (each round gains, and the start is
    /// already near the optimum); bounds the time on adversarial input.</summary>
    private const int MaxRounds = 4 * Weights;

    /// <summary>A step's rise must exceed this fraction of its own largest term (w²·x²·δ²): below that, float rounding in the
    /// cancelling terms, not the data, would decide, and a step and its reverse could both look like gains.</summary>
    private const float RiseNoise = 1e-6f;

    /// <summary>Relative error allowed for a unit gain computed in float lanes against <see cref="UnitGain"/>'s (32 products
    /// summed in another order: at most about 8·10⁻⁶ when the sum is not cancelling, which is also checked). A rescaled scale
    /// that could round to another fp16 within it, or a gain that close to the range UnitGain corrects, is settled the scalar
    /// way, so the lanes never write other bytes than <see cref="UnitGain.Correct"/> would.</summary>
    private const float GainTolerance = 2e-5f;

    /// <summary>Blocks searched together: lanes whose block is done take the next one of the chunk, so a round's cost is
    /// not set by the slowest of eight blocks (on debdocs-llama-10m a Q4_0 block takes 1.9 steps on average, a group of
    /// eight 5.7 rounds). Row-major storage of a chunk stays on the stack.</summary>
    private const int ChunkBlocks = 32;

    /// <summary>Quantizes a row the reference way, then searches every block from it and keeps the encoding with the lower
    /// error Σ w·(y − x)² as decoded, w the weighting of <see cref="KeepBestBlocks.WeightingFor"/>, both at unit gain where
    /// the format takes it. Each block is never worse than the reference's.</summary>
    public static void Quantize<TBlock, TLevels>(IRowCodec codec, BlockLevelRange format, ReadOnlySpan<float> source, Span<byte> destination,
        ReadOnlySpan<float> importance, RowRole role, BlockLevelReader<TBlock> read, BlockLevelWriter<TBlock> write)
        where TBlock : unmanaged where TLevels : struct, ILaneLevels
    {
        codec.Quantize(source, destination, importance);
        var weighting = KeepBestBlocks.WeightingFor(codec.Type, !importance.IsEmpty, role);
        Debug.Assert(weighting is ErrorWeighting.Importance or ErrorWeighting.ImportanceTimesMagnitude);
        var unitGain = UnitGain.Applies(codec.Type);
        Debug.Assert(!format.Affine || (TLevels.Linear && !unitGain));
        var blocks = MemoryMarshal.Cast<byte, TBlock>(destination);
        Span<float> buffer = stackalloc float[5 * ChunkBlocks * Weights + 4 * ChunkBlocks + 11 * Group];
        var chunk = new ChunkRows(buffer[..(5 * ChunkBlocks * Weights + 4 * ChunkBlocks)], TLevels.Linear, weighting == ErrorWeighting.Importance);
        var lanes = new GroupLanes(buffer.Slice(5 * ChunkBlocks * Weights + 4 * ChunkBlocks, 10 * Group), TLevels.Linear);
        var candidateRows = buffer[^Group..];
        Span<ushort> bits = stackalloc ushort[4 * Lanes];
        var scales = new LaneScales(bits);
        Span<float> scratch = stackalloc float[3 * Weights];
        for (var first = 0; first < blocks.Length; first += ChunkBlocks)
        {
            var count = Math.Min(ChunkBlocks, blocks.Length - first);
            var n = count * Weights;
            // Whole groups of eight: lanes past the row's end hold zeros and weigh nothing, so they never step.
            var padded = (count + Lanes - 1) / Lanes * Lanes * Weights;
            source.Slice(first * Weights, n).CopyTo(chunk.X);
            chunk.X[n..padded].Clear();
            if (importance.IsEmpty) chunk.C[..n].Fill(1f);
            else importance.Slice(first * Weights, n).CopyTo(chunk.C);
            chunk.C[n..padded].Clear();
            chunk.Reference[n..padded].Clear();
            for (var k = 0; k < count; k++)
            {
                read(in blocks[first + k], chunk.Reference.Slice(k * Weights, Weights), out chunk.ReferenceScales[k], out chunk.ReferenceOffsets[k]);
            }
            if (!TLevels.Linear)
            {
                for (var at = 0; at < padded; at += Lanes) Store(chunk.ReferenceValues, at, TLevels.ValueOf(Load(chunk.Reference, at)));
            }
            if (weighting == ErrorWeighting.ImportanceTimesMagnitude) MagnitudeWeights(chunk, padded);
            if (format.Affine) SearchAffine(format, chunk, count, lanes);
            else SearchScale<TLevels>(format, chunk, count, lanes);

            for (var group = 0; group < count; group += Lanes)
            {
                var inGroup = Math.Min(Lanes, count - group);
                var rows = group * Weights;
                Transpose(chunk.X[rows..], lanes.X, Lanes, Weights);
                Transpose(chunk.C[rows..], lanes.C, Lanes, Weights);
                if (weighting != ErrorWeighting.Importance) Transpose(chunk.W[rows..], lanes.W, Lanes, Weights);
                Transpose(chunk.ReferenceValues[rows..], lanes.ReferenceValues, Lanes, Weights);
                var decided = Decide<TLevels>(format, unitGain, lanes, weighting == ErrorWeighting.Importance ? lanes.C : lanes.W,
                    Load(chunk.D, group), Load(chunk.M, group), chunk.ReferenceScales.Slice(group, Lanes),
                    chunk.ReferenceOffsets.Slice(group, Lanes), scales);
                var mask = (1 << inGroup) - 1;
                var (chosen, unsure) = (decided & mask, (decided >> Lanes) & mask);
                if (chosen == 0 && unsure == 0 && !unitGain) continue;
                if ((chosen | unsure) != 0) Transpose(lanes.Candidate, candidateRows, Weights, Lanes);
                for (var b = 0; b < inGroup; b++)
                {
                    var k = group + b;
                    ref var block = ref blocks[first + k];
                    var candidateLevels = candidateRows.Slice(b * Weights, Weights);
                    if ((unsure & (1 << b)) != 0)
                    {
                        // The scalar frame's own decision, from the candidate as searched.
                        var candidate = block;
                        write(ref candidate, candidateLevels, scales.Searched[b], scales.Offset[b]);
                        var x = chunk.X.Slice(k * Weights, Weights);
                        var c = importance.IsEmpty ? default : importance.Slice((first + k) * Weights, Weights);
                        var w = scratch[..Weights];
                        KeepBestBlocks.ErrorWeights(weighting, x, c, w);
                        if (KeepBestBlocks.KeepCandidate(codec, unitGain, ref block, ref candidate, x, c, w, scratch.Slice(Weights, Weights),
                            scratch.Slice(2 * Weights, Weights)))
                        {
                            block = candidate;
                        }
                    }
                    else if ((chosen & (1 << b)) != 0) write(ref block, candidateLevels, scales.Candidate[b], scales.Offset[b]);
                    else if (unitGain) write(ref block, chunk.Reference.Slice(k * Weights, Weights), scales.Reference[b], 0);
                }
            }
        }
    }

    /// <summary>A chunk of blocks row-major (block k at k·32): values, importance (1 without), error weights (C's span when
    /// they are the importance), reference level indices and their values (the same span for the linear formats), and per
    /// block the reference's scale and offset and the search's.</summary>
    private readonly ref struct ChunkRows
    {
        public readonly Span<float> X, C, W, Reference, ReferenceValues, ReferenceScales, ReferenceOffsets, D, M;

        public ChunkRows(Span<float> buffer, bool linear, bool weightsAreImportance)
        {
            const int Rows = ChunkBlocks * Weights;
            X = buffer[..Rows];
            C = buffer.Slice(Rows, Rows);
            W = weightsAreImportance ? C : buffer.Slice(2 * Rows, Rows);
            Reference = buffer.Slice(3 * Rows, Rows);
            ReferenceValues = linear ? Reference : buffer.Slice(4 * Rows, Rows);
            var perBlock = buffer[(5 * Rows)..];
            ReferenceScales = perBlock[..ChunkBlocks];
            ReferenceOffsets = perBlock.Slice(ChunkBlocks, ChunkBlocks);
            D = perBlock.Slice(2 * ChunkBlocks, ChunkBlocks);
            M = perBlock.Slice(3 * ChunkBlocks, ChunkBlocks);
        }
    }

    /// <summary>Eight blocks transposed (weight j of lane b at j·8 + b). The search's lanes: values X (centred per block in
    /// Centred for the affine search), error weights W, the level indices being searched T and their values V (T itself for
    /// the linear formats). The comparison's: X, importance C, W, the reference's level values and the proposed level
    /// indices (Candidate) and values.</summary>
    private readonly ref struct GroupLanes
    {
        public readonly Span<float> X, C, W, Centred, ReferenceValues, T, V, Candidate, CandidateValues;

        public GroupLanes(Span<float> buffer, bool linear)
        {
            X = buffer[..Group];
            C = buffer.Slice(Group, Group);
            W = buffer.Slice(2 * Group, Group);
            Centred = buffer.Slice(3 * Group, Group);
            ReferenceValues = buffer.Slice(4 * Group, Group);
            T = buffer.Slice(5 * Group, Group);
            V = linear ? T : buffer.Slice(6 * Group, Group);
            Candidate = buffer.Slice(7 * Group, Group);
            CandidateValues = linear ? Candidate : buffer.Slice(8 * Group, Group);
        }
    }

    /// <summary>fp16 bits per lane: the candidate's scale as searched (before unit gain), the candidate's and the
    /// reference's as they are written, and the candidate's offset.</summary>
    private readonly ref struct LaneScales(Span<ushort> bits)
    {
        public readonly Span<ushort> Searched = bits[..Lanes];
        public readonly Span<ushort> Candidate = bits.Slice(Lanes, Lanes);
        public readonly Span<ushort> Reference = bits.Slice(2 * Lanes, Lanes);
        public readonly Span<ushort> Offset = bits.Slice(3 * Lanes, Lanes);
    }

    /// <summary>W = C·sqrt(σ² + x²) with σ² = 2·mean(x²) over each block (<see cref="ErrorWeighting.ImportanceTimesMagnitude"/>).</summary>
    private static void MagnitudeWeights(in ChunkRows chunk, int length)
    {
        for (var start = 0; start < length; start += Weights)
        {
            var x = chunk.X.Slice(start, Weights);
            var squares = 0f;
            foreach (var v in x) squares += v * v;
            var sigma2 = squares * (2f / Weights);
            for (var j = 0; j < Weights; j++) chunk.W[start + j] = chunk.C[start + j] * MathF.Sqrt(sigma2 + x[j] * x[j]);
        }
    }

    /// <summary>Rounds every weight again against the fp16 scale (and offset) of the search's fit, brings candidate and
    /// reference to unit gain where the format takes it, and returns the lanes whose candidate is clearly better (bit b), with
    /// bit b + 8 set for the lanes float cannot call.</summary>
    private static int Decide<TLevels>(BlockLevelRange format, bool unitGain, in GroupLanes lanes, ReadOnlySpan<float> weights,
        Vector256<float> d, Vector256<float> m,
        ReadOnlySpan<float> referenceScales, ReadOnlySpan<float> referenceOffsets, in LaneScales scales) where TLevels : struct, ILaneLevels
    {
        // The fit as stored: both to fp16, every weight rounded again against them (the search's levels were chosen for the
        // unrounded pair).
        var storedD = Fp16.FromFloat(d);
        var storedM = format.Affine ? Fp16.FromFloat(m) : Vector256<uint>.Zero;
        for (var b = 0; b < Lanes; b++) (scales.Searched[b], scales.Offset[b]) = ((ushort)storedD[b], (ushort)storedM[b]);
        var candidateD = Fp16.ToFloat(storedD);
        m = format.Affine ? Fp16.ToFloat(storedM) : Vector256<float>.Zero;
        var inverse = Vector256.ConditionalSelect(Vector256.Equals(candidateD, Vector256<float>.Zero), Vector256<float>.Zero, Vector256<float>.One / candidateD);
        var (referenceD, referenceM) = (Load(referenceScales, 0), Load(referenceOffsets, 0));
        Vector256<float> candidateError = default, referenceError = default;
        var unsure = Vector256<float>.Zero;
        if (!unitGain)
        {
            scales.Searched.CopyTo(scales.Candidate);
            for (var at = 0; at < Group; at += Lanes)
            {
                var (x, w) = (Load(lanes.X, at), Load(weights, at));
                Store(lanes.Candidate, at, TLevels.Nearest((x - m) * inverse, format, out var value));
                // Decoded as the dequantizers do (a product, then the offset added), so the errors are the reader's.
                var e = value * candidateD + m - x;
                candidateError += w * e * e;
                var r = Load(lanes.ReferenceValues, at) * referenceD + referenceM - x;
                referenceError += w * r * r;
            }
        }
        else
        {
            Vector256<float> xx = default, candidateXy = default, referenceXy = default, candidateSpread = default, referenceSpread = default;
            for (var at = 0; at < Group; at += Lanes)
            {
                var x = Load(lanes.X, at);
                Store(lanes.Candidate, at, TLevels.Nearest(x * inverse, format, out var value));
                Store(lanes.CandidateValues, at, value);
                var cx = Load(lanes.C, at) * x;
                var (candidateTerm, referenceTerm) = (cx * (candidateD * value), cx * (referenceD * Load(lanes.ReferenceValues, at)));
                xx += cx * x;
                candidateXy += candidateTerm;
                referenceXy += referenceTerm;
                candidateSpread += Vector256.Abs(candidateTerm);
                referenceSpread += Vector256.Abs(referenceTerm);
            }
            var (candidateBits, candidateSure) = AtUnitGain(storedD, candidateD, candidateXy, candidateSpread, xx);
            var (referenceBits, referenceSure) = AtUnitGain(Fp16.FromFloat(referenceD), referenceD, referenceXy, referenceSpread, xx);
            unsure = ~(candidateSure & referenceSure);
            for (var b = 0; b < Lanes; b++) (scales.Candidate[b], scales.Reference[b]) = ((ushort)candidateBits[b], (ushort)referenceBits[b]);
            (candidateD, referenceD) = (Fp16.ToFloat(candidateBits), Fp16.ToFloat(referenceBits));
            for (var at = 0; at < Group; at += Lanes)
            {
                var (x, w) = (Load(lanes.X, at), Load(weights, at));
                var e = candidateD * Load(lanes.CandidateValues, at) - x;
                candidateError += w * e * e;
                var r = referenceD * Load(lanes.ReferenceValues, at) - x;
                referenceError += w * r * r;
            }
        }
        var clear = Vector256.LessThan(candidateError, referenceError * Vector256.Create(0.999f));
        var close = ~clear & Vector256.LessThanOrEqual(candidateError, referenceError * Vector256.Create(1.001f))
            & ~Vector256.Equals(candidateError, referenceError);
        // Non-finite errors (fp16 overflow on huge input) are decided in double, where they count as +∞.
        var finite = Vector256.LessThan(Vector256.Abs(candidateError + referenceError), Vector256.Create(float.PositiveInfinity));
        close |= ~finite | unsure;
        clear &= finite & ~unsure;
        return (int)(clear.ExtractMostSignificantBits() | (close.ExtractMostSignificantBits() << Lanes));
    }

    /// <summary>The fp16 scale that brings a block with scale <paramref name="d"/> (bits <paramref name="bits"/>) to unit gain,
    /// Σc·x·y = Σc·x², as <see cref="UnitGain.Correct"/> rescales it, and whether float could tell: false when the gain is
    /// outside or near the edge of the range UnitGain corrects, its sum cancels, the result overflows, or the rescaled scale
    /// lies within <see cref="GainTolerance"/> of an fp16 rounding boundary.</summary>
    private static (Vector256<uint> Bits, Vector256<float> Sure) AtUnitGain(Vector256<uint> bits, Vector256<float> d, Vector256<float> xy,
        Vector256<float> spread, Vector256<float> xx)
    {
        var gain = xy / xx;
        var rescaled = d * (Vector256<float>.One / gain);
        var result = Fp16.FromFloat(rescaled);
        var sure = Vector256.Equals(Fp16.FromFloat(rescaled * Vector256.Create(1 - GainTolerance)),
                Fp16.FromFloat(rescaled * Vector256.Create(1 + GainTolerance))).AsSingle()
            & Vector256.GreaterThan(gain, Vector256.Create((float)UnitGain.LowestGain * (1 + GainTolerance)))
            & Vector256.LessThan(gain, Vector256.Create((float)UnitGain.HighestGain * (1 - GainTolerance)))
            & Vector256.LessThan(spread, Vector256.Create(4f) * Vector256.Abs(xy))
            & Vector256.LessThan(Vector256.Abs(Fp16.ToFloat(result)), Vector256.Create(float.PositiveInfinity));
        // A gain of exactly 1 leaves the block as it is in UnitGain; here d·1 rounds back to d's own bits.
        return (Vector256.ConditionalSelect(sure.AsUInt32(), result, bits), sure);
    }

    /// <summary>Type-0 (x ≈ d·v, v the value of level t): the step search per lane, each round taking the single ±1 index
    /// step that most raises F = (Σw·x·v)² / Σw·v². The rise of a step of weight j that changes its value by δ is computed
    /// from its residual r = x − d·v, as w·(Σw·x·v·δ·(2·r − d·δ) + w·x²·δ²) / Σw·v² after the step, not as a difference of
    /// two F: in float, F carries an error far above the gain of one step of an 8-bit block. A lane whose block has no step
    /// left records d = Σw·x·v / Σw·v² in <see cref="ChunkRows.D"/> and takes the chunk's next block.</summary>
    private static void SearchScale<TLevels>(BlockLevelRange format, in ChunkRows chunk, int count, in GroupLanes lanes)
        where TLevels : struct, ILaneLevels
    {
        Span<int> laneBlock = stackalloc int[Lanes];
        Span<int> laneRounds = stackalloc int[Lanes];
        Span<float> sums = stackalloc float[2 * Lanes];
        var nextBlock = 0;
        for (var b = 0; b < Lanes; b++) nextBlock = StartScale<TLevels>(chunk, count, lanes, b, nextBlock, laneBlock, laneRounds, sums);
        var (sxt, stt) = (Load(sums, 0), Load(sums, Lanes));
        var (low, high) = (Vector256.Create((float)format.Lowest), Vector256.Create((float)format.Highest));
        var (one, zero, noise) = (Vector256<float>.One, Vector256<float>.Zero, Vector256.Create(RiseNoise));
        while (true)
        {
            var fitted = Vector256.GreaterThan(stt, zero);
            var d = Vector256.ConditionalSelect(fitted, sxt / stt, zero);
            var negative = Vector256.LessThan(d, zero);
            // The best rise so far as a fraction num/den (compared by cross-multiplying; den > 0).
            Vector256<float> bestNumerator = zero, bestDenominator = one, bestXt = sxt, bestTt = stt, bestStep = zero, bestDelta = zero;
            var bestJ = Vector256.Create(-1f);
            for (var j = 0; j < Weights; j++)
            {
                var at = j * Lanes;
                var (x, w, t) = (Load(lanes.X, at), Load(lanes.W, at), Load(lanes.T, at));
                var v = TLevels.Linear ? t : Load(lanes.V, at);
                var residual = x - d * v;
                // Toward the residual: up when it has the sign of d (the levels ascend).
                var step = Vector256.ConditionalSelect(Vector256.Xor(Vector256.GreaterThan(residual, zero), negative), one, -one);
                var next = t + step;
                var wx = w * x;
                Vector256<float> delta, rise, tt, floor;
                if (TLevels.Linear)
                {
                    // δ = ±1.
                    delta = step;
                    rise = w * (sxt * (step * (residual + residual) - d) + wx * x);
                    tt = stt + w * (step * (v + v) + one);
                    floor = noise * wx * wx;
                }
                else
                {
                    delta = TLevels.ValueOf(next) - v;
                    var deltaSquared = delta * delta;
                    rise = w * (sxt * delta * (residual + residual - d * delta) + wx * x * deltaSquared);
                    tt = stt + w * delta * (v + v + delta);
                    floor = noise * wx * wx * deltaSquared;
                }
                var better = ~Vector256.Equals(residual, zero) & Vector256.GreaterThan(w, zero)
                    & Vector256.GreaterThanOrEqual(next, low) & Vector256.LessThanOrEqual(next, high)
                    & Vector256.GreaterThan(rise, floor)
                    & Vector256.GreaterThan(rise * bestDenominator, bestNumerator * tt);
                bestNumerator = Vector256.ConditionalSelect(better, rise, bestNumerator);
                bestDenominator = Vector256.ConditionalSelect(better, tt, bestDenominator);
                bestXt = Vector256.ConditionalSelect(better, sxt + delta * wx, bestXt);
                bestTt = Vector256.ConditionalSelect(better, tt, bestTt);
                bestStep = Vector256.ConditionalSelect(better, step, bestStep);
                if (!TLevels.Linear) bestDelta = Vector256.ConditionalSelect(better, delta, bestDelta);
                bestJ = Vector256.ConditionalSelect(better, Vector256.Create((float)j), bestJ);
            }
            (sxt, stt) = (bestXt, bestTt);
            TakeSteps<TLevels>(lanes, bestJ, bestStep, bestDelta);
            var done = Finished(bestJ, laneBlock, laneRounds);
            if (done == 0) continue;
            // The finished lanes' fits, then their next blocks.
            d = Vector256.ConditionalSelect(Vector256.GreaterThan(stt, zero), sxt / stt, zero);
            Store(sums, 0, sxt);
            Store(sums, Lanes, stt);
            for (var b = 0; b < Lanes; b++)
            {
                if ((done & (1 << b)) == 0) continue;
                chunk.D[laneBlock[b]] = d[b];
                chunk.M[laneBlock[b]] = 0;
                nextBlock = StartScale<TLevels>(chunk, count, lanes, b, nextBlock, laneBlock, laneRounds, sums);
            }
            if (!laneBlock.ContainsAnyExcept(-1)) return;
            (sxt, stt) = (Load(sums, 0), Load(sums, Lanes));
        }
    }

    /// <summary>The lanes (bit b) whose block is done: no step found, or the bound on rounds reached.</summary>
    private static int Finished(Vector256<float> bestJ, ReadOnlySpan<int> laneBlock, Span<int> laneRounds)
    {
        var done = (int)Vector256.LessThan(bestJ, Vector256<float>.Zero).ExtractMostSignificantBits();
        for (var b = 0; b < Lanes; b++)
        {
            if (laneBlock[b] < 0) done &= ~(1 << b);
            else if (++laneRounds[b] >= MaxRounds) done |= 1 << b;
        }
        return done;
    }

    /// <summary>Puts block <paramref name="next"/> of the chunk into lane <paramref name="lane"/> from its reference levels,
    /// with its sums Σw·x·v and Σw·v² (added in the lanes' order), or empties the lane when the chunk has no block left.
    /// Returns the next block to start.</summary>
    private static int StartScale<TLevels>(in ChunkRows chunk, int count, in GroupLanes lanes, int lane, int next, Span<int> laneBlock,
        Span<int> laneRounds, Span<float> sums) where TLevels : struct, ILaneLevels
    {
        var filled = next < count;
        var start = next * Weights;
        float sxt = 0, stt = 0;
        for (var j = 0; j < Weights; j++)
        {
            var at = j * Lanes + lane;
            if (!filled)
            {
                // Weight 0: the lane never steps.
                (lanes.X[at], lanes.W[at], lanes.T[at]) = (0, 0, 0);
                if (!TLevels.Linear) lanes.V[at] = 0;
                continue;
            }
            var (x, w, t, v) = (chunk.X[start + j], chunk.W[start + j], chunk.Reference[start + j], chunk.ReferenceValues[start + j]);
            (lanes.X[at], lanes.W[at], lanes.T[at]) = (x, w, t);
            if (!TLevels.Linear) lanes.V[at] = v;
            sxt += w * x * v;
            stt += w * v * v;
        }
        (laneBlock[lane], laneRounds[lane], sums[lane], sums[Lanes + lane]) = (filled ? next : -1, 0, sxt, stt);
        return filled ? next + 1 : next;
    }

    /// <summary>Type-1 (x ≈ d·t + m): the same search with scale and offset fitted jointly (the 2×2 normal equations). On x
    /// centred per block (c = x − x̄, Σw·c = 0) the error reduction of the least-squares (d, m) is a constant plus
    /// Σw·G with G = (Σw·c·t)² / det, det = Σw·Σw·t² − (Σw·t)². A step of weight j by s raises G by
    /// w·(Σw·c·t·(2·s·r − d) + w·(c² + G)) / det after the step (r = c − d·t − m, the residual of the current fit); each round
    /// takes the step with the largest rise. Centring also keeps a block far from zero from cancelling its float sums. A
    /// finished lane records d and m = x̄ + (offset of the centred fit) and takes the chunk's next block.</summary>
    private static void SearchAffine(BlockLevelRange format, in ChunkRows chunk, int count, in GroupLanes lanes)
    {
        Span<int> laneBlock = stackalloc int[Lanes];
        Span<int> laneRounds = stackalloc int[Lanes];
        Span<float> sums = stackalloc float[5 * Lanes]; // Σw, mean, Σw·t, Σw·t², Σw·c·t
        var nextBlock = 0;
        for (var b = 0; b < Lanes; b++) nextBlock = StartAffine(chunk, count, lanes, b, nextBlock, laneBlock, laneRounds, sums);
        var (sw, mean, st, stt, sct) = (Load(sums, 0), Load(sums, Lanes), Load(sums, 2 * Lanes), Load(sums, 3 * Lanes), Load(sums, 4 * Lanes));
        var (one, zero, noise) = (Vector256<float>.One, Vector256<float>.Zero, Vector256.Create(RiseNoise));
        var (low, high) = (Vector256.Create((float)format.Lowest), Vector256.Create((float)format.Highest));
        var tolerance = Vector256.Create(1e-6f);
        while (true)
        {
            var det = sw * stt - st * st;
            // With all levels equal (det = 0) the fit is the mean alone: no step is scored from there.
            var solvable = Vector256.GreaterThan(det, tolerance * sw * stt);
            var d = Vector256.ConditionalSelect(solvable, sw * sct / det, zero);
            var m = Vector256.ConditionalSelect(solvable, -st * sct / det, zero);
            var g = Vector256.ConditionalSelect(solvable, sct * sct / det, zero);
            var negative = Vector256.LessThan(d, zero);
            Vector256<float> bestNumerator = zero, bestDenominator = one, bestT = st, bestTt = stt, bestCt = sct, bestStep = zero;
            var bestJ = Vector256.Create(-1f);
            for (var j = 0; j < Weights; j++)
            {
                var at = j * Lanes;
                var (c, w, t) = (Load(lanes.Centred, at), Load(lanes.W, at), Load(lanes.T, at));
                var residual = c - d * t - m;
                var step = Vector256.ConditionalSelect(Vector256.Xor(Vector256.GreaterThan(residual, zero), negative), one, -one);
                var next = t + step;
                var wc = w * c;
                var rise = w * (sct * (step * (residual + residual) - d) + w * (c * c + g));
                var nextT = st + step * w;
                var nextTt = stt + w * (step * (t + t) + one);
                var nextDet = sw * nextTt - nextT * nextT;
                var better = solvable & ~Vector256.Equals(residual, zero) & Vector256.GreaterThan(w, zero)
                    & Vector256.GreaterThanOrEqual(next, low) & Vector256.LessThanOrEqual(next, high)
                    & Vector256.GreaterThan(nextDet, tolerance * sw * nextTt)
                    & Vector256.GreaterThan(rise, noise * w * (wc * c + w * g))
                    & Vector256.GreaterThan(rise * bestDenominator, bestNumerator * nextDet);
                bestNumerator = Vector256.ConditionalSelect(better, rise, bestNumerator);
                bestDenominator = Vector256.ConditionalSelect(better, nextDet, bestDenominator);
                bestT = Vector256.ConditionalSelect(better, nextT, bestT);
                bestTt = Vector256.ConditionalSelect(better, nextTt, bestTt);
                bestCt = Vector256.ConditionalSelect(better, sct + step * wc, bestCt);
                bestStep = Vector256.ConditionalSelect(better, step, bestStep);
                bestJ = Vector256.ConditionalSelect(better, Vector256.Create((float)j), bestJ);
            }
            (st, stt, sct) = (bestT, bestTt, bestCt);
            TakeSteps<LinearLaneLevels>(lanes, bestJ, bestStep, zero);
            var done = Finished(bestJ, laneBlock, laneRounds);
            if (done == 0) continue;
            var finalDet = sw * stt - st * st;
            var fit = Vector256.GreaterThan(finalDet, tolerance * sw * stt);
            var finalD = Vector256.ConditionalSelect(fit, sw * sct / finalDet, zero);
            var finalM = mean + Vector256.ConditionalSelect(fit, -st * sct / finalDet, zero);
            Store(sums, 0, sw);
            Store(sums, Lanes, mean);
            Store(sums, 2 * Lanes, st);
            Store(sums, 3 * Lanes, stt);
            Store(sums, 4 * Lanes, sct);
            for (var b = 0; b < Lanes; b++)
            {
                if ((done & (1 << b)) == 0) continue;
                (chunk.D[laneBlock[b]], chunk.M[laneBlock[b]]) = (finalD[b], finalM[b]);
                nextBlock = StartAffine(chunk, count, lanes, b, nextBlock, laneBlock, laneRounds, sums);
            }
            if (!laneBlock.ContainsAnyExcept(-1)) return;
            (sw, mean, st, stt, sct) = (Load(sums, 0), Load(sums, Lanes), Load(sums, 2 * Lanes), Load(sums, 3 * Lanes), Load(sums, 4 * Lanes));
        }
    }

    /// <summary><see cref="StartScale{TLevels}"/> for the affine search: the block's weighted mean, its values centred on it,
    /// and the sums Σw, Σw·t, Σw·t², Σw·c·t.</summary>
    private static int StartAffine(in ChunkRows chunk, int count, in GroupLanes lanes, int lane, int next, Span<int> laneBlock,
        Span<int> laneRounds, Span<float> sums)
    {
        var filled = next < count;
        var start = next * Weights;
        float sw = 0, sx = 0, st = 0, stt = 0, sct = 0;
        if (filled)
        {
            for (var j = 0; j < Weights; j++)
            {
                var w = chunk.W[start + j];
                sw += w;
                sx += w * chunk.X[start + j];
            }
        }
        var mean = sw > 0 ? sx / sw : 0;
        for (var j = 0; j < Weights; j++)
        {
            var at = j * Lanes + lane;
            if (!filled)
            {
                (lanes.Centred[at], lanes.W[at], lanes.T[at]) = (0, 0, 0);
                continue;
            }
            var (w, t) = (chunk.W[start + j], chunk.Reference[start + j]);
            var c = chunk.X[start + j] - mean;
            (lanes.Centred[at], lanes.W[at], lanes.T[at]) = (c, w, t);
            st += w * t;
            stt += w * t * t;
            sct += w * c * t;
        }
        (laneBlock[lane], laneRounds[lane]) = (filled ? next : -1, 0);
        (sums[lane], sums[Lanes + lane], sums[2 * Lanes + lane], sums[3 * Lanes + lane], sums[4 * Lanes + lane]) = (sw, mean, st, stt, sct);
        return filled ? next + 1 : next;
    }

    /// <summary>Level j of each lane moves by that lane's step where j is the lane's chosen weight (and its value by δ).</summary>
    private static void TakeSteps<TLevels>(in GroupLanes lanes, Vector256<float> chosen, Vector256<float> step, Vector256<float> delta)
        where TLevels : struct, ILaneLevels
    {
        for (var j = 0; j < Weights; j++)
        {
            var at = j * Lanes;
            var taken = Vector256.Equals(chosen, Vector256.Create((float)j));
            Store(lanes.T, at, Load(lanes.T, at) + (taken & step));
            if (!TLevels.Linear) Store(lanes.V, at, Load(lanes.V, at) + (taken & delta));
        }
    }
}
