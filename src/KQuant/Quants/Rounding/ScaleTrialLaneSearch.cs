using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KQuant.Quants.Float;
using static KQuant.Quants.LaneLayout;

namespace KQuant.Quants;

/// <summary>A type-0 legacy format (weight = d·level) as <see cref="ScaleTrialLaneSearch"/> sees it: its reference
/// encoding, reproduced lane for lane, and the levels a search may use.</summary>
internal interface IScaleTrialFormat
{
    /// <summary>The lowest and highest level a searched block may use.</summary>
    static abstract int Lowest { get; }

    /// <inheritdoc cref="Lowest"/>
    static abstract int Highest { get; }

    /// <summary>How many levels the reference puts between zero and the block's value of largest magnitude (8, 16, 127):
    /// trial scales move that value by fractions of one level.</summary>
    static abstract int ReferenceSpan { get; }

    /// <summary>The reference's scale (before fp16), from the block's value of largest magnitude (the first on ties) and
    /// that magnitude, computed as the reference computes it.</summary>
    static abstract Vector256<float> ReferenceScale(Vector256<float> signedMax, Vector256<float> absMax);

    /// <summary>The reference's level of <paramref name="x"/> at its inverse scale, bit for bit, for lanes whose inverse
    /// scale is finite and non-zero.</summary>
    static abstract Vector256<float> ReferenceLevel(Vector256<float> x, Vector256<float> inverse);
}

/// <summary>A type-1 legacy format (weight = d·level + m, levels 0..<see cref="Highest"/>) as
/// <see cref="ScaleTrialLaneSearch"/> sees it. Its reference is the same for Q4_1 and Q5_1: m = the block's minimum,
/// d = (max − min)/Highest, level = min(Highest, ⌊(x − min)/d + ½⌋).</summary>
internal interface IAffineTrialFormat
{
    static abstract int Highest { get; }
}

/// <summary>
/// The optimal path of Q4_0, Q5_0 and Q8_0 where their reference ignores importance (without an imatrix, and Q8_0 always):
/// a few trial scales, the best refitted, eight blocks at once, one block per SIMD lane. Per block: the reference encoding
/// (computed in the lanes, the same bits as the codec's), and trial scales that put the block's largest value a fraction of
/// a level beyond or inside the reference's end level; each trial rounds every weight, and the one with the largest
/// F = (Σw·x·q)² / Σw·q² (the error its least-squares scale removes) gives the scale d = Σw·x·q / Σw·q², which is stored as
/// fp16 with every weight rounded again against it. The block keeps the reference's encoding unless that candidate's
/// error Σw·(y − x)², as decoded, is lower by more than float's error on the sums (<see cref="ErrorMargin"/>), so no
/// block is ever worse than the reference's.
/// Measured on debdocs-llama-10m, plain MSE against the reference's: Q4_0 0.892, Q5_0 0.892, Q8_0 0.857, where the greedy
/// quant-step search from the reference (<see cref="BlockLaneSearch"/>) gave 0.910, 0.921 and 0.919 at four times the cost.
/// Putting the largest value beyond the end level (it clips there) is what the step search cannot reach: it never leaves
/// the reference's scale by more than one level's worth of steps.
/// </summary>
internal static class ScaleTrialLaneSearch
{
    private const int Weights = 32;
    private const int Group = Lanes * Weights;

    /// <summary>Where each trial puts the largest value, in levels beyond (+) or inside (−) the reference's end level; the
    /// reference's own encoding is the trial at 0 and comes for free. Four from the measured sets of 2–5 trials at ±¼–1
    /// level (debdocs-llama-10m, MSE against the reference's: {±¾} 0.900 / 0.903 / 0.874 for Q4_0 / Q5_0 / Q8_0, these four
    /// 0.892 / 0.892 / 0.857, six at ±¼, ±¾ and ±1 no better than 0.890).</summary>
    private static ReadOnlySpan<float> TrialOffsets => [1f, 0.5f, -0.5f, -1f];

    /// <summary>Relative margin by which the candidate's error must undercut the reference's to be written. Each error is 32
    /// positive float terms y − x (y = level·d exact in float), weighted, squared and summed: at most about 40 roundings of
    /// 2⁻²⁴, 2.4·10⁻⁶ relative, each; 10⁻⁵ leaves a factor of four.</summary>
    private const float ErrorMargin = 1e-5f;

    /// <summary>Quantizes a row of a type-0 format: per block the reference encoding or, where its error is clearly lower,
    /// the best trial's. Blocks whose reference the lanes do not reproduce (all zero, subnormal, or a scale beyond fp16) are
    /// the codec's own.</summary>
    public static void Quantize<TBlock, TFormat>(IRowCodec codec, ReadOnlySpan<float> source, Span<byte> destination,
        ReadOnlySpan<float> importance, BlockLevelWriter<TBlock> write)
        where TBlock : unmanaged where TFormat : struct, IScaleTrialFormat =>
        QuantizeRow<TBlock, ScaleSearch<TFormat>>(codec, source, destination, importance, write);

    /// <summary>Quantizes a row of a type-1 format without importance, the same way: the reference, and trial ranges that
    /// move one end of the block's range half a level inward; the best by its least-squares fit of scale and offset
    /// (<see cref="SearchAffine{TFormat}"/>). Blocks whose reference the lanes do not reproduce (a zero extreme, whose sign
    /// the reference takes from the block's first zero, or a range beyond fp16) are the codec's own.</summary>
    public static void QuantizeAffine<TBlock, TFormat>(IRowCodec codec, ReadOnlySpan<float> source, Span<byte> destination,
        BlockLevelWriter<TBlock> write)
        where TBlock : unmanaged where TFormat : struct, IAffineTrialFormat =>
        QuantizeRow<TBlock, AffineSearch<TFormat>>(codec, source, destination, default, write);

    private static void QuantizeRow<TBlock, TSearch>(IRowCodec codec, ReadOnlySpan<float> source, Span<byte> destination,
        ReadOnlySpan<float> importance, BlockLevelWriter<TBlock> write)
        where TBlock : unmanaged where TSearch : struct, ILaneSearch
    {
        var blocks = MemoryMarshal.Cast<byte, TBlock>(destination);
        var blockBytes = Unsafe.SizeOf<TBlock>();
        Span<float> buffer = stackalloc float[5 * Group];
        var rows = buffer[..Group];
        var lanes = new TrialLanes(buffer[Group..]);
        Span<ushort> bits = stackalloc ushort[2 * Lanes];
        Span<ushort> scaleBits = bits[..Lanes], offsetBits = bits[Lanes..];
        for (var first = 0; first < blocks.Length; first += Lanes)
        {
            var count = Math.Min(Lanes, blocks.Length - first);
            var n = count * Weights;
            TransposeIn(source.Slice(first * Weights, n), rows, lanes.X);
            var reproduced = importance.IsEmpty
                ? TSearch.Search<Unweighted>(lanes, scaleBits, offsetBits)
                : TSearch.Search<Weighted>(lanes.WithImportance(importance.Slice(first * Weights, n), rows), scaleBits, offsetBits);
            Transpose(lanes.Levels, rows, Weights, Lanes);
            for (var b = 0; b < count; b++)
            {
                if ((reproduced & (1 << b)) != 0) write(ref blocks[first + b], rows.Slice(b * Weights, Weights), scaleBits[b], offsetBits[b]);
                else
                {
                    var at = (first + b) * Weights;
                    codec.Quantize(source.Slice(at, Weights), destination.Slice((first + b) * blockBytes, blockBytes),
                        importance.IsEmpty ? default : importance.Slice(at, Weights));
                }
            }
        }
    }

    /// <summary>One of the two searches: fills <see cref="TrialLanes.Levels"/> and the fp16 bits of each lane's scale
    /// and offset, and returns the lanes it reproduced the reference of (bit b).</summary>
    private interface ILaneSearch
    {
        static abstract int Search<TWeights>(in TrialLanes lanes, Span<ushort> scaleBits, Span<ushort> offsetBits)
            where TWeights : struct, IWeights;
    }

    private readonly struct ScaleSearch<TFormat> : ILaneSearch where TFormat : struct, IScaleTrialFormat
    {
        public static int Search<TWeights>(in TrialLanes lanes, Span<ushort> scaleBits, Span<ushort> offsetBits)
            where TWeights : struct, IWeights
        {
            offsetBits.Clear();
            return SearchScale<TFormat, TWeights>(lanes, scaleBits);
        }
    }

    private readonly struct AffineSearch<TFormat> : ILaneSearch where TFormat : struct, IAffineTrialFormat
    {
        public static int Search<TWeights>(in TrialLanes lanes, Span<ushort> scaleBits, Span<ushort> offsetBits)
            where TWeights : struct, IWeights =>
            TWeights.Present ? throw new NotSupportedException("the type-1 trial search runs without importance")
                : SearchAffine<TFormat>(lanes, scaleBits, offsetBits);
    }

    /// <summary>Up to eight blocks transposed into lanes (weight j of block b at j·8 + b); missing blocks are zero.</summary>
    private static void TransposeIn(ReadOnlySpan<float> values, Span<float> rows, Span<float> lanes)
    {
        if (values.Length == Group)
        {
            Transpose(values, lanes, Lanes, Weights);
            return;
        }
        values.CopyTo(rows);
        rows[values.Length..].Clear();
        Transpose(rows, lanes, Lanes, Weights);
    }

    /// <summary>Transposed values (X), importance (C, with an imatrix), the reference's levels (Reference) and the levels to
    /// write (Levels).</summary>
    private readonly ref struct TrialLanes(Span<float> buffer)
    {
        public readonly Span<float> X = buffer[..Group];
        public readonly Span<float> C = buffer.Slice(Group, Group);
        public readonly Span<float> Reference = buffer.Slice(2 * Group, Group);
        public readonly Span<float> Levels = buffer.Slice(3 * Group, Group);

        public TrialLanes WithImportance(ReadOnlySpan<float> importance, Span<float> rows)
        {
            TransposeIn(importance, rows, C);
            return this;
        }
    }

    private interface IWeights
    {
        static abstract bool Present { get; }
    }

    private readonly struct Unweighted : IWeights
    {
        public static bool Present => false;
    }

    private readonly struct Weighted : IWeights
    {
        public static bool Present => true;
    }

    /// <summary>Searches the eight lanes; leaves the levels to write in <see cref="TrialLanes.Levels"/> and their fp16
    /// scales in <paramref name="bits"/>. Returns the lanes whose reference the lanes reproduce (bit b; the others are
    /// written by the codec).</summary>
    private static int SearchScale<TFormat, TWeights>(in TrialLanes lanes, Span<ushort> bits)
        where TFormat : struct, IScaleTrialFormat where TWeights : struct, IWeights
    {
        // The spans as locals: read through `lanes` the JIT reloads them on every store.
        Span<float> xs = lanes.X, cs = lanes.C, referenceLevels = lanes.Reference, levels = lanes.Levels;
        var zero = Vector256<float>.Zero;
        var signedMax = LargestValues(xs, out var absMax); // the first on ties, as the reference finds it
        var referenceD = TFormat.ReferenceScale(signedMax, absMax);
        var inverse = Vector256<float>.One / referenceD;
        var referenceBits = Fp16.FromFloat(referenceD);
        var stored = Fp16.ToFloat(referenceBits);
        var infinity = Vector256.Create(float.PositiveInfinity);
        var reproduced = ~Vector256.Equals(referenceD, zero) & Vector256.LessThan(Vector256.Abs(inverse), infinity)
            & Vector256.LessThan(Vector256.Abs(stored), infinity);
        inverse &= reproduced;

        // The reference: its levels, error, and sums (the trial at 0).
        Vector256<float> referenceError = zero, bestXq = zero, bestQq = zero;
        for (var at = 0; at < Group; at += Lanes)
        {
            var x = Load(xs, at);
            var q = TFormat.ReferenceLevel(x, inverse);
            Store(referenceLevels, at, q);
            var e = q * stored - x; // the product is exact (an fp16 times a small integer): y − x as the reader sees it
            var c = TWeights.Present ? Load(cs, at) : default;
            var cq = TWeights.Present ? c * q : q;
            referenceError = Vector256.FusedMultiplyAdd(TWeights.Present ? c * e : e, e, referenceError);
            bestXq = Vector256.FusedMultiplyAdd(cq, x, bestXq);
            bestQq = Vector256.FusedMultiplyAdd(cq, q, bestQq);
        }
        // Non-finite input (NaN, or squares beyond float) is left to the codec.
        reproduced &= Vector256.LessThan(referenceError, infinity);

        var span = 1f / TFormat.ReferenceSpan;
        var offsets = TrialOffsets;
        var (low, high) = (Vector256.Create((float)TFormat.Lowest), Vector256.Create((float)TFormat.Highest));
        for (var k = 0; k < offsets.Length; k += 2)
        {
            var (inverseA, inverseB) = (inverse * Vector256.Create(1 + offsets[k] * span), inverse * Vector256.Create(1 + offsets[k + 1] * span));
            Vector256<float> xqA = zero, qqA = zero, xqB = zero, qqB = zero;
            for (var at = 0; at < Group; at += Lanes)
            {
                var x = Load(xs, at);
                var qA = Vector256.MinNative(Vector256.MaxNative(Vector256.Round(x * inverseA), low), high);
                var qB = Vector256.MinNative(Vector256.MaxNative(Vector256.Round(x * inverseB), low), high);
                var c = TWeights.Present ? Load(cs, at) : default;
                var (cqA, cqB) = TWeights.Present ? (c * qA, c * qB) : (qA, qB);
                xqA = Vector256.FusedMultiplyAdd(cqA, x, xqA);
                qqA = Vector256.FusedMultiplyAdd(cqA, qA, qqA);
                xqB = Vector256.FusedMultiplyAdd(cqB, x, xqB);
                qqB = Vector256.FusedMultiplyAdd(cqB, qB, qqB);
            }
            Keep(xqA, qqA, ref bestXq, ref bestQq);
            Keep(xqB, qqB, ref bestXq, ref bestQq);
        }

        // The best trial's least-squares scale, to fp16, every weight rounded again against it.
        var fitted = Vector256.GreaterThan(bestQq, zero);
        var candidateBits = Fp16.FromFloat(Vector256.ConditionalSelect(fitted, bestXq / bestQq, zero));
        var candidateD = Fp16.ToFloat(candidateBits);
        var usable = reproduced & ~Vector256.Equals(candidateD, zero) & Vector256.LessThan(Vector256.Abs(candidateD), infinity);
        var candidateInverse = Vector256.ConditionalSelect(usable, Vector256<float>.One / candidateD, zero);
        var candidateError = zero;
        for (var at = 0; at < Group; at += Lanes)
        {
            var x = Load(xs, at);
            var q = Vector256.MinNative(Vector256.MaxNative(Vector256.Round(x * candidateInverse), low), high);
            Store(levels, at, q);
            var e = q * candidateD - x;
            candidateError = Vector256.FusedMultiplyAdd(TWeights.Present ? Load(cs, at) * e : e, e, candidateError);
        }
        var chosen = usable & Vector256.LessThan(candidateError, referenceError * Vector256.Create(1 - ErrorMargin));
        BlendReference(chosen, levels, referenceLevels);
        var written = Vector256.ConditionalSelect(chosen.AsUInt32(), candidateBits, referenceBits);
        for (var b = 0; b < Lanes; b++) bits[b] = (ushort)written[b];
        return (int)reproduced.ExtractMostSignificantBits();
    }

    /// <summary>Type-1: the reference (m = min, d = (max − min)/Highest, computed as the reference computes it), and trial
    /// ranges [min + a·d, max − b·d] for the pairs (a, b) of <see cref="AffineTrialEnds"/>, every weight rounded to the
    /// nearest level of each. The trial with the largest G = (Σc·t)²/det (c = x − mean, det = 32·Σt² − (Σt)²: the error its
    /// least-squares scale and offset remove) is refitted once more (every weight rounded against its fit, then fitted
    /// again), both go to fp16 and every weight is rounded again against them. Sums run on the values centred per block,
    /// which keeps a block far from zero from cancelling them. <see cref="TrialLanes.C"/> holds the centred values (there
    /// is no importance here).</summary>
    private static int SearchAffine<TFormat>(in TrialLanes lanes, Span<ushort> scaleBits, Span<ushort> offsetBits)
        where TFormat : struct, IAffineTrialFormat
    {
        Span<float> xs = lanes.X, centred = lanes.C, referenceLevels = lanes.Reference, levels = lanes.Levels;
        var (zero, one) = (Vector256<float>.Zero, Vector256<float>.One);
        var highest = Vector256.Create((float)TFormat.Highest);
        var (min, max, sum) = (Load(xs, 0), Load(xs, 0), zero);
        for (var at = 0; at < Group; at += Lanes)
        {
            var x = Load(xs, at);
            (min, max, sum) = (Vector256.MinNative(min, x), Vector256.MaxNative(max, x), sum + x);
        }
        var mean = sum * Vector256.Create(1f / Weights);
        var referenceD = (max - min) / highest;
        var inverse = one / referenceD;
        var (referenceDBits, referenceMBits) = (Fp16.FromFloat(referenceD), Fp16.FromFloat(min));
        var (storedD, storedM) = (Fp16.ToFloat(referenceDBits), Fp16.ToFloat(referenceMBits));
        var infinity = Vector256.Create(float.PositiveInfinity);
        var reproduced = ~Vector256.Equals(referenceD, zero) & ~Vector256.Equals(min, zero) & ~Vector256.Equals(max, zero)
            & Vector256.LessThan(Vector256.Abs(inverse), infinity) & Vector256.LessThan(Vector256.Abs(storedD), infinity)
            & Vector256.LessThan(Vector256.Abs(storedM), infinity);
        inverse &= reproduced;

        // The reference: its levels and error, the values centred, and its fit sums (the trial at (0, 0)).
        Vector256<float> referenceError = zero, bestT = zero, bestTt = zero, bestCt = zero;
        var half = Vector256.Create(0.5f);
        for (var at = 0; at < Group; at += Lanes)
        {
            var x = Load(xs, at);
            var t = Vector256.MinNative(Vector256.Floor((x - min) * inverse + half), highest);
            Store(referenceLevels, at, t);
            var e = (t * storedD + storedM) - x; // as the dequantizer decodes it: the product is exact, the sum rounds
            referenceError = Vector256.FusedMultiplyAdd(e, e, referenceError);
            var c = x - mean;
            Store(centred, at, c);
            bestT += t;
            bestTt = Vector256.FusedMultiplyAdd(t, t, bestTt);
            bestCt = Vector256.FusedMultiplyAdd(c, t, bestCt);
        }
        reproduced &= Vector256.LessThan(referenceError, infinity);

        var ends = AffineTrialEnds;
        for (var k = 0; k < ends.Length; k += 2)
        {
            // Range [low, top] in centred terms: level t sits at low + t·(top − low)/Highest.
            var low = min - mean + Vector256.Create(ends[k]) * referenceD;
            var top = max - mean - Vector256.Create(ends[k + 1]) * referenceD;
            var (sumT, sumTt, sumCt) = AffineSums(centred, low, highest / (top - low) & reproduced, highest);
            KeepFit(sumT, sumTt, sumCt, ref bestT, ref bestTt, ref bestCt);
        }
        // One more round: every weight against the best fit, and the fit again.
        var (d, offset) = AffineFit(bestT, bestTt, bestCt);
        var fitted = reproduced & ~Vector256.Equals(d, zero);
        var (refitT, refitTt, refitCt) = AffineSums(centred, offset, Vector256.ConditionalSelect(fitted, one / d, zero), highest);
        KeepNonDegenerate(refitT, refitTt, refitCt, ref bestT, ref bestTt, ref bestCt);
        (d, offset) = AffineFit(bestT, bestTt, bestCt);

        var (candidateDBits, candidateMBits) = (Fp16.FromFloat(d), Fp16.FromFloat(offset + mean));
        var (candidateD, candidateM) = (Fp16.ToFloat(candidateDBits), Fp16.ToFloat(candidateMBits));
        var usable = reproduced & ~Vector256.Equals(candidateD, zero) & Vector256.LessThan(Vector256.Abs(candidateD), infinity)
            & Vector256.LessThan(Vector256.Abs(candidateM), infinity);
        var candidateInverse = Vector256.ConditionalSelect(usable, one / candidateD, zero);
        var candidateError = zero;
        for (var at = 0; at < Group; at += Lanes)
        {
            var x = Load(xs, at);
            var t = Vector256.MinNative(Vector256.MaxNative(Vector256.Round((x - candidateM) * candidateInverse), zero), highest);
            Store(levels, at, t);
            var e = (t * candidateD + candidateM) - x;
            candidateError = Vector256.FusedMultiplyAdd(e, e, candidateError);
        }
        var chosen = usable & Vector256.LessThan(candidateError, referenceError * Vector256.Create(1 - ErrorMargin));
        BlendReference(chosen, levels, referenceLevels);
        var (writtenD, writtenM) = (Vector256.ConditionalSelect(chosen.AsUInt32(), candidateDBits, referenceDBits),
            Vector256.ConditionalSelect(chosen.AsUInt32(), candidateMBits, referenceMBits));
        for (var b = 0; b < Lanes; b++) (scaleBits[b], offsetBits[b]) = ((ushort)writtenD[b], (ushort)writtenM[b]);
        return (int)reproduced.ExtractMostSignificantBits();
    }

    /// <summary>The type-1 trials, as pairs (a, b): the range moved a levels up from the minimum and b levels down from
    /// the maximum (the reference's own, (0, 0), comes free). Measured on debdocs-llama-10m with one more round after,
    /// MSE against the reference's: Q4_1 0.802, Q5_1 0.819 with these two; adding (½, ½) 0.798 / 0.816 for 12% more
    /// search time; adding (1, 0), (0, 1), (1, 1) as well 0.794 / 0.811. The greedy step search gave 0.817 / 0.827.</summary>
    private static ReadOnlySpan<float> AffineTrialEnds => [0.5f, 0f, 0f, 0.5f];

    /// <summary>Σt, Σt², Σc·t with t = clamp(round((c − low)·inverse), 0, highest) over the centred values c.</summary>
    private static (Vector256<float> T, Vector256<float> Tt, Vector256<float> Ct) AffineSums(ReadOnlySpan<float> centred,
        Vector256<float> low, Vector256<float> inverse, Vector256<float> highest)
    {
        Vector256<float> sumT = default, sumTt = default, sumCt = default;
        for (var at = 0; at < Group; at += Lanes)
        {
            var c = Load(centred, at);
            var t = Vector256.MinNative(Vector256.MaxNative(Vector256.Round((c - low) * inverse), Vector256<float>.Zero), highest);
            sumT += t;
            sumTt = Vector256.FusedMultiplyAdd(t, t, sumTt);
            sumCt = Vector256.FusedMultiplyAdd(c, t, sumCt);
        }
        return (sumT, sumTt, sumCt);
    }

    /// <summary>det = 32·Σt² − (Σt)² of a fit's normal equations (Σ1 = 32 without importance).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Determinant(Vector256<float> sumT, Vector256<float> sumTt) =>
        Vector256.Create((float)Weights) * sumTt - sumT * sumT;

    /// <summary>Keeps the fit with the larger G = (Σc·t)²/det (cross-multiplied; a fit with every level equal has none).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void KeepFit(Vector256<float> sumT, Vector256<float> sumTt, Vector256<float> sumCt,
        ref Vector256<float> bestT, ref Vector256<float> bestTt, ref Vector256<float> bestCt)
    {
        var det = Determinant(sumT, sumTt);
        var better = Vector256.GreaterThan(sumCt * sumCt * Determinant(bestT, bestTt), bestCt * bestCt * det)
            & Vector256.GreaterThan(det, Vector256<float>.Zero);
        KeepWhere(better, sumT, sumTt, sumCt, ref bestT, ref bestTt, ref bestCt);
    }

    /// <summary>Takes the refitted sums wherever they can be solved (a refit never raises the least-squares error).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void KeepNonDegenerate(Vector256<float> sumT, Vector256<float> sumTt, Vector256<float> sumCt,
        ref Vector256<float> bestT, ref Vector256<float> bestTt, ref Vector256<float> bestCt) =>
        KeepWhere(Vector256.GreaterThan(Determinant(sumT, sumTt), Vector256<float>.Zero), sumT, sumTt, sumCt, ref bestT, ref bestTt, ref bestCt);

    /// <summary>The fit sums (Σt, Σt², Σc·t) replace the best ones in the lanes of <paramref name="mask"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void KeepWhere(Vector256<float> mask, Vector256<float> sumT, Vector256<float> sumTt, Vector256<float> sumCt,
        ref Vector256<float> bestT, ref Vector256<float> bestTt, ref Vector256<float> bestCt) =>
        (bestT, bestTt, bestCt) = (Vector256.ConditionalSelect(mask, sumT, bestT), Vector256.ConditionalSelect(mask, sumTt, bestTt),
            Vector256.ConditionalSelect(mask, sumCt, bestCt));

    /// <summary>The least-squares scale and (centred) offset of c ≈ d·t + m from the sums; zero where det ≤ 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float> D, Vector256<float> Offset) AffineFit(Vector256<float> sumT, Vector256<float> sumTt, Vector256<float> sumCt)
    {
        var det = Determinant(sumT, sumTt);
        var solvable = Vector256.GreaterThan(det, Vector256<float>.Zero);
        var ratio = Vector256.ConditionalSelect(solvable, sumCt / det, Vector256<float>.Zero);
        return (Vector256.Create((float)Weights) * ratio, -sumT * ratio);
    }

    /// <summary>Puts the reference's levels back in the lanes that keep the reference.</summary>
    private static void BlendReference(Vector256<float> chosen, Span<float> levels, ReadOnlySpan<float> referenceLevels)
    {
        if (chosen.ExtractMostSignificantBits() == 0xFF) return;
        for (var at = 0; at < Group; at += Lanes)
        {
            Store(levels, at, Vector256.ConditionalSelect(chosen, Load(levels, at), Load(referenceLevels, at)));
        }
    }

    /// <summary>Keeps the trial with the larger F = xq²/qq (compared by cross-multiplying; a trial with qq = 0 has nothing).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Keep(Vector256<float> xq, Vector256<float> qq, ref Vector256<float> bestXq, ref Vector256<float> bestQq)
    {
        var better = Vector256.GreaterThan(xq * xq * bestQq, bestXq * bestXq * qq) & Vector256.GreaterThan(qq, Vector256<float>.Zero);
        bestXq = Vector256.ConditionalSelect(better, xq, bestXq);
        bestQq = Vector256.ConditionalSelect(better, qq, bestQq);
    }
}
