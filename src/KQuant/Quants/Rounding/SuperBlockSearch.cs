using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static KQuant.Quants.LaneLayout;

namespace KQuant.Quants;

/// <summary>What the optimal path needs to know of a K-quant style super-block: sub-blocks of <see cref="SubBlock"/> weights,
/// each x ≈ (D·sc)·Levels[q] (− Dmin·m when <see cref="Affine"/>), with integer sub-block scales sc in
/// [<see cref="ScaleLow"/>, <see cref="ScaleHigh"/>] and mins m in [0, <see cref="MinHigh"/>] under fp16 D and Dmin.</summary>
internal sealed record SuperBlockSpec(int SubBlock, float[] Levels, bool Affine, int ScaleLow, int ScaleHigh, int MinHigh = 0)
{
    /// <summary>Lloyd rounds with free sub-block scales, per start. On debdocs-llama-10m four (and eight stored rounds)
    /// did nothing for Q4_K_M's KLD (×0.979 of the reference's, ×0.978 with two); IQ4_XS sets four, which took it from
    /// ×0.966 to ×0.949 without an imatrix and from ×0.944 to ×0.933 with one.</summary>
    public int FreeRounds { get; init; } = 2;

    /// <summary>Whether <see cref="SuperBlockSearch.Encode"/> chooses each sub-block's stored integers among the neighbours
    /// of its free fit for every super-scale candidate, each scored after the sub-block is rounded at it, instead of
    /// rounding them from the free fit: a scale step moves many weights across a rounding boundary. Costs three to four
    /// rounding passes per candidate instead of one (the largest-value candidate always rounds). Set for Q2_K, Q4_K, Q5_K
    /// and IQ4_XS, which encode without an imatrix from their own start (IQ4_XS with one too, but with it unset; not for
    /// Q3_K, which encodes from its own start as well: on debdocs-tiny
    /// they raised its KLD, ×0.961 → ×0.991): from the reference start it took the KLD of Q4_K_M on debdocs-llama-10m
    /// from ×0.980 of the reference's to ×0.953, Q5_K_M ×0.974 → ×0.957, IQ4_XS ×0.948 → ×0.941, Q2_K ×0.911 → ×0.900.
    /// With an imatrix (the path from the reference start, <see cref="SuperBlockSearch.Improve"/>) it raised the KLD of
    /// Q4_K_M (×0.929 → ×0.942), Q4_K_S and IQ4_XS, so that path rounds them. Refining them so in the stored rounds as
    /// well changed the weighted error by under 0.1%, so those keep the fixed-level choice.</summary>
    public bool NeighbourIntegers { get; init; }

    /// <summary>The trial scales that start <see cref="SuperBlockSearch.Encode"/>, as factors of the sub-block's scale
    /// that puts its range on the levels' span (affine), or its value of largest magnitude on an end level (type-0).
    /// The grid's fineness matters more than its width: on debdocs-tiny Q4_K_M's KLD was ×1.083 of the reference's with
    /// 9 trials from 0.93 to 1.07 and ×1.044 with 21 (both with sqrt(σ² + x²) weights).</summary>
    public float[] StartScales { get; init; } = [1f];

    /// <summary>Trial factors (span + first + 0.1·i)/span, i = 0 … count − 1: the scale range/(span + δ) for δ from
    /// <paramref name="first"/> in steps of 0.1, as ggml's make_qkx2_quants tries them for the reference encoding.</summary>
    public static float[] SpanSteps(int span, float first, int count) =>
        Enumerable.Range(0, count).Select(i => (span + first + 0.1f * i) / span).ToArray();

    /// <summary>The levels lowest, lowest + 1, …, highest as a table.</summary>
    public static float[] IntegerLevels(int lowest, int highest) =>
        Enumerable.Range(lowest, highest - lowest + 1).Select(v => (float)v).ToArray();

    /// <summary>The lowest level when the levels are the consecutive integers lowest, lowest + 1, … (every K-quant; not
    /// IQ4's grid): nearest levels are then computed by rounding, not by comparisons with the midpoints.</summary>
    public int? LinearLowest { get; } = IsLinear(Levels) ? (int)Levels[0] : null;

    /// <summary>Whether 0 is one of the levels (Q3_K's −4..3, not IQ4's grid): a type-0 sub-block scale of ±1 is then never
    /// worse than 0, as every weight may still round to level 0.</summary>
    public bool ZeroIsALevel { get; } = Levels.Contains(0f);

    /// <summary>Midpoints between consecutive levels: a value above Midpoints[k] is nearer to level k + 1 than to level k.</summary>
    public float[] Midpoints { get; } = MidpointsOf(Levels);

    /// <summary>Steps between consecutive levels: Levels[k + 1] − Levels[k].</summary>
    public float[] Steps { get; } = Levels.Zip(Levels.Skip(1), (a, b) => b - a).ToArray();

    /// <summary>A grid of 16 levels (IQ4's) as two 8-lane tables each of levels and midpoints, for a binary search by permutes.</summary>
    public (Vector256<float> Low, Vector256<float> High)? GridLevels { get; } = Levels.Length == 16 ? Table16(Levels) : null;

    public (Vector256<float> Low, Vector256<float> High)? GridMidpoints { get; } =
        Levels.Length == 16 ? Table16([.. MidpointsOf(Levels), float.PositiveInfinity]) : null;

    private static float[] MidpointsOf(float[] levels) => levels.Zip(levels.Skip(1), (a, b) => (a + b) / 2).ToArray();

    private static (Vector256<float> Low, Vector256<float> High) Table16(float[] values) =>
        (Vector256.Create(values.AsSpan(0, 8)), Vector256.Create(values.AsSpan(8, 8)));

    private static bool IsLinear(float[] levels)
    {
        for (var i = 0; i < levels.Length; i++)
        {
            if (levels[i] != levels[0] + i || levels[i] != MathF.Round(levels[i])) return false;
        }
        return true;
    }
}

/// <summary>
/// The optimal path of the super-block formats (Q2_K–Q5_K, IQ4_XS): alternating minimisation of the weighted error
/// Σ w·(y − x)², each step exact for the variables it changes, so the error never grows:
/// <list type="number">
/// <item>free sub-block scales (and offsets): least-squares scale (and offset) for the levels, then the nearest levels for
/// that scale, a few times (Lloyd iterations), from the reference encoding (<see cref="Improve"/>) or from the best of a
/// grid of trial scales (<see cref="Encode"/>);</item>
/// <item>the sub-block scales quantized to their integers under a few fp16 super-scales (the reference one, max/high and,
/// for signed scales, max/low), each scored after one rounding; in <see cref="Encode"/> with
/// <see cref="SuperBlockSpec.NeighbourIntegers"/>, each sub-block's integers are the best of the neighbours of its free
/// fit, each scored after its own rounding;</item>
/// <item>from the best of those: the least-squares super-scales (D, Dmin) for the fixed integers, the best integer scale
/// (and min) of each sub-block among the neighbours of its least-squares value on fixed levels, and the nearest levels
/// for the stored scales, repeated, keeping the lowest-error encoding seen (the reference's included, where there is
/// one).</item>
/// </list>
/// Every step works on all sub-blocks at once, one sub-block per SIMD lane: the block is transposed once (weight i of
/// sub-block j at i·S + j), so a rounding pass is 256/8 vector steps that leave each lane's sums (Σw·t, Σw·t², Σw·x·t)
/// in place, with no horizontal sums, and the fits and errors of steps 1–3 are lane arithmetic on those sums. The previous
/// version, one sub-block at a time with the sums in double, found the same weighted errors (to 4 digits on
/// debdocs-llama-10m) at about 1.5× this one's time (Q4_K), 2× (Q3_K). The one before that, a quant-step search per
/// sub-block (ik_llama.cpp PR 295), reached a similar weighted error at 3–5× that cost, and a higher KLD on most recipes
/// (src/KQuant/Quants/README.md).
/// </summary>
[SkipLocalsInit]
internal static class SuperBlockSearch
{
    /// <summary>Rounds at the stored scales: the candidates' first, then refinements (super-scales, integer scales, levels) of the best.</summary>
    private const int StoredRounds = 3;


    /// <summary>Improves one super-block in place: level indices, integer scales and mins (empty for type-0 formats) and
    /// fp16 super-scales arrive as the reference encoding and leave as the lowest-error encoding found (unchanged when
    /// the reference's is lowest). The integers of each candidate are rounded from the free fits (not
    /// <see cref="SuperBlockSpec.NeighbourIntegers"/>, which raised the KLD with an imatrix).</summary>
    public static void Improve(SuperBlockSpec spec, ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<byte> levels, Span<int> scales,
        Span<int> mins, ref Half d, ref Half dmin) =>
        Search(spec, x, w, fromReference: true, levels, scales, mins, ref d, ref dmin);

    /// <summary>Encodes one super-block from the search's own start, with no reference encoding: the free fits begin from
    /// <see cref="SuperBlockSpec.StartScales"/> trial scales over each sub-block's range (then one Lloyd round), the
    /// super-scale candidates are those of the free fits (and, for signed scales on asymmetric levels, the finest that
    /// reaches the block's largest value), and each candidate's integers are chosen as
    /// <see cref="SuperBlockSpec.NeighbourIntegers"/> says. The optimal path without an imatrix (Q2_K, Q3_K, Q4_K, Q5_K,
    /// IQ4_XS) and for IQ4_XS with one (its <c>ImportanceSpec</c> rounds the integers): the reference encoding it replaces cost as much as the search, and the search from
    /// it reached the same error (src/KQuant/Quants/README.md). False when no candidate had a finite error (an all-zero block, fp16 overflow); the
    /// outputs then hold nothing usable.</summary>
    public static bool Encode(SuperBlockSpec spec, ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<byte> levels, Span<int> scales,
        Span<int> mins, out Half d, out Half dmin)
    {
        levels.Clear();
        scales.Clear();
        mins.Clear();
        (d, dmin) = (Half.Zero, Half.Zero);
        return Search(spec, x, w, fromReference: false, levels, scales, mins, ref d, ref dmin);
    }

    /// <summary><see cref="Improve"/> (<paramref name="fromReference"/>: the outputs arrive as the reference encoding, which
    /// is the first candidate) or <see cref="Encode"/>. True when the outputs were rewritten.</summary>
    private static bool Search(SuperBlockSpec spec, ReadOnlySpan<float> x, ReadOnlySpan<float> w, bool fromReference, Span<byte> levels,
        Span<int> scales, Span<int> mins, ref Half d, ref Half dmin)
    {
        var neighbourIntegers = spec.NeighbourIntegers && !fromReference;
        var length = spec.SubBlock;
        var subBlocks = x.Length / length;
        if (subBlocks % Lanes != 0 || subBlocks * length != x.Length)
        {
            throw new ArgumentException($"a super-block of {x.Length} weights in sub-blocks of {length} does not fill {Lanes}-lane vectors", nameof(x));
        }
        Span<float> blockData = stackalloc float[3 * x.Length];
        var block = new LaneBlock(blockData, subBlocks, length);
        if (fromReference)
        {
            LevelValues(spec, levels, block.X); // the reference's level values, untransposed, in the space x takes next
            Transpose(block.X, block.T, subBlocks, length);
        }
        else block.T.Clear(); // a lane with a zero scale keeps its levels: level 0
        Transpose(x, block.X, subBlocks, length);
        Transpose(w, block.W, subBlocks, length);
        Span<float> laneData = stackalloc float[LaneSums.Count * subBlocks];
        var sums = new LaneSums(laneData, subBlocks);
        SumData(block, sums);
        SumLevels(block, sums);

        // The stored encoding being scored (integer scales and mins as floats) and the best one seen.
        Span<float> encodings = stackalloc float[6 * subBlocks];
        var storedScales = encodings[..subBlocks];
        var storedMins = encodings.Slice(subBlocks, subBlocks);
        var bestScales = encodings.Slice(2 * subBlocks, subBlocks);
        var bestMins = encodings.Slice(3 * subBlocks, subBlocks);
        var laneScales = encodings.Slice(4 * subBlocks, subBlocks); // per-lane scale and offset of a rounding pass
        var laneOffsets = encodings.Slice(5 * subBlocks, subBlocks);
        for (var j = 0; j < subBlocks; j++) (storedScales[j], storedMins[j]) = (scales[j], mins.IsEmpty ? 0 : mins[j]);
        var (referenceD, referenceDMin) = ((float)d, spec.Affine ? (float)dmin : 0f);
        var best = new Best(fromReference ? StoredError(spec, sums, storedScales, storedMins, referenceD, referenceDMin) : double.PositiveInfinity,
            referenceD, referenceDMin);
        storedScales.CopyTo(bestScales);
        storedMins.CopyTo(bestMins);

        // 1. Free scales (s) and offsets (o, x ≈ s·T + o), by Lloyd iterations from the reference levels.
        Span<float> free = stackalloc float[3 * subBlocks];
        var freeScales = free[..subBlocks];
        var freeOffsets = free.Slice(subBlocks, subBlocks);
        var freeErrors = free.Slice(2 * subBlocks, subBlocks);
        freeErrors.Fill(float.PositiveInfinity);
        // From the reference, the affine formats (its only users: Q2_K and Q4_K with an imatrix) run a second chain, from
        // the sub-block's range [min(x, 0), max(x)] spread over the levels.
        var signed = spec.ScaleLow < 0;
        var signedAsymmetric = signed && spec.Levels[0] != -spec.Levels[^1]; // Q3_K's −4..3, IQ4's grid (no affine spec is signed)
        var starts = fromReference && spec.Affine ? 2 : 1;
        for (var start = 0; start < starts; start++)
        {
            if (!fromReference)
            {
                TrialStarts(spec, block, sums, freeScales, freeOffsets, freeErrors, laneScales, laneOffsets);
                RoundAndSum(spec, block, laneScales, laneOffsets, sums);
            }
            else for (var g = 0; g < subBlocks; g += Lanes)
            {
                var s = Vector256.Create(referenceD) * Load(storedScales, g);
                var o = Vector256.Create(-referenceDMin) * Load(storedMins, g);
                if (start > 0)
                {
                    var low = Vector256.Min(Load(sums.Min, g), Vector256<float>.Zero);
                    (s, o) = ((Load(sums.Max, g) - low) / Vector256.Create((float)(spec.Levels.Length - 1)), low);
                }
                Store(laneScales, g, s);
                Store(laneOffsets, g, o);
            }
            if (start > 0) RoundAndSum(spec, block, laneScales, laneOffsets, sums);
            // From the trial starts, one Lloyd round: more changed the weighted error by under 0.1% (Q4_K, IQ4_XS).
            var freeRounds = fromReference ? spec.FreeRounds : 1;
            for (var round = 0; round < freeRounds; round++)
            {
                for (var g = 0; g < subBlocks; g += Lanes)
                {
                    var fit = new LaneFit(spec, sums, g, Load(freeScales, g), Load(freeOffsets, g), Load(freeErrors, g));
                    var (s, o, valid) = fit.Keep((Load(sums.T, g), Load(sums.TT, g), Load(sums.XT, g)));
                    Store(freeErrors, g, fit.Error);
                    Store(freeScales, g, fit.Scale);
                    Store(freeOffsets, g, fit.Offset);
                    Store(laneScales, g, Vector256.ConditionalSelect(valid, s, Load(laneScales, g)));
                    Store(laneOffsets, g, Vector256.ConditionalSelect(valid, o, Load(laneOffsets, g)));
                }
                if (round + 1 == freeRounds) break;
                RoundAndSum(spec, block, laneScales, laneOffsets, sums);
            }
        }
        // Sub-blocks no fit improved keep the reference scale (without a reference, the trial start's).
        for (var g = 0; g < subBlocks && fromReference; g += Lanes)
        {
            var found = Vector256.LessThan(Load(freeErrors, g), Vector256.Create(float.PositiveInfinity));
            Store(freeScales, g, Vector256.ConditionalSelect(found, Load(freeScales, g), Vector256.Create(referenceD) * Load(storedScales, g)));
            Store(freeOffsets, g, Vector256.ConditionalSelect(found, Load(freeOffsets, g), Vector256.Create(-referenceDMin) * Load(storedMins, g)));
        }

        // 2. Super-scale candidates for the integer scales; the best one's levels and sums are kept for step 3.
        float maxAbs = 0, signedMax = 0, maxMin = 0;
        for (var j = 0; j < subBlocks; j++)
        {
            if (MathF.Abs(freeScales[j]) > maxAbs) (maxAbs, signedMax) = (MathF.Abs(freeScales[j]), freeScales[j]);
            maxMin = Math.Max(maxMin, -freeOffsets[j]);
        }
        var minScale = spec.Affine && maxMin > 0 ? maxMin / spec.MinHigh : referenceDMin;
        // Without a reference, signed scales on asymmetric levels (Q3_K's −4..3, IQ4's grid) take as first candidate the
        // finest super-scale that still reaches the block's value of largest magnitude: that value on the lowest level at
        // the lowest integer scale (Q3_K: −4·−32), the reference's choice. The free fits' candidates miss it when the
        // largest value's sub-block fits it on the other end level (equally well, the rest of it rounding to 0): then
        // every other sub-block's step is 4/3 too coarse (Q3_K), and an outlier test row had 2.9× the reference's error.
        // On IQ4_XS it left debdocs-llama-10m's KLD at ×0.940 of the reference's (×0.944 without it).
        var first = fromReference ? referenceD
            : signedAsymmetric ? LargestValue(sums) / (spec.Levels[0] * spec.ScaleLow) : 0;
        Span<float> superScales = [first, signed ? signedMax / spec.ScaleHigh : maxAbs / spec.ScaleHigh, signed ? signedMax / spec.ScaleLow : 0];
        var dminValue = spec.Affine ? Fp16Value(minScale) : 0;
        Span<float> saved = stackalloc float[x.Length + (2 + LaneSums.LevelCount) * subBlocks];
        var savedD = float.NaN;
        var bestCandidateError = double.PositiveInfinity;
        for (var candidate = 0; candidate < superScales.Length; candidate++)
        {
            var dValue = Fp16Value(superScales[candidate]);
            if (dValue == 0 || !float.IsFinite(dValue)) continue;
            // The largest-value candidate rounds its integers: scoring neighbours costs three to four passes, and with them
            // on IQ4_XS it added 12% to the recipe's time.
            if (neighbourIntegers && candidate > 0) ChooseNeighbourIntegers(spec, block, sums, freeScales, freeOffsets, dValue, dminValue, storedScales, storedMins);
            else QuantizeScales(spec, freeScales, freeOffsets, dValue, dminValue, storedScales, storedMins);
            var error = RoundAtStoredScales(spec, block, sums, storedScales, storedMins, dValue, dminValue, laneScales, laneOffsets);
            best.Keep(error, storedScales, storedMins, dValue, dminValue, bestScales, bestMins);
            if (!(error < bestCandidateError)) continue;
            bestCandidateError = error;
            savedD = dValue;
            SaveOrRestore(block.T, sums, storedScales, storedMins, saved, save: true);
        }

        // 3. Alternate at the stored scales, from the best candidate.
        if (!float.IsNaN(savedD))
        {
            SaveOrRestore(block.T, sums, storedScales, storedMins, saved, save: false);
            var (storedD, storedDMin) = (savedD, dminValue);
            for (var round = 1; round < StoredRounds; round++)
            {
                if (!RefitSuperScales(spec, sums, storedScales, storedMins, ref storedD, ref storedDMin)) break;
                ChooseIntegerScales(spec, sums, storedScales, storedMins, storedD, storedDMin);
                var error = RoundAtStoredScales(spec, block, sums, storedScales, storedMins, storedD, storedDMin, laneScales, laneOffsets);
                best.Keep(error, storedScales, storedMins, storedD, storedDMin, bestScales, bestMins);
            }
        }
        if (best.IsReference) return false;
        for (var j = 0; j < subBlocks; j++)
        {
            scales[j] = (int)bestScales[j];
            if (!mins.IsEmpty) mins[j] = (int)bestMins[j];
        }
        d = GgmlFp16.FromSingle(best.D);
        dmin = GgmlFp16.FromSingle(best.DMin);
        // The winner's levels are the nearest for its stored scales (every candidate is scored right after rounding).
        for (var j = 0; j < subBlocks; j++)
        {
            var scale = best.D * bestScales[j];
            if (scale != 0) RoundSubBlock(spec, x, levels, j, scale, -best.DMin * bestMins[j]);
        }
        return true;
    }

    /// <summary>The start of <see cref="Encode"/>: for every lane, <see cref="SuperBlockSpec.StartScales"/> trial scales
    /// (affine formats: the sub-block's range [min(x, 0), max(x)] over the levels' span, divided by each factor, offset at
    /// the range's low end; type-0: the value of largest magnitude on the lowest and on the highest level, times each
    /// factor), each rounded and refitted by least squares. The lowest-error fit of each lane is left in the free fits
    /// and in the lane scales and offsets, for the Lloyd rounds that follow. Two trials per pass over the block, summed
    /// without storing their levels.</summary>
    private static void TrialStarts(SuperBlockSpec spec, in LaneBlock block, in LaneSums sums, Span<float> freeScales, Span<float> freeOffsets,
        Span<float> freeErrors, Span<float> laneScales, Span<float> laneOffsets)
    {
        if (spec.LinearLowest is { } lowest)
        {
            TrialStarts(new ConsecutiveLevels(lowest, lowest + spec.Levels.Length - 1), spec, block, sums, freeScales, freeOffsets, freeErrors);
        }
        else if (Avx2.IsSupported && spec.GridMidpoints is { } midpoints && spec.GridLevels is { } levels)
        {
            TrialStarts(new Grid16Levels(midpoints, levels), spec, block, sums, freeScales, freeOffsets, freeErrors);
        }
        else TrialStarts(new TableLevels(spec), spec, block, sums, freeScales, freeOffsets, freeErrors);
        freeScales.CopyTo(laneScales);
        freeOffsets.CopyTo(laneOffsets);
    }

    private static void TrialStarts<TLevels>(TLevels levels, SuperBlockSpec spec, in LaneBlock block, in LaneSums sums, Span<float> freeScales,
        Span<float> freeOffsets, Span<float> freeErrors) where TLevels : struct, INearestLevel
    {
        // Trials as (factor, end): affine formats have one end, type-0 formats two (the lowest and the highest level).
        var ends = spec.Affine ? 1 : 2;
        var trials = spec.StartScales.Length * ends;
        for (var g = 0; g < block.SubBlocks; g += Lanes)
        {
            var (min, max) = (Load(sums.Min, g), Load(sums.Max, g));
            var low = Vector256.Min(min, Vector256<float>.Zero);
            var largest = Vector256.ConditionalSelect(Vector256.GreaterThan(max, -min), max, min);
            // Not-found lanes (all-zero data) keep scale 0 at the offset of the range's low end.
            var fit = new LaneFit(spec, sums, g, Vector256<float>.Zero, spec.Affine ? low : Vector256<float>.Zero,
                Vector256.Create(float.PositiveInfinity));
            // Type-0 trials (no offset to carry from one to the next) run three to a pass.
            for (var k = 0; !spec.Affine && k + 2 < trials; k += 3)
            {
                var (sumsA, sumsB, sumsC) = SumsOfThree(levels, block, g, Trial(spec, k, ends, fit.Offset, max, largest),
                    Trial(spec, k + 1, ends, fit.Offset, max, largest), Trial(spec, k + 2, ends, fit.Offset, max, largest));
                fit.Keep(sumsA);
                fit.Keep(sumsB);
                fit.Keep(sumsC);
            }
            for (var k = spec.Affine ? 0 : trials - trials % 3; k < trials; k += 2)
            {
                // Affine trials round from the best offset so far, as make_qkx2_quants does: a sub-block with an outlier
                // reaches its much better fit with the bulk on level 1 only from an offset below min(x).
                var a = Trial(spec, k, ends, fit.Offset, max, largest);
                var b = k + 1 < trials ? Trial(spec, k + 1, ends, fit.Offset, max, largest) : a;
                var (sumsA, sumsB) = SumsOfTwo(levels, block, g, a, b);
                fit.Keep(sumsA);
                if (k + 1 < trials) fit.Keep(sumsB);
            }
            Store(freeScales, g, fit.Scale);
            Store(freeOffsets, g, fit.Offset);
            Store(freeErrors, g, fit.Error);
        }

        static (Vector256<float> Scale, Vector256<float> Offset) Trial(SuperBlockSpec spec, int k, int ends, Vector256<float> low,
            Vector256<float> max, Vector256<float> largest)
        {
            var factor = spec.StartScales[k / ends];
            if (spec.Affine) return ((max - low) / Vector256.Create((spec.Levels[^1] - spec.Levels[0]) * factor), low);
            return (largest / Vector256.Create((k % ends == 0 ? spec.Levels[0] : spec.Levels[^1]) * factor), Vector256<float>.Zero);
        }
    }

    /// <summary>The lowest-error free fit of a lane group (scale, offset and its error, from the given ones) among the
    /// level sets given to <see cref="Keep"/>: the trial starts' and the Lloyd rounds'.</summary>
    private struct LaneFit(SuperBlockSpec spec, in LaneSums sums, int g, Vector256<float> scale, Vector256<float> offset, Vector256<float> error)
    {
        private readonly bool affine = spec.Affine, signed = spec.ScaleLow < 0;
        private readonly Vector256<float> w = Load(sums.W, g), x = Load(sums.X, g), xx = Load(sums.XX, g);
        public Vector256<float> Scale = scale, Offset = offset, Error = error;

        /// <summary>Fits one set of levels (their sums Σw·t, Σw·t², Σw·x·t) by least squares and keeps the fit where it is
        /// valid (a positive scale; either sign for signed scales) and its error lower. Returns the fit and its validity.</summary>
        public (Vector256<float> Scale, Vector256<float> Offset, Vector256<float> Valid) Keep(
            (Vector256<float> T, Vector256<float> TT, Vector256<float> XT) levelSums)
        {
            var (s, o) = LaneSums.FitOf(levelSums.T, levelSums.TT, levelSums.XT, w, x, affine);
            var valid = Vector256.GreaterThan(s, Vector256<float>.Zero);
            if (signed) valid |= Vector256.LessThan(s, Vector256<float>.Zero);
            var error = LaneSums.ErrorOf(xx, w, x, levelSums.T, levelSums.TT, levelSums.XT, s, o);
            var better = valid & Vector256.LessThan(error, Error);
            Error = Vector256.ConditionalSelect(better, error, Error);
            Scale = Vector256.ConditionalSelect(better, s, Scale);
            Offset = Vector256.ConditionalSelect(better, o, Offset);
            return (s, o, valid);
        }
    }

    /// <summary>Σw·t, Σw·t², Σw·x·t of lanes g..g+7 for two (scale, offset) pairs, t the nearest level to (x − o)/s (level
    /// 0's value where the scale has no finite inverse), without storing the levels.</summary>
    private static ((Vector256<float>, Vector256<float>, Vector256<float>), (Vector256<float>, Vector256<float>, Vector256<float>)) SumsOfTwo<TLevels>(
        TLevels levels, in LaneBlock block, int g, (Vector256<float> Scale, Vector256<float> Offset) a, (Vector256<float> Scale, Vector256<float> Offset) b)
        where TLevels : struct, INearestLevel
    {
        ReadOnlySpan<float> xs = block.X, ws = block.W;
        var stride = block.SubBlocks;
        var (inverseA, shiftA) = FiniteInverse(a);
        var (inverseB, shiftB) = FiniteInverse(b);
        Vector256<float> tA = default, ttA = default, xtA = default, tB = default, ttB = default, xtB = default;
        for (var at = g; at < xs.Length; at += stride)
        {
            var (x, w) = (Load(xs, at), Load(ws, at));
            var levelA = levels.Nearest(Vector256.FusedMultiplyAdd(x, inverseA, shiftA));
            var levelB = levels.Nearest(Vector256.FusedMultiplyAdd(x, inverseB, shiftB));
            var (wA, wB) = (w * levelA, w * levelB);
            tA += wA;
            ttA = Vector256.FusedMultiplyAdd(wA, levelA, ttA);
            xtA = Vector256.FusedMultiplyAdd(wA, x, xtA);
            tB += wB;
            ttB = Vector256.FusedMultiplyAdd(wB, levelB, ttB);
            xtB = Vector256.FusedMultiplyAdd(wB, x, xtB);
        }
        return ((tA, ttA, xtA), (tB, ttB, xtB));
    }

    /// <summary><see cref="SumsOfTwo"/> for three (scale, offset) pairs.</summary>
    private static ((Vector256<float>, Vector256<float>, Vector256<float>), (Vector256<float>, Vector256<float>, Vector256<float>),
        (Vector256<float>, Vector256<float>, Vector256<float>)) SumsOfThree<TLevels>(TLevels levels, in LaneBlock block, int g,
        (Vector256<float> Scale, Vector256<float> Offset) a, (Vector256<float> Scale, Vector256<float> Offset) b,
        (Vector256<float> Scale, Vector256<float> Offset) c) where TLevels : struct, INearestLevel
    {
        ReadOnlySpan<float> xs = block.X, ws = block.W;
        var stride = block.SubBlocks;
        var (inverseA, shiftA) = FiniteInverse(a);
        var (inverseB, shiftB) = FiniteInverse(b);
        var (inverseC, shiftC) = FiniteInverse(c);
        Vector256<float> tA = default, ttA = default, xtA = default, tB = default, ttB = default, xtB = default;
        Vector256<float> tC = default, ttC = default, xtC = default;
        for (var at = g; at < xs.Length; at += stride)
        {
            var (x, w) = (Load(xs, at), Load(ws, at));
            var levelA = levels.Nearest(Vector256.FusedMultiplyAdd(x, inverseA, shiftA));
            var levelB = levels.Nearest(Vector256.FusedMultiplyAdd(x, inverseB, shiftB));
            var levelC = levels.Nearest(Vector256.FusedMultiplyAdd(x, inverseC, shiftC));
            var (wA, wB, wC) = (w * levelA, w * levelB, w * levelC);
            tA += wA;
            ttA = Vector256.FusedMultiplyAdd(wA, levelA, ttA);
            xtA = Vector256.FusedMultiplyAdd(wA, x, xtA);
            tB += wB;
            ttB = Vector256.FusedMultiplyAdd(wB, levelB, ttB);
            xtB = Vector256.FusedMultiplyAdd(wB, x, xtB);
            tC += wC;
            ttC = Vector256.FusedMultiplyAdd(wC, levelC, ttC);
            xtC = Vector256.FusedMultiplyAdd(wC, x, xtC);
        }
        return ((tA, ttA, xtA), (tB, ttB, xtB), (tC, ttC, xtC));
    }

    /// <summary>1/scale and −offset/scale, for v = x·inverse + shift; 0 for both where the inverse is not finite.</summary>
    private static (Vector256<float> Inverse, Vector256<float> Shift) FiniteInverse((Vector256<float> Scale, Vector256<float> Offset) pair)
    {
        var inverse = Vector256<float>.One / pair.Scale;
        inverse = Vector256.ConditionalSelect(Vector256.Equals(inverse - inverse, Vector256<float>.Zero), inverse, Vector256<float>.Zero);
        return (inverse, -pair.Offset * inverse);
    }

    /// <summary>The lowest error seen and its super-scales (the integer scales are copied by <see cref="Keep"/>).</summary>
    private struct Best(double error, float d, float dmin)
    {
        public double Error = error;
        public float D = d, DMin = dmin;
        public bool IsReference = true;

        public void Keep(double error, ReadOnlySpan<float> scales, ReadOnlySpan<float> mins, float d, float dmin, Span<float> bestScales,
            Span<float> bestMins)
        {
            if (!(error < Error)) return;
            (Error, D, DMin, IsReference) = (error, d, dmin, false);
            scales.CopyTo(bestScales);
            mins.CopyTo(bestMins);
        }
    }

    /// <summary>The block transposed for the lanes (weight i of sub-block j at i·S + j): the data, its error weights and
    /// the current level values.</summary>
    private readonly ref struct LaneBlock(Span<float> data, int subBlocks, int length)
    {
        public readonly Span<float> X = data[..(subBlocks * length)];
        public readonly Span<float> W = data.Slice(subBlocks * length, subBlocks * length);
        public readonly Span<float> T = data.Slice(2 * subBlocks * length, subBlocks * length);
        public readonly int SubBlocks = subBlocks, Length = length;
    }

    /// <summary>Per sub-block (lane) weighted sums: the data's (fixed) and the current levels'. Float, as the sums were in
    /// the double version too (only their quadratic forms were double): an error read off them is exact to about 10⁻⁷ of
    /// Σw·x², which decides between candidates only where they are that close, and KeepBestBlocks has the last word.</summary>
    private readonly ref struct LaneSums(Span<float> data, int subBlocks)
    {
        public const int Count = 8, LevelCount = 3;
        public readonly Span<float> T = data[..subBlocks], TT = data.Slice(subBlocks, subBlocks), XT = data.Slice(2 * subBlocks, subBlocks); // Σw·t, Σw·t², Σw·x·t
        public readonly Span<float> W = data.Slice(3 * subBlocks, subBlocks), X = data.Slice(4 * subBlocks, subBlocks); // Σw, Σw·x
        public readonly Span<float> XX = data.Slice(5 * subBlocks, subBlocks); // Σw·x²
        public readonly Span<float> Min = data.Slice(6 * subBlocks, subBlocks), Max = data.Slice(7 * subBlocks, subBlocks); // of x
        public readonly Span<float> Levels = data[..(LevelCount * subBlocks)];

        /// <summary>Least-squares scale and offset of lanes g..g+7 (type-0: offset 0). The affine formats store −Dmin·m with
        /// m ≥ 0 under a positive Dmin, so a positive offset is replaced by the best fit with offset 0; so is a
        /// near-singular system (all levels of the sub-block equal: det at the rounding noise of the float sums).</summary>
        public (Vector256<float> Scale, Vector256<float> Offset) Fit(int g, bool affine) =>
            FitOf(Load(T, g), Load(TT, g), Load(XT, g), Load(W, g), Load(X, g), affine);

        /// <summary><see cref="Fit"/> from the sums themselves.</summary>
        public static (Vector256<float> Scale, Vector256<float> Offset) FitOf(Vector256<float> t, Vector256<float> tt, Vector256<float> xt,
            Vector256<float> w, Vector256<float> x, bool affine)
        {
            var positive = Vector256.GreaterThan(tt, Vector256<float>.Zero);
            var scale = Vector256.ConditionalSelect(positive, xt / tt, Vector256<float>.Zero);
            if (!affine) return (scale, Vector256<float>.Zero);
            var det = w * tt - t * t;
            var affineScale = (w * xt - t * x) / det;
            var affineOffset = (tt * x - t * xt) / det;
            var usable = Vector256.GreaterThan(det, Vector256.Create(1e-6f) * w * tt) & Vector256.LessThanOrEqual(affineOffset, Vector256<float>.Zero);
            return (Vector256.ConditionalSelect(usable, affineScale, scale), Vector256.ConditionalSelect(usable, affineOffset, Vector256<float>.Zero));
        }

        /// <summary>Σ w·(s·t + o − x)² of lanes g..g+7, from the sums.</summary>
        public Vector256<float> Error(int g, Vector256<float> s, Vector256<float> o) =>
            ErrorOf(Load(XX, g), Load(W, g), Load(X, g), Load(T, g), Load(TT, g), Load(XT, g), s, o);

        /// <summary><see cref="Error"/> from the sums themselves.</summary>
        public static Vector256<float> ErrorOf(Vector256<float> xx, Vector256<float> w, Vector256<float> x, Vector256<float> t,
            Vector256<float> tt, Vector256<float> xt, Vector256<float> s, Vector256<float> o)
        {
            var two = Vector256.Create(2f);
            return xx + s * (s * tt - two * xt) + o * (o * w - two * x) + two * s * o * t;
        }
    }

    /// <summary>The block's value of largest magnitude, with its sign, from every lane's min(x) and max(x) (the first of
    /// equal magnitudes in lane order, min before max).</summary>
    private static float LargestValue(in LaneSums sums)
    {
        ReadOnlySpan<float> mins = sums.Min, maxes = sums.Max;
        var magnitude = Vector256<float>.Zero;
        for (var g = 0; g < mins.Length; g += Lanes) magnitude = Vector256.Max(magnitude, Vector256.Max(-Load(mins, g), Load(maxes, g)));
        var largest = 0f;
        for (var k = 0; k < Lanes; k++) largest = Math.Max(largest, magnitude[k]);
        if (largest == 0) return 0;
        for (var j = 0; j < mins.Length; j++)
        {
            if (-mins[j] == largest) return mins[j];
            if (maxes[j] == largest) return maxes[j];
        }
        return 0; // NaN data: no candidate
    }

    /// <summary>Σw, Σw·x, Σw·x², min(x) and max(x) of every lane.</summary>
    private static void SumData(in LaneBlock block, in LaneSums sums)
    {
        for (var g = 0; g < block.SubBlocks; g += Lanes)
        {
            Vector256<float> sw = default, sx = default, sxx = default;
            Vector256<float> min = Vector256.Create(float.MaxValue), max = Vector256.Create(float.MinValue);
            for (var at = g; at < block.X.Length; at += block.SubBlocks)
            {
                var (x, w) = (Load(block.X, at), Load(block.W, at));
                var wx = w * x;
                sw += w;
                sx += wx;
                sxx += wx * x;
                min = Vector256.Min(min, x);
                max = Vector256.Max(max, x);
            }
            Store(sums.W, g, sw);
            Store(sums.X, g, sx);
            Store(sums.XX, g, sxx);
            Store(sums.Min, g, min);
            Store(sums.Max, g, max);
        }
    }

    /// <summary>Σw·t, Σw·t², Σw·x·t of every lane for the current level values.</summary>
    private static void SumLevels(in LaneBlock block, in LaneSums sums)
    {
        ReadOnlySpan<float> xs = block.X, ws = block.W, ts = block.T;
        var stride = block.SubBlocks;
        for (var g = 0; g < block.SubBlocks; g += Lanes)
        {
            Vector256<float> st = default, stt = default, sxt = default;
            for (var at = g; at < xs.Length; at += stride)
            {
                var t = Load(ts, at);
                var wt = Load(ws, at) * t;
                st += wt;
                stt += wt * t;
                sxt += wt * Load(xs, at);
            }
            Store(sums.T, g, st);
            Store(sums.TT, g, stt);
            Store(sums.XT, g, sxt);
        }
    }

    /// <summary>The nearest level to (x − offset)/scale for every weight of every lane, and the lanes' level sums. A lane
    /// whose scale has no finite inverse (0, subnormal) keeps its levels.</summary>
    private static void RoundAndSum(SuperBlockSpec spec, in LaneBlock block, ReadOnlySpan<float> scales, ReadOnlySpan<float> offsets,
        in LaneSums sums)
    {
        ReadOnlySpan<float> xs = block.X, ws = block.W;
        var ts = block.T;
        var stride = block.SubBlocks;
        var linear = spec.LinearLowest is not null;
        var lowest = Vector256.Create((float)spec.Levels[0]);
        var highest = Vector256.Create((float)spec.Levels[^1]);
        var grid16 = !linear && Avx2.IsSupported && spec.GridMidpoints is not null;
        var (midLow, midHigh) = spec.GridMidpoints ?? default;
        var (levelLow, levelHigh) = spec.GridLevels ?? default;
        for (var g = 0; g < stride; g += Lanes)
        {
            var inverse = Vector256<float>.One / Load(scales, g);
            var keep = ~Vector256.Equals(inverse - inverse, Vector256<float>.Zero);
            var anyKept = keep != Vector256<float>.Zero;
            inverse = Vector256.ConditionalSelect(keep, Vector256<float>.Zero, inverse);
            // (x − offset)/scale as one fused x·inverse + shift, in RoundSubBlock too.
            var shift = -Load(offsets, g) * inverse;
            // Two sets of sums, for the even and odd weights, halve the chains of dependent additions.
            Vector256<float> st = default, stt = default, sxt = default, st2 = default, stt2 = default, sxt2 = default;
            for (var at = g; at < xs.Length; at += 2 * stride)
            {
                var x = Load(xs, at);
                var x2 = Load(xs, at + stride);
                var (v, v2) = (Vector256.FusedMultiplyAdd(x, inverse, shift), Vector256.FusedMultiplyAdd(x2, inverse, shift));
                Vector256<float> t, t2;
                if (linear)
                {
                    t = Vector256.Min(Vector256.Max(Vector256.Round(v), lowest), highest);
                    t2 = Vector256.Min(Vector256.Max(Vector256.Round(v2), lowest), highest);
                }
                else if (grid16)
                {
                    t = NearestOnGrid16(v, midLow, midHigh, levelLow, levelHigh, out _);
                    t2 = NearestOnGrid16(v2, midLow, midHigh, levelLow, levelHigh, out _);
                }
                else (t, t2) = (NearestOnGrid(spec, v, out _), NearestOnGrid(spec, v2, out _));
                if (anyKept)
                {
                    t = Vector256.ConditionalSelect(keep, Load(ts, at), t);
                    t2 = Vector256.ConditionalSelect(keep, Load(ts, at + stride), t2);
                }
                Store(ts, at, t);
                Store(ts, at + stride, t2);
                var (wt, wt2) = (Load(ws, at) * t, Load(ws, at + stride) * t2);
                st += wt;
                stt = Vector256.FusedMultiplyAdd(wt, t, stt);
                sxt = Vector256.FusedMultiplyAdd(wt, x, sxt);
                st2 += wt2;
                stt2 = Vector256.FusedMultiplyAdd(wt2, t2, stt2);
                sxt2 = Vector256.FusedMultiplyAdd(wt2, x2, sxt2);
            }
            Store(sums.T, g, st + st2);
            Store(sums.TT, g, stt + stt2);
            Store(sums.XT, g, sxt + sxt2);
        }
    }

    /// <summary>The level nearest to each of <paramref name="v"/> (in units of the scale), and its index.</summary>
    private static Vector256<float> Nearest(SuperBlockSpec spec, Vector256<float> v, out Vector256<int> index)
    {
        if (spec.LinearLowest is not { } lowest) return NearestOnGrid(spec, v, out index);
        var level = Vector256.Min(Vector256.Max(Vector256.Round(v), Vector256.Create((float)lowest)),
            Vector256.Create((float)(lowest + spec.Levels.Length - 1)));
        index = Vector256.ConvertToInt32(level) - Vector256.Create(lowest);
        return level;
    }

    /// <summary><see cref="Nearest"/> for levels that are not consecutive integers (IQ4's grid): one comparison per midpoint.</summary>
    private static Vector256<float> NearestOnGrid(SuperBlockSpec spec, Vector256<float> v, out Vector256<int> index)
    {
        if (Avx2.IsSupported && spec.GridMidpoints is { } gridMidpoints && spec.GridLevels is { } gridLevels)
        {
            return NearestOnGrid16(v, gridMidpoints.Low, gridMidpoints.High, gridLevels.Low, gridLevels.High, out index);
        }
        index = Vector256<int>.Zero;
        var value = Vector256.Create(spec.Levels[0]);
        var midpoints = spec.Midpoints;
        var steps = spec.Steps;
        for (var k = 0; k < midpoints.Length; k++)
        {
            var above = Vector256.GreaterThan(v, Vector256.Create(midpoints[k]));
            index -= above.AsInt32();
            value += above & Vector256.Create(steps[k]);
        }
        return value;
    }

    /// <summary><see cref="NearestOnGrid"/> for a grid of 16 levels: the index is the number of midpoints below v, found by
    /// a binary search over the 15 midpoints in four steps (8, 4, 2, 1), each reading its midpoint from two 8-lane tables
    /// by a permute; the same count as the comparisons with every midpoint.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> NearestOnGrid16(Vector256<float> v, Vector256<float> midLow, Vector256<float> midHigh,
        Vector256<float> levelLow, Vector256<float> levelHigh, out Vector256<int> index)
    {
        index = Vector256.GreaterThan(v, Vector256.Create(midLow.GetElement(7))).AsInt32() & Vector256.Create(8);
        index += Vector256.GreaterThan(v, Lookup16(midLow, midHigh, index + Vector256.Create(3))).AsInt32() & Vector256.Create(4);
        index += Vector256.GreaterThan(v, Lookup16(midLow, midHigh, index + Vector256.Create(1))).AsInt32() & Vector256.Create(2);
        index -= Vector256.GreaterThan(v, Lookup16(midLow, midHigh, index)).AsInt32();
        return Lookup16(levelLow, levelHigh, index);
    }

    /// <summary>The free scales and offsets stored as integers under super-scales <paramref name="d"/> and <paramref name="dmin"/>.</summary>
    private static void QuantizeScales(SuperBlockSpec spec, ReadOnlySpan<float> freeScales, ReadOnlySpan<float> freeOffsets, float d,
        float dmin, Span<float> scales, Span<float> mins)
    {
        var (low, high, minHigh) = (Vector256.Create((float)spec.ScaleLow), Vector256.Create((float)spec.ScaleHigh), Vector256.Create((float)spec.MinHigh));
        // Type-0 levels that include 0 (Q3_K): a free scale below D/2 takes ±1, never worse than 0. At 0 the sub-block
        // decodes to zeros, and the stored rounds, at fixed levels, could not bring it back (an outlier test row had 1.6×
        // the reference's error).
        var neverZero = !spec.Affine && spec.ZeroIsALevel;
        for (var g = 0; g < scales.Length; g += Lanes)
        {
            var ratio = Load(freeScales, g) / Vector256.Create(d);
            var rounded = Vector256.Round(ratio);
            if (neverZero)
            {
                var lost = Vector256.Equals(rounded, Vector256<float>.Zero) & ~Vector256.Equals(ratio, Vector256<float>.Zero);
                rounded = Vector256.ConditionalSelect(lost,
                    Vector256.ConditionalSelect(Vector256.LessThan(ratio, Vector256<float>.Zero), -Vector256<float>.One, Vector256<float>.One), rounded);
            }
            Store(scales, g, Clamp(rounded, low, high));
            Store(mins, g, spec.Affine && dmin != 0
                ? Clamp(Vector256.Round(-Load(freeOffsets, g) / Vector256.Create(dmin)), Vector256<float>.Zero, minHigh)
                : Vector256<float>.Zero);
        }
    }

    /// <summary>Clamped to [low, high]; NaN becomes low.</summary>
    private static Vector256<float> Clamp(Vector256<float> v, Vector256<float> low, Vector256<float> high)
    {
        var clamped = Vector256.Min(Vector256.Max(v, low), high);
        return Vector256.ConditionalSelect(Vector256.Equals(v, v), clamped, low);
    }

    /// <summary>Rounds every lane to the stored scales (D·sc, −Dmin·m) and returns the weighted error of the encoding.</summary>
    private static double RoundAtStoredScales(SuperBlockSpec spec, in LaneBlock block, in LaneSums sums, ReadOnlySpan<float> scales,
        ReadOnlySpan<float> mins, float d, float dmin, Span<float> laneScales, Span<float> laneOffsets)
    {
        for (var g = 0; g < scales.Length; g += Lanes)
        {
            Store(laneScales, g, Vector256.Create(d) * Load(scales, g));
            Store(laneOffsets, g, Vector256.Create(-dmin) * Load(mins, g));
        }
        RoundAndSum(spec, block, laneScales, laneOffsets, sums);
        return StoredError(spec, sums, scales, mins, d, dmin);
    }

    /// <summary>The weighted error of the stored encoding, from the sums of its current levels (+∞ for NaN).</summary>
    private static double StoredError(SuperBlockSpec spec, in LaneSums sums, ReadOnlySpan<float> scales, ReadOnlySpan<float> mins, float d,
        float dmin)
    {
        double total = 0;
        for (var g = 0; g < scales.Length; g += Lanes)
        {
            var offsets = spec.Affine ? Vector256.Create(-dmin) * Load(mins, g) : Vector256<float>.Zero;
            var errors = sums.Error(g, Vector256.Create(d) * Load(scales, g), offsets);
            var (low, high) = Vector256.Widen(errors);
            total += Vector256.Sum(low + high);
        }
        return double.IsNaN(total) ? double.PositiveInfinity : total;
    }

    /// <summary>Copies the levels, their sums and the stored integers to <paramref name="saved"/>, or back.</summary>
    private static void SaveOrRestore(Span<float> levels, in LaneSums sums, Span<float> scales, Span<float> mins, Span<float> saved, bool save)
    {
        Span<float> levelSums = sums.Levels;
        var savedLevels = saved[..levels.Length];
        var savedSums = saved.Slice(levels.Length, levelSums.Length);
        var savedScales = saved.Slice(levels.Length + levelSums.Length, scales.Length);
        var savedMins = saved.Slice(levels.Length + levelSums.Length + scales.Length, mins.Length);
        if (save)
        {
            levels.CopyTo(savedLevels);
            levelSums.CopyTo(savedSums);
            scales.CopyTo(savedScales);
            mins.CopyTo(savedMins);
        }
        else
        {
            savedLevels.CopyTo(levels);
            savedSums.CopyTo(levelSums);
            savedScales.CopyTo(scales);
            savedMins.CopyTo(mins);
        }
    }

    /// <summary>Least-squares D (and Dmin) for the fixed integer scales, mins and levels: x ≈ D·(sc·T) − Dmin·m. False when
    /// the system is singular or the fit leaves the fp16 range.</summary>
    private static bool RefitSuperScales(SuperBlockSpec spec, in LaneSums sums, ReadOnlySpan<float> scales, ReadOnlySpan<float> mins,
        ref float d, ref float dmin)
    {
        // a = sc·T and b = −m per weight, summed per sub-block.
        Vector256<float> aa = default, ab = default, bb = default, xa = default, xb = default;
        for (var g = 0; g < scales.Length; g += Lanes)
        {
            var (sc, m) = (Load(scales, g), Load(mins, g));
            aa += sc * sc * Load(sums.TT, g);
            ab -= sc * m * Load(sums.T, g);
            bb += m * m * Load(sums.W, g);
            xa += sc * Load(sums.XT, g);
            xb -= m * Load(sums.X, g);
        }
        double sumAa = Sum(aa), sumAb = Sum(ab), sumBb = Sum(bb), sumXa = Sum(xa), sumXb = Sum(xb);
        double fittedD, fittedDMin;
        var det = sumAa * sumBb - sumAb * sumAb;
        if (spec.Affine && sumBb > 0 && det > 1e-12 * sumAa * sumBb)
        {
            fittedD = (sumBb * sumXa - sumAb * sumXb) / det;
            fittedDMin = (sumAa * sumXb - sumAb * sumXa) / det;
        }
        else if (sumAa > 0)
        {
            // Dmin kept: D alone for x − Dmin·b.
            fittedDMin = spec.Affine ? dmin : 0;
            fittedD = (sumXa - fittedDMin * sumAb) / sumAa;
        }
        else return false;
        var dValue = Fp16Value((float)fittedD);
        var dminValue = spec.Affine ? Fp16Value((float)fittedDMin) : 0;
        if (!float.IsFinite(dValue) || !float.IsFinite(dminValue) || dValue == 0) return false;
        (d, dmin) = (dValue, dminValue);
        return true;
    }

    private static double Sum(Vector256<float> v)
    {
        var (low, high) = Vector256.Widen(v);
        return Vector256.Sum(low + high);
    }

    /// <summary>For the current levels and super-scales, each sub-block's integer scale (and min) with the lowest error among
    /// the integers around its least-squares value.</summary>
    private static void ChooseIntegerScales(SuperBlockSpec spec, in LaneSums sums, Span<float> scales, Span<float> mins, float d, float dmin)
    {
        var (dv, dminv) = (Vector256.Create(d), Vector256.Create(dmin));
        var (low, high, minHigh) = (Vector256.Create((float)spec.ScaleLow), Vector256.Create((float)spec.ScaleHigh), Vector256.Create((float)spec.MinHigh));
        var minSteps = spec.Affine && dmin != 0;
        for (var g = 0; g < scales.Length; g += Lanes)
        {
            var (s, o) = sums.Fit(g, spec.Affine);
            var scaleBase = Vector256.Floor(s / dv);
            var minBase = minSteps ? Vector256.Floor(-o / dminv) : Vector256<float>.Zero;
            var (bestScale, bestMin) = (Load(scales, g), Load(mins, g));
            var bestError = sums.Error(g, dv * bestScale, -dminv * bestMin);
            for (var ds = 0; ds <= 1; ds++)
            {
                var sc = Clamp(scaleBase + Vector256.Create((float)ds), low, high);
                for (var dm = 0; dm <= (spec.Affine ? 1 : 0); dm++)
                {
                    var m = spec.Affine ? Clamp(minBase + Vector256.Create((float)dm), Vector256<float>.Zero, minHigh) : Vector256<float>.Zero;
                    var error = sums.Error(g, dv * sc, -dminv * m);
                    var better = Vector256.LessThan(error, bestError);
                    bestError = Vector256.ConditionalSelect(better, error, bestError);
                    bestScale = Vector256.ConditionalSelect(better, sc, bestScale);
                    bestMin = Vector256.ConditionalSelect(better, m, bestMin);
                }
            }
            Store(scales, g, bestScale);
            Store(mins, g, bestMin);
        }
    }

    /// <summary>For super-scales <paramref name="d"/> and <paramref name="dmin"/>, each sub-block's integer scale (and min)
    /// with the lowest weighted error among the neighbours of its free fit: the rounded free scale −1, 0, +1, each with the
    /// rounded free min −1, 0, +1 (affine formats). Every neighbour is scored after the sub-block is rounded at it: a scale
    /// step moves many weights across a rounding boundary, which the fixed-level refinement (<see cref="ChooseIntegerScales"/>)
    /// cannot see. One pass over the block scores three neighbours of every lane, with no stores.</summary>
    private static void ChooseNeighbourIntegers(SuperBlockSpec spec, in LaneBlock block, in LaneSums sums, ReadOnlySpan<float> freeScales,
        ReadOnlySpan<float> freeOffsets, float d, float dmin, Span<float> scales, Span<float> mins)
    {
        if (spec.LinearLowest is { } lowest)
        {
            ChooseNeighbourIntegers(new ConsecutiveLevels(lowest, lowest + spec.Levels.Length - 1), spec, block, sums, freeScales, freeOffsets, d,
                dmin, scales, mins);
        }
        else if (Avx2.IsSupported && spec.GridMidpoints is { } midpoints && spec.GridLevels is { } levels)
        {
            ChooseNeighbourIntegers(new Grid16Levels(midpoints, levels), spec, block, sums, freeScales, freeOffsets, d, dmin, scales, mins);
        }
        else ChooseNeighbourIntegers(new TableLevels(spec), spec, block, sums, freeScales, freeOffsets, d, dmin, scales, mins);
    }

    private static void ChooseNeighbourIntegers<TLevels>(TLevels levels, SuperBlockSpec spec, in LaneBlock block, in LaneSums sums,
        ReadOnlySpan<float> freeScales, ReadOnlySpan<float> freeOffsets, float d, float dmin, Span<float> scales, Span<float> mins)
        where TLevels : struct, INearestLevel
    {
        var (low, high, minHigh) = (Vector256.Create((float)spec.ScaleLow), Vector256.Create((float)spec.ScaleHigh), Vector256.Create((float)spec.MinHigh));
        var (dv, dminv) = (Vector256.Create(d), Vector256.Create(dmin));
        var minSteps = spec.Affine && dmin != 0;
        var one = Vector256<float>.One;
        for (var g = 0; g < scales.Length; g += Lanes)
        {
            var scaleBase = Vector256.Round(Load(freeScales, g) / dv);
            var minBase = minSteps ? Vector256.Round(-Load(freeOffsets, g) / dminv) : Vector256<float>.Zero;
            var best = new Neighbour(Vector256.Create(float.PositiveInfinity), Clamp(scaleBase, low, high), Clamp(minBase, Vector256<float>.Zero, minHigh));
            if (minSteps)
            {
                var (m0, m1, m2) = (Clamp(minBase - one, Vector256<float>.Zero, minHigh), Clamp(minBase, Vector256<float>.Zero, minHigh),
                    Clamp(minBase + one, Vector256<float>.Zero, minHigh));
                for (var step = -1; step <= 1; step++)
                {
                    var sc = Clamp(scaleBase + Vector256.Create((float)step), low, high);
                    var s = dv * sc;
                    var (e0, e1, e2) = ErrorsOfThree(levels, block, sums, g, (s, -dminv * m0), (s, -dminv * m1), (s, -dminv * m2));
                    best.Keep(e0, sc, m0);
                    best.Keep(e1, sc, m1);
                    best.Keep(e2, sc, m2);
                }
            }
            else
            {
                var (sc0, sc1, sc2) = (Clamp(scaleBase - one, low, high), Clamp(scaleBase, low, high), Clamp(scaleBase + one, low, high));
                var (m, o) = (best.Min, -dminv * best.Min);
                var (e0, e1, e2) = ErrorsOfThree(levels, block, sums, g, (dv * sc0, o), (dv * sc1, o), (dv * sc2, o));
                best.Keep(e0, sc0, m);
                best.Keep(e1, sc1, m);
                best.Keep(e2, sc2, m);
            }
            Store(scales, g, best.Scale);
            Store(mins, g, spec.Affine ? best.Min : Vector256<float>.Zero);
        }
    }

    /// <summary>The lowest error of each lane among the neighbours scored so far, and its integers.</summary>
    private struct Neighbour(Vector256<float> error, Vector256<float> scale, Vector256<float> min)
    {
        public Vector256<float> Error = error, Scale = scale, Min = min;

        public void Keep(Vector256<float> error, Vector256<float> scale, Vector256<float> min)
        {
            var better = Vector256.LessThan(error, Error);
            Error = Vector256.ConditionalSelect(better, error, Error);
            Scale = Vector256.ConditionalSelect(better, scale, Scale);
            Min = Vector256.ConditionalSelect(better, min, Min);
        }
    }

    /// <summary>Σ w·(s·t + o − x)² of lanes g..g+7 for three (scale, offset) pairs, t the nearest level to v = (x − o)/s,
    /// summed as s²·Σ w·(t − v)² (three live values per pair in the loop). A scale without a finite inverse (0) puts every
    /// weight at the offset: Σ w·(o − x)², from the data's sums.</summary>
    private static (Vector256<float>, Vector256<float>, Vector256<float>) ErrorsOfThree<TLevels>(TLevels levels, in LaneBlock block,
        in LaneSums sums, int g, (Vector256<float> Scale, Vector256<float> Offset) a, (Vector256<float> Scale, Vector256<float> Offset) b,
        (Vector256<float> Scale, Vector256<float> Offset) c) where TLevels : struct, INearestLevel
    {
        ReadOnlySpan<float> xs = block.X, ws = block.W;
        var stride = block.SubBlocks;
        var (inverseA, shiftA) = FiniteInverse(a);
        var (inverseB, shiftB) = FiniteInverse(b);
        var (inverseC, shiftC) = FiniteInverse(c);
        Vector256<float> errorA = default, errorB = default, errorC = default;
        for (var at = g; at < xs.Length; at += stride)
        {
            var (x, w) = (Load(xs, at), Load(ws, at));
            var v = Vector256.FusedMultiplyAdd(x, inverseA, shiftA);
            var r = levels.Nearest(v) - v;
            errorA = Vector256.FusedMultiplyAdd(w * r, r, errorA);
            v = Vector256.FusedMultiplyAdd(x, inverseB, shiftB);
            r = levels.Nearest(v) - v;
            errorB = Vector256.FusedMultiplyAdd(w * r, r, errorB);
            v = Vector256.FusedMultiplyAdd(x, inverseC, shiftC);
            r = levels.Nearest(v) - v;
            errorC = Vector256.FusedMultiplyAdd(w * r, r, errorC);
        }
        return (Scaled(errorA, a, inverseA, sums, g), Scaled(errorB, b, inverseB, sums, g), Scaled(errorC, c, inverseC, sums, g));

        static Vector256<float> Scaled(Vector256<float> error, (Vector256<float> Scale, Vector256<float> Offset) pair, Vector256<float> inverse,
            in LaneSums sums, int g)
        {
            var o = pair.Offset;
            var atOffset = Load(sums.XX, g) + o * (o * Load(sums.W, g) - Vector256.Create(2f) * Load(sums.X, g));
            return Vector256.ConditionalSelect(Vector256.Equals(inverse, Vector256<float>.Zero), atOffset, pair.Scale * pair.Scale * error);
        }
    }

    /// <summary>The nearest level of a format to a value in units of the scale, by the arithmetic of <see cref="RoundAndSum"/>.</summary>
    private interface INearestLevel
    {
        Vector256<float> Nearest(Vector256<float> v);
    }

    /// <summary>Levels lowest, lowest + 1, …, highest (every K-quant): rounding and a clamp.</summary>
    private readonly struct ConsecutiveLevels(int lowest, int highest) : INearestLevel
    {
        private readonly Vector256<float> lowest = Vector256.Create((float)lowest), highest = Vector256.Create((float)highest);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<float> Nearest(Vector256<float> v) => Vector256.Min(Vector256.Max(Vector256.Round(v), lowest), highest);
    }

    /// <summary>A grid of 16 levels (IQ4's), by <see cref="NearestOnGrid16"/>.</summary>
    private readonly struct Grid16Levels((Vector256<float> Low, Vector256<float> High) midpoints, (Vector256<float> Low, Vector256<float> High) levels)
        : INearestLevel
    {
        private readonly Vector256<float> midLow = midpoints.Low, midHigh = midpoints.High, levelLow = levels.Low, levelHigh = levels.High;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<float> Nearest(Vector256<float> v) => NearestOnGrid16(v, midLow, midHigh, levelLow, levelHigh, out _);
    }

    /// <summary>Levels from a table, one comparison per midpoint (IQ4's grid without AVX2).</summary>
    private readonly struct TableLevels(SuperBlockSpec spec) : INearestLevel
    {
        private readonly SuperBlockSpec spec = spec;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<float> Nearest(Vector256<float> v) => NearestOnGrid(spec, v, out _);
    }

    /// <summary>The level indices nearest to (x − offset)/scale for sub-block <paramref name="j"/> of the untransposed block,
    /// by the same arithmetic as <see cref="RoundAndSum"/>.</summary>
    private static void RoundSubBlock(SuperBlockSpec spec, ReadOnlySpan<float> x, Span<byte> indices, int j, float scale, float offset)
    {
        var inverseValue = 1 / scale;
        if (!float.IsFinite(inverseValue)) return;
        var inverse = Vector256.Create(inverseValue);
        var shift = -Vector256.Create(offset) * inverse;
        // Four vectors of int indices narrow to one of bytes; sub-blocks are 16 or 32 weights, so two or four.
        Span<int> lane = stackalloc int[4 * Lanes];
        var start = j * spec.SubBlock;
        for (var i = 0; i < spec.SubBlock; i += Lanes)
        {
            Nearest(spec, Vector256.FusedMultiplyAdd(Load(x, start + i), inverse, shift), out var index);
            index.CopyTo(lane[i..]);
        }
        if (spec.SubBlock == 4 * Lanes)
        {
            var low = Vector256.Narrow(Vector256.Create(lane), Vector256.Create(lane[Lanes..]));
            var high = Vector256.Narrow(Vector256.Create(lane[(2 * Lanes)..]), Vector256.Create(lane[(3 * Lanes)..]));
            Vector256.Narrow(low.AsUInt16(), high.AsUInt16()).CopyTo(indices.Slice(start, 4 * Lanes));
            return;
        }
        if (spec.SubBlock == 2 * Lanes)
        {
            var words = Vector256.Narrow(Vector256.Create(lane), Vector256.Create(lane[Lanes..])).AsUInt16();
            Vector256.Narrow(words, words).GetLower().CopyTo(indices.Slice(start, 2 * Lanes));
            return;
        }
        for (var i = 0; i < spec.SubBlock; i++) indices[start + i] = (byte)lane[i];
    }

    /// <summary>The level value of every index.</summary>
    private static void LevelValues(SuperBlockSpec spec, ReadOnlySpan<byte> indices, Span<float> values)
    {
        if (spec.LinearLowest is { } lowest)
        {
            var offset = Vector256.Create((float)lowest);
            for (var i = 0; i < indices.Length; i += 4 * Lanes)
            {
                var (low, high) = Vector256.Widen(Vector256.Create(indices.Slice(i, 4 * Lanes)));
                var (a, b) = Vector256.Widen(low);
                var (c, d) = Vector256.Widen(high);
                Store(values, i, Vector256.ConvertToSingle(a.AsInt32()) + offset);
                Store(values, i + Lanes, Vector256.ConvertToSingle(b.AsInt32()) + offset);
                Store(values, i + 2 * Lanes, Vector256.ConvertToSingle(c.AsInt32()) + offset);
                Store(values, i + 3 * Lanes, Vector256.ConvertToSingle(d.AsInt32()) + offset);
            }
            return;
        }
        for (var i = 0; i < indices.Length; i++) values[i] = spec.Levels[indices[i]];
    }

    private static float Fp16Value(float value) => (float)GgmlFp16.FromSingle(value);
}
