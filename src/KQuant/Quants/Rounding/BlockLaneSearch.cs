using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KQuant.Quants.Float;
using KQuant.Quants.Legacy;
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
/// The optimal path of IQ4_NL, and of Q4_0, Q5_0, Q4_1 and Q5_1 with an imatrix (without one, and Q8_0 always,
/// <see cref="ScaleTrialLaneSearch"/>): the greedy quant-step search
/// of ik_llama.cpp PR 295 (from the reference's levels, read back from the codec's encoding or, for Q5_0, computed in the
/// lanes; for IQ4_NL and Q4_0 with an imatrix from a trial start computed in the lanes; each round takes the single ±1
/// index step that most lowers the error of the least-squares fit; stop when none does, or after a format's bound on
/// rounds) run on eight blocks at once, one block per SIMD lane, with the keep-the-better comparison of
/// <see cref="KeepBestBlocks"/> (unit gain included, for IQ4_NL) done in the same lanes. A block of 32 is too small for SIMD
/// across its weights to pay (every round would end in horizontal sums); across blocks, a round is 32 vector steps whose sums
/// stay in their lanes. Sums are in float: each step's rise is computed from its residual and must clear a noise bound, so
/// float rounding neither hides small steps nor cycles a step back and forth. A lane whose outcome float cannot call (errors
/// within 0.1%, a unit-gain scale near an fp16 rounding boundary, degenerate gains) is settled by the scalar comparison of
/// <see cref="KeepBestBlocks.KeepCandidate"/>, so the written block is always the one that comparison would keep.
/// </summary>
internal static class BlockLaneSearch
{
    private const int Weights = 32;
    private const int Group = Lanes * Weights;

    /// <summary>Bound on rounds: far more than a search from the reference takes (each round gains, and the start is
    /// already near the optimum); bounds the time on adversarial input. A format may pass a lower bound (Q5_0).</summary>
    internal const int MaxRounds = 4 * Weights;

    /// <summary>A step's rise must exceed this fraction of its own largest term (w²·x²·δ²): below that, float rounding in the
    /// cancelling terms, not the data, would decide, and a step and its reverse could both look like gains.</summary>
    private const float RiseNoise = 1e-6f;

    /// <summary>Relative error allowed for a unit gain computed in float lanes against <see cref="UnitGain"/>'s (32 products
    /// summed in another order: at most about 8·10⁻⁶ when the sum is not cancelling, which is also checked). A rescaled scale
    /// that could round to another fp16 within it, or a gain that close to the range UnitGain corrects, is settled the scalar
    /// way, so the lanes never write other bytes than <see cref="UnitGain.Correct"/> would.</summary>
    private const float GainTolerance = 2e-5f;

    /// <summary>Quantizes a row the reference way, then searches every block from it and keeps the encoding with the lower
    /// error Σ w·(y − x)² as decoded, w the weighting of <see cref="KeepBestBlocks.WeightingFor"/>, both at unit gain where
    /// the format takes it. Each block is never worse than the reference's. With <paramref name="trialStart"/> (IQ4_NL;
    /// Q4_0 with an imatrix) there is no reference encoding: each block starts from the best of those trial scales (<see cref="TrialStart"/>),
    /// and is never worse than that start; a block the trials cannot encode (all zero, a scale beyond fp16) or should not
    /// (importance on a few weights) starts from the codec's encoding. With <paramref name="makeQxStart"/> (Q5_0 with an
    /// imatrix) the reference encoding is computed in the lanes (<see cref="MakeQxStart"/>), the codec's bytes for every
    /// block. <paramref name="maxRounds"/> bounds the rounds of the type-0 search.</summary>
    public static void Quantize<TBlock, TLevels>(IRowCodec codec, BlockLevelRange format, ReadOnlySpan<float> source, Span<byte> destination,
        ReadOnlySpan<float> importance, RowRole role, BlockLevelReader<TBlock> read, BlockLevelWriter<TBlock> write,
        ReadOnlySpan<float> trialStart = default, bool makeQxStart = false, int maxRounds = MaxRounds)
        where TBlock : unmanaged where TLevels : struct, ILaneLevels
    {
        var ownStart = !trialStart.IsEmpty || makeQxStart;
        Debug.Assert(!ownStart || !format.Affine);
        Debug.Assert(!makeQxStart || (TLevels.Linear && !importance.IsEmpty));
        if (!ownStart) codec.Quantize(source, destination, importance);
        // make_qx_quants weighs its trials by c·√(σ² + x²), σ² the mean square of the whole row.
        var rowMeanSquare = makeQxStart ? LegacyBlockMath.MeanSquare(source) : 0f;
        var weighting = KeepBestBlocks.WeightingFor(codec.Type, !importance.IsEmpty, role);
        Debug.Assert(weighting is ErrorWeighting.Importance or ErrorWeighting.ImportanceTimesMagnitude);
        var unitGain = UnitGain.Applies(codec.Type);
        Debug.Assert(!format.Affine || (TLevels.Linear && !unitGain));
        var blocks = MemoryMarshal.Cast<byte, TBlock>(destination);
        Span<float> buffer = stackalloc float[14 * Group + 2 * Lanes];
        var rows = new GroupRows(buffer[..(4 * Group)]);
        var lanes = new GroupLanes(buffer.Slice(4 * Group, 10 * Group), TLevels.Linear, weighting == ErrorWeighting.Importance);
        var referenceScales = buffer.Slice(14 * Group, Lanes);
        var referenceOffsets = buffer.Slice(14 * Group + Lanes, Lanes);
        Span<ushort> bits = stackalloc ushort[5 * Lanes];
        var scales = new LaneScales(bits);
        Span<float> scratch = stackalloc float[3 * Weights];
        for (var first = 0; first < blocks.Length; first += Lanes)
        {
            var count = Math.Min(Lanes, blocks.Length - first);
            var n = count * Weights;
            source.Slice(first * Weights, n).CopyTo(rows.X);
            rows.X[n..].Clear();
            if (importance.IsEmpty) rows.C[..n].Fill(1f);
            else importance.Slice(first * Weights, n).CopyTo(rows.C);
            rows.C[n..].Clear(); // empty lanes weigh nothing: they never step and are never written
            for (var b = 0; b < Lanes && !ownStart; b++)
            {
                var levels = rows.Reference.Slice(b * Weights, Weights);
                if (b < count) read(in blocks[first + b], levels, out referenceScales[b], out referenceOffsets[b]);
                else
                {
                    levels.Clear();
                    (referenceScales[b], referenceOffsets[b]) = (0, 0);
                }
            }
            Transpose(rows.X, lanes.X, Lanes, Weights);
            Transpose(rows.C, lanes.C, Lanes, Weights);
            if (weighting == ErrorWeighting.ImportanceTimesMagnitude) MagnitudeWeights(lanes);
            var fallback = 0;
            if (ownStart)
            {
                referenceOffsets.Clear();
                if (makeQxStart) MakeQxStart(format, lanes, rowMeanSquare, referenceScales, scales.Start);
                else fallback = TrialStart<TLevels>(format, lanes, trialStart, referenceScales, scales.Start) & ((1 << count) - 1);
                Transpose(lanes.Reference, rows.Reference, Weights, Lanes);
                for (var b = 0; fallback != 0 && b < count; b++)
                {
                    if ((fallback & (1 << b)) == 0) continue;
                    // The codec's encoding instead, into the block (where the scalar comparison below expects the start)
                    // and into the lanes.
                    var bytes = MemoryMarshal.AsBytes(blocks.Slice(first + b, 1));
                    codec.Quantize(rows.X.Slice(b * Weights, Weights), bytes, importance.IsEmpty ? default : importance.Slice((first + b) * Weights, Weights));
                    var levels = rows.Reference.Slice(b * Weights, Weights);
                    read(in blocks[first + b], levels, out referenceScales[b], out _);
                    for (var j = 0; j < Weights; j++) lanes.Reference[j * Lanes + b] = levels[j];
                }
                if (fallback != 0 && !TLevels.Linear)
                {
                    for (var at = 0; at < Group; at += Lanes) Store(lanes.ReferenceValues, at, TLevels.ValueOf(Load(lanes.Reference, at)));
                }
            }
            else
            {
                Transpose(rows.Reference, lanes.Reference, Lanes, Weights);
                if (!TLevels.Linear)
                {
                    for (var at = 0; at < Group; at += Lanes) Store(lanes.ReferenceValues, at, TLevels.ValueOf(Load(lanes.Reference, at)));
                }
            }
            var (d, m) = format.Affine ? SearchAffine(format, lanes) : SearchScale<TLevels>(format, lanes, maxRounds);
            var decided = Decide<TLevels>(format, unitGain, lanes, d, m, referenceScales, referenceOffsets, scales);
            var mask = (1 << count) - 1;
            var (chosen, unsure) = (decided & mask, (decided >> Lanes) & mask);
            if (chosen == 0 && unsure == 0 && !unitGain && !ownStart) continue;
            if ((chosen | unsure) != 0) Transpose(lanes.Candidate, rows.Candidate, Weights, Lanes);
            for (var b = 0; b < count; b++)
            {
                ref var block = ref blocks[first + b];
                var candidateLevels = rows.Candidate.Slice(b * Weights, Weights);
                if ((unsure & (1 << b)) != 0)
                {
                    // The scalar frame's own decision, from the candidate as searched, against the start in the block.
                    if (ownStart && (fallback & (1 << b)) == 0) write(ref block, rows.Reference.Slice(b * Weights, Weights), scales.Start[b], 0);
                    var candidate = block;
                    write(ref candidate, candidateLevels, scales.Searched[b], scales.Offset[b]);
                    var x = rows.X.Slice(b * Weights, Weights);
                    var c = importance.IsEmpty ? default : importance.Slice((first + b) * Weights, Weights);
                    var w = scratch[..Weights];
                    KeepBestBlocks.ErrorWeights(weighting, x, c, w);
                    if (KeepBestBlocks.KeepCandidate(codec, unitGain, ref block, ref candidate, x, c, w, scratch.Slice(Weights, Weights),
                        scratch.Slice(2 * Weights, Weights)))
                    {
                        block = candidate;
                    }
                }
                else if ((chosen & (1 << b)) != 0) write(ref block, candidateLevels, scales.Candidate[b], scales.Offset[b]);
                else if (unitGain) write(ref block, rows.Reference.Slice(b * Weights, Weights), scales.Reference[b], 0);
                else if (ownStart && (fallback & (1 << b)) == 0) write(ref block, rows.Reference.Slice(b * Weights, Weights), scales.Start[b], 0);
            }
        }
    }

    /// <summary>Eight blocks row-major (block b at b·32): values, importance (1 without), reference levels, candidate levels.</summary>
    private readonly ref struct GroupRows(Span<float> buffer)
    {
        public readonly Span<float> X = buffer[..Group];
        public readonly Span<float> C = buffer.Slice(Group, Group);
        public readonly Span<float> Reference = buffer.Slice(2 * Group, Group);
        public readonly Span<float> Candidate = buffer.Slice(3 * Group, Group);
    }

    /// <summary>The same transposed (weight j of block b at j·8 + b), with the error weights W, x centred per block for the
    /// affine search, the level indices being searched (T, from the reference's) and finally proposed (Candidate), and the
    /// values of the reference's, searched and proposed levels (the index spans themselves for the linear formats, and W
    /// is C when the error weights are the importance).</summary>
    private readonly ref struct GroupLanes
    {
        public readonly Span<float> X, C, W, Centred, Reference, ReferenceValues, T, V, Candidate, CandidateValues;

        public GroupLanes(Span<float> buffer, bool linear, bool weightsAreImportance)
        {
            X = buffer[..Group];
            C = buffer.Slice(Group, Group);
            W = weightsAreImportance ? C : buffer.Slice(2 * Group, Group);
            Centred = buffer.Slice(3 * Group, Group);
            Reference = buffer.Slice(4 * Group, Group);
            ReferenceValues = linear ? Reference : buffer.Slice(5 * Group, Group);
            T = buffer.Slice(6 * Group, Group);
            V = linear ? T : buffer.Slice(7 * Group, Group);
            Candidate = buffer.Slice(8 * Group, Group);
            CandidateValues = linear ? Candidate : buffer.Slice(9 * Group, Group);
        }
    }

    /// <summary>fp16 bits per lane: the candidate's scale as searched (before unit gain), the candidate's and the
    /// reference's as they are written, the candidate's offset, and the trial start's scale (where there is one).</summary>
    private readonly ref struct LaneScales(Span<ushort> bits)
    {
        public readonly Span<ushort> Searched = bits[..Lanes];
        public readonly Span<ushort> Candidate = bits.Slice(Lanes, Lanes);
        public readonly Span<ushort> Reference = bits.Slice(2 * Lanes, Lanes);
        public readonly Span<ushort> Offset = bits.Slice(3 * Lanes, Lanes);
        public readonly Span<ushort> Start = bits.Slice(4 * Lanes, Lanes);
    }

    /// <summary>A block whose error weights are concentrated on fewer than this many of its values, (Σw)²/Σw² below it,
    /// starts from the codec's encoding instead of the trials: its error is decided by where those few values fall
    /// between levels, which the trials' scales, spaced for the largest value, can miss. On test rows with lognormal
    /// importance (σ = 1.5, about 3.4 such values per block) the trial start alone left rows at 1.8–2.1× the reference's
    /// error; with this, 1.06× (3 was too few). Real imatrices seldom reach it (by the importance alone: 3 of
    /// debdocs-llama-10m's 576 blocks, 1 of debdocs-tiny's 144, 9% of the synthetic benchmark model's 6,784); the
    /// threshold 8 cost that model 1.56× the reference codec's time instead of 1.36×. Without an imatrix the weights
    /// sqrt(σ² + x²) stay above √σ², far from it.</summary>
    private const float ConcentratedWeights = 4;

    /// <summary>The start of a search with no reference encoding (type-0 formats): per lane, the value of largest magnitude
    /// m, and for each trial n the levels nearest to x·n/m (m on level value n, clipped to the grid where n lies beyond
    /// it); the trial with the largest F = (Σw·x·v)²/Σw·v² gives the least-squares scale, stored as fp16, and every weight
    /// is rounded again against it. Leaves the levels and their values in the lanes' reference spans and the decoded
    /// scale in <paramref name="startScales"/> (fp16 bits in <paramref name="startBits"/>); returns the lanes it could not
    /// encode (bit b): all below ggml's GROUP_MAX_EPS, weights concentrated on a few values
    /// (<see cref="ConcentratedWeights"/>), or a scale that rounds to 0 or beyond fp16.</summary>
    private static int TrialStart<TLevels>(BlockLevelRange format, in GroupLanes lanes, ReadOnlySpan<float> trials, Span<float> startScales,
        Span<ushort> startBits) where TLevels : struct, ILaneLevels
    {
        var zero = Vector256<float>.Zero;
        Span<float> x0 = lanes.X, w0 = lanes.W;
        var largest = LargestValues(x0, out var magnitude);
        Vector256<float> sumW = zero, sumWW = zero;
        for (var at = 0; at < Group; at += Lanes)
        {
            var w = Load(w0, at);
            sumW += w;
            sumWW = Vector256.FusedMultiplyAdd(w, w, sumWW);
        }
        var encodable = Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(BlockSolvers.GroupMaxEps))
            & Vector256.GreaterThanOrEqual(sumW * sumW, Vector256.Create(ConcentratedWeights) * sumWW);
        var inverseLargest = Vector256.ConditionalSelect(encodable, Vector256<float>.One / largest, zero);
        Vector256<float> bestF = Vector256.Create(-1f), bestXv = zero, bestVv = Vector256<float>.One;
        foreach (var trial in trials)
        {
            var inverse = Vector256.Create(trial) * inverseLargest;
            Vector256<float> xv = zero, vv = zero;
            for (var at = 0; at < Group; at += Lanes)
            {
                var (x, w) = (Load(x0, at), Load(w0, at));
                TLevels.Nearest(x * inverse, format, out var v);
                var wv = w * v;
                xv = Vector256.FusedMultiplyAdd(wv, x, xv);
                vv = Vector256.FusedMultiplyAdd(wv, v, vv);
            }
            var f = xv * xv / vv;
            var better = Vector256.GreaterThan(vv, zero) & Vector256.GreaterThan(f, bestF);
            bestF = Vector256.ConditionalSelect(better, f, bestF);
            bestXv = Vector256.ConditionalSelect(better, xv, bestXv);
            bestVv = Vector256.ConditionalSelect(better, vv, bestVv);
        }
        var bits = Fp16.FromFloat(bestXv / bestVv);
        var d = Fp16.ToFloat(bits);
        encodable &= ~Vector256.Equals(d, zero) & Vector256.LessThan(Vector256.Abs(d), Vector256.Create(float.PositiveInfinity));
        var inverseD = Vector256.ConditionalSelect(encodable, Vector256<float>.One / d, zero);
        for (var at = 0; at < Group; at += Lanes)
        {
            Store(lanes.Reference, at, TLevels.Nearest(Load(x0, at) * inverseD, format, out var value));
            Store(lanes.ReferenceValues, at, value);
        }
        Store(startScales, 0, Vector256.ConditionalSelect(encodable, d, zero));
        for (var b = 0; b < Lanes; b++) startBits[b] = (ushort)bits[b];
        return (int)(~encodable).ExtractMostSignificantBits();
    }

    /// <summary>The start of Q5_0's search with importance: make_qx_quants' encoding computed here in the lanes by the
    /// codec's own trial search (<see cref="BlockSolvers.MakeQxTrialsEightGroups"/>, whose transposed layout is the lanes'),
    /// so the same levels and fp16 scale, without the codec packing a row that the search would unpack again. The weights
    /// c·√(σ² + x²), σ² = <paramref name="rowMeanSquare"/>, are built in <see cref="GroupLanes.Centred"/>, which only the
    /// affine search uses, and w·x in <see cref="GroupLanes.Candidate"/>, written only after the search. Every lane gets
    /// the codec's encoding, including a block below ggml's GROUP_MAX_EPS and a scale that rounds to 0 or beyond fp16, so
    /// none is left to the codec.</summary>
    private static void MakeQxStart(BlockLevelRange format, in GroupLanes lanes, float rowMeanSquare, Span<float> startScales,
        Span<ushort> startBits)
    {
        Span<float> x0 = lanes.X, w0 = lanes.Centred, wx0 = lanes.Candidate;
        var sigma2 = Vector256.Create(rowMeanSquare);
        for (var at = 0; at < Group; at += Lanes)
        {
            var x = Load(x0, at);
            var w = Load(lanes.C, at) * Vector256.Sqrt(sigma2 + x * x);
            Store(w0, at, w);
            Store(wx0, at, w * x);
        }
        var (scale, inverse, allZero) = BlockSolvers.MakeQxTrialsEightGroups(-format.Lowest, MemoryMarshal.Cast<float, Vector256<float>>(x0),
            MemoryMarshal.Cast<float, Vector256<float>>(w0), MemoryMarshal.Cast<float, Vector256<float>>(wx0));
        // As the codec writes them: an all-zero block gets scale 0 and every level at the bottom (code 0); a scale that
        // rounds to 0 or beyond fp16 is written as it rounds, and the search and comparison after take it as they took
        // the codec's.
        var bits = Fp16.FromFloat(scale);
        var (lowest, highest) = (Vector256.Create(format.Lowest), Vector256.Create(format.Highest));
        var bottom = Vector256.Create((float)format.Lowest);
        for (var at = 0; at < Group; at += Lanes)
        {
            var level = Vector256.ConvertToSingle(Vector256.Min(Vector256.Max(BlockSolvers.NearestInt(inverse * Load(x0, at)), lowest), highest));
            Store(lanes.Reference, at, Vector256.ConditionalSelect(allZero, bottom, level));
        }
        Store(startScales, 0, Fp16.ToFloat(bits));
        for (var b = 0; b < Lanes; b++) startBits[b] = (ushort)bits[b];
    }

    /// <summary>W = C·sqrt(σ² + x²) with σ² = 2·mean(x²) over each block (<see cref="ErrorWeighting.ImportanceTimesMagnitude"/>).</summary>
    private static void MagnitudeWeights(in GroupLanes lanes)
    {
        var squares = Vector256<float>.Zero;
        for (var at = 0; at < Group; at += Lanes)
        {
            var x = Load(lanes.X, at);
            squares += x * x;
        }
        var sigma2 = squares * Vector256.Create(2f / Weights);
        for (var at = 0; at < Group; at += Lanes)
        {
            var x = Load(lanes.X, at);
            Store(lanes.W, at, Load(lanes.C, at) * Vector256.Sqrt(sigma2 + x * x));
        }
    }

    /// <summary>Rounds every weight again against the fp16 scale (and offset) of the search's fit, brings candidate and
    /// reference to unit gain where the format takes it, and returns the lanes whose candidate is clearly better (bit b), with
    /// bit b + 8 set for the lanes float cannot call.</summary>
    private static int Decide<TLevels>(BlockLevelRange format, bool unitGain, in GroupLanes lanes, Vector256<float> d, Vector256<float> m,
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
                var (x, w) = (Load(lanes.X, at), Load(lanes.W, at));
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
                var (x, w) = (Load(lanes.X, at), Load(lanes.W, at));
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

    /// <summary>Type-0 (x ≈ d·v, v the value of level t): the step search per lane,
    /// each round taking the single ±1 index step that most raises F = (Σw·x·v)² / Σw·v². The rise of a step of weight j that
    /// changes its value by δ is computed from its residual r = x − d·v, as w·(Σw·x·v·δ·(2·r − d·δ) + w·x²·δ²) / Σw·v² after
    /// the step, not as a difference of two F: in float, F carries an error far above the gain of one step of an 8-bit
    /// block. Returns d = Σw·x·v / Σw·v² of the final levels.</summary>
    private static (Vector256<float> D, Vector256<float> M) SearchScale<TLevels>(BlockLevelRange format, in GroupLanes lanes, int maxRounds)
        where TLevels : struct, ILaneLevels
    {
        lanes.Reference.CopyTo(lanes.T);
        if (!TLevels.Linear) lanes.ReferenceValues.CopyTo(lanes.V);
        Vector256<float> sxt = default, stt = default;
        for (var at = 0; at < Group; at += Lanes)
        {
            var (x, w, v) = (Load(lanes.X, at), Load(lanes.W, at), Load(lanes.V, at));
            sxt += w * x * v;
            stt += w * v * v;
        }
        var (low, high) = (Vector256.Create((float)format.Lowest), Vector256.Create((float)format.Highest));
        var (one, zero, noise) = (Vector256<float>.One, Vector256<float>.Zero, Vector256.Create(RiseNoise));
        for (var round = 0; round < maxRounds; round++)
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
                var step = StepTowardResidual(residual, negative);
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
            if (!Vector256.GreaterThanOrEqualAny(bestJ, zero)) break;
            (sxt, stt) = (bestXt, bestTt);
            TakeSteps<TLevels>(lanes, bestJ, bestStep, bestDelta);
        }
        return (Vector256.ConditionalSelect(Vector256.GreaterThan(stt, zero), sxt / stt, zero), zero);
    }

    /// <summary>Type-1 (x ≈ d·t + m): the same search with scale and offset fitted jointly (the 2×2 normal equations). On x
    /// centred per block (c = x − x̄, Σw·c = 0) the error reduction of the least-squares (d, m) is a constant plus
    /// Σw·G with G = (Σw·c·t)² / det, det = Σw·Σw·t² − (Σw·t)². A step of weight j by s raises G by
    /// w·(Σw·c·t·(2·s·r − d) + w·(c² + G)) / det after the step (r = c − d·t − m, the residual of the current fit); each round
    /// takes the step with the largest rise. Centring also keeps a block far from zero from cancelling its float sums.</summary>
    private static (Vector256<float> D, Vector256<float> M) SearchAffine(BlockLevelRange format, in GroupLanes lanes)
    {
        lanes.Reference.CopyTo(lanes.T);
        Vector256<float> sw = default, sx = default;
        for (var at = 0; at < Group; at += Lanes)
        {
            var w = Load(lanes.W, at);
            sw += w;
            sx += w * Load(lanes.X, at);
        }
        var (one, zero, noise) = (Vector256<float>.One, Vector256<float>.Zero, Vector256.Create(RiseNoise));
        var mean = Vector256.ConditionalSelect(Vector256.GreaterThan(sw, zero), sx / sw, zero);
        Vector256<float> st = default, stt = default, sct = default;
        for (var at = 0; at < Group; at += Lanes)
        {
            var (w, t) = (Load(lanes.W, at), Load(lanes.T, at));
            var c = Load(lanes.X, at) - mean;
            Store(lanes.Centred, at, c);
            st += w * t;
            stt += w * t * t;
            sct += w * c * t;
        }
        var (low, high) = (Vector256.Create((float)format.Lowest), Vector256.Create((float)format.Highest));
        var tolerance = Vector256.Create(1e-6f);
        for (var round = 0; round < MaxRounds; round++)
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
                var step = StepTowardResidual(residual, negative);
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
            if (!Vector256.GreaterThanOrEqualAny(bestJ, zero)) break;
            (st, stt, sct) = (bestT, bestTt, bestCt);
            TakeSteps<LinearLaneLevels>(lanes, bestJ, bestStep, zero);
        }
        var finalDet = sw * stt - st * st;
        var fit = Vector256.GreaterThan(finalDet, tolerance * sw * stt);
        return (Vector256.ConditionalSelect(fit, sw * sct / finalDet, zero), mean + Vector256.ConditionalSelect(fit, -st * sct / finalDet, zero));
    }

    /// <summary>The index step toward the residual, +1 or −1: up when the residual has the sign of d (the levels ascend;
    /// <paramref name="negative"/> marks the lanes with d &lt; 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> StepTowardResidual(Vector256<float> residual, Vector256<float> negative) =>
        Vector256.ConditionalSelect(Vector256.Xor(Vector256.GreaterThan(residual, Vector256<float>.Zero), negative),
            Vector256<float>.One, -Vector256<float>.One);

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
