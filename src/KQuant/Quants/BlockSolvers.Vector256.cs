using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace KQuant.Quants;

// Lane-parallel versions of the solvers. Every lane runs ggml's scalar arithmetic for one group (or one candidate
// scale) with the same operations in the same order over the weights, so each lane produces the bits ggml's scalar
// code produces; comparisons become masks and ggml's if-statements become selects. Multiplies and adds stay separate
// instructions (no FMA), as in libggml-base.
internal static partial class BlockSolvers
{
    private const int Lanes = 8;

    /// <summary>ggml's nearest_int on eight lanes: the same 1.5·2²³ bit trick, so the same results for any input.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> NearestInt(Vector256<float> value) =>
        (Vector256.AsInt32(value + Vector256.Create(RoundingMagic)) & Vector256.Create(0x007fffff)) - Vector256.Create(0x00400000);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Clamp(Vector256<int> value, Vector256<int> lowest, Vector256<int> highest) =>
        Vector256.Min(Vector256.Max(value, lowest), highest);

    /// <summary>Lane indices 0..7 as floats.</summary>
    private static Vector256<float> LaneIndices => Vector256.Create(0f, 1f, 2f, 3f, 4f, 5f, 6f, 7f);

    /// <summary><see cref="SignedAbsMaxScalar"/> for lengths that are a multiple of 8: each lane keeps ggml's
    /// "strictly larger" rule over its share, the lanes are merged with the same rule, and the first weight of that
    /// magnitude supplies the sign, so ties and NaN (never larger) come out as in ggml.</summary>
    internal static (float Max, float AbsMax) SignedAbsMaxVector256(ReadOnlySpan<float> x)
    {
        ref var src = ref MemoryMarshal.GetReference(x);
        var amaxV = Vector256<float>.Zero;
        for (var i = 0; i < x.Length; i += 8)
        {
            var ax = Vector256.Abs(Vector256.LoadUnsafe(ref src, (nuint)i));
            amaxV = Vector256.ConditionalSelect(Vector256.GreaterThan(ax, amaxV), ax, amaxV);
        }
        float amax = 0;
        for (var lane = 0; lane < Lanes; lane++)
        {
            var value = amaxV.GetElement(lane);
            if (value > amax) amax = value;
        }
        if (amax == 0) return (0, 0);
        var target = Vector256.Create(amax);
        for (var i = 0; ; i += 8)
        {
            var hits = Vector256.Equals(Vector256.Abs(Vector256.LoadUnsafe(ref src, (nuint)i)), target).ExtractMostSignificantBits();
            if (hits != 0) return (x[i + System.Numerics.BitOperations.TrailingZeroCount(hits)], amax);
        }
    }

    /// <summary><see cref="RangeScalar"/> for lengths that are a multiple of 8. Lanes follow ggml's strict comparisons
    /// from x[0], so NaN is skipped as in ggml; only which of +0 and -0 wins can differ, so a zero result is redone
    /// in scalar.</summary>
    internal static (float Min, float Max) RangeVector256(ReadOnlySpan<float> x)
    {
        ref var src = ref MemoryMarshal.GetReference(x);
        var minV = Vector256.Create(x[0]);
        var maxV = minV;
        for (var i = 0; i < x.Length; i += 8)
        {
            var v = Vector256.LoadUnsafe(ref src, (nuint)i);
            minV = Vector256.ConditionalSelect(Vector256.LessThan(v, minV), v, minV);
            maxV = Vector256.ConditionalSelect(Vector256.GreaterThan(v, maxV), v, maxV);
        }
        float min = x[0], max = x[0];
        for (var lane = 0; lane < Lanes; lane++)
        {
            if (minV.GetElement(lane) < min) min = minV.GetElement(lane);
            if (maxV.GetElement(lane) > max) max = maxV.GetElement(lane);
        }
        return min == 0 || max == 0 ? RangeScalar(x) : (min, max);
    }

    /// <summary><see cref="MakeQxQuantsScalar"/> with its 19 candidate scales (steps -9..9, step 0 being the first
    /// estimate) in the lanes of three vectors.</summary>
    [SkipLocalsInit]
    internal static float MakeQxQuantsVector256(int nmax, ReadOnlySpan<float> x, Span<sbyte> levels, ReadOnlySpan<float> weights)
    {
        const int steps = 9;
        const int candidates = 2 * steps + 1;
        const int groups = (candidates + Lanes - 1) / Lanes;
        var n = x.Length;
        var (max, amax) = SignedAbsMax(x);
        if (amax < GroupMaxEps)
        {
            levels[..n].Clear();
            return 0f;
        }

        // Per weight: w and w·x, the factors ggml multiplies each level by (w·x·l is (w·x)·l in C).
        Span<float> w = stackalloc float[MaxGroup];
        Span<float> wx = stackalloc float[MaxGroup];
        for (var i = 0; i < n; i++)
        {
            w[i] = weights.IsEmpty ? x[i] * x[i] : weights[i];
            wx[i] = w[i] * x[i];
        }

        // Candidate k tries step k - 9: iscale = -(nmax + 0.1·step) / max, lane by lane as ggml computes it (step 0 gives
        // exactly ggml's first estimate -nmax / max). Lanes past the 19th repeat step 0 and are never read.
        Span<float> iscales = stackalloc float[groups * Lanes];
        var nmaxV = Vector256.Create((float)nmax);
        var maxV = Vector256.Create(max);
        for (var g = 0; g < groups; g++)
        {
            var step = LaneIndices + Vector256.Create((float)(g * Lanes - steps));
            step = Vector256.ConditionalSelect(Vector256.GreaterThan(step, Vector256.Create((float)steps)), Vector256<float>.Zero, step);
            (-(nmaxV + Vector256.Create(0.1f) * step) / maxV).CopyTo(iscales[(g * Lanes)..]);
        }

        Span<float> sumLX = stackalloc float[groups * Lanes];
        Span<float> sumL2 = stackalloc float[groups * Lanes];
        var lowest = Vector256.Create(-nmax);
        var highest = Vector256.Create(nmax - 1);
        for (var g = 0; g < groups; g++)
        {
            var iscale = Vector256.Create<float>(iscales.Slice(g * Lanes, Lanes));
            Vector256<float> lx = Vector256<float>.Zero, l2 = Vector256<float>.Zero;
            for (var i = 0; i < n; i++)
            {
                var l = Vector256.ConvertToSingle(Clamp(NearestInt(iscale * Vector256.Create(x[i])), lowest, highest));
                lx += Vector256.Create(wx[i]) * l;
                l2 += Vector256.Create(w[i]) * l * l;
            }
            lx.CopyTo(sumLX.Slice(g * Lanes, Lanes));
            l2.CopyTo(sumL2.Slice(g * Lanes, Lanes));
        }

        // Replay ggml's decisions: first estimate, then steps -9..-1, 1..9 in that order.
        var chosen = steps;
        var scale = sumL2[steps] != 0 ? sumLX[steps] / sumL2[steps] : 0f;
        var best = scale * sumLX[steps];
        for (var k = 0; k < candidates; k++)
        {
            if (k == steps) continue;
            if (sumL2[k] > 0 && sumLX[k] * sumLX[k] > best * sumL2[k])
            {
                scale = sumLX[k] / sumL2[k];
                best = scale * sumLX[k];
                chosen = k;
            }
        }
        var chosenIscale = iscales[chosen];
        var i0 = 0;
        var offset = Vector256.Create(nmax);
        var chosenV = Vector256.Create(chosenIscale);
        ref var src = ref MemoryMarshal.GetReference(x);
        for (; i0 + 16 <= n; i0 += 16)
        {
            var a = Clamp(NearestInt(chosenV * Vector256.LoadUnsafe(ref src, (nuint)i0)), lowest, highest) + offset;
            var b = Clamp(NearestInt(chosenV * Vector256.LoadUnsafe(ref src, (nuint)i0 + 8)), lowest, highest) + offset;
            K.SuperBlockRounding.StoreBytes(a, b, MemoryMarshal.AsBytes(levels[i0..]));
        }
        for (; i0 < n; i0++)
        {
            levels[i0] = (sbyte)(nmax + Math.Clamp(NearestInt(chosenIscale * x[i0]), -nmax, nmax - 1));
        }
        return scale;
    }

    /// <summary>
    /// make_q3_quants on eight groups per vector, one group per lane, and <paramref name="sets"/> (1 or 2) such vectors
    /// side by side: a coordinate-descent step waits on the previous one (a division and a dozen dependent operations),
    /// so two independent sets of lanes in the same loop keep the core busy. Groups of a set are consecutive in x.
    /// </summary>
    [SkipLocalsInit]
    private static void MakeQ3QuantsLaneSets(int nmax, ReadOnlySpan<float> x, int n, int sets, Span<sbyte> levels, Span<float> scales)
    {
        Span<Vector256<float>> xs = stackalloc Vector256<float>[2 * MaxGroup];
        Span<Vector256<float>> ls = stackalloc Vector256<float>[2 * MaxGroup];
        var xsA = xs[..n];
        var lsA = ls[..n];
        var xsB = xs.Slice(MaxGroup, n);
        var lsB = ls.Slice(MaxGroup, n);
        var lowest = Vector256.Create(-nmax);
        var highest = Vector256.Create(nmax - 1);
        Transpose(x[..(Lanes * n)], n, xsA);
        var (allZeroA, sumlxA, suml2A) = Q3Start(nmax, xsA, lsA, lowest, highest);
        Vector256<float> allZeroB = default, sumlxB = default, suml2B = default;
        if (sets == 2)
        {
            Transpose(x.Slice(Lanes * n, Lanes * n), n, xsB);
            (allZeroB, sumlxB, suml2B) = Q3Start(nmax, xsB, lsB, lowest, highest);
        }

        // A lane takes part in a round only while its previous round changed something (ggml breaks out otherwise).
        var activeA = ~allZeroA;
        var activeB = sets == 2 ? ~allZeroB : Vector256<float>.Zero;
        for (var round = 0; round < 5 && Vector256.ExtractMostSignificantBits(activeA | activeB) != 0; round++)
        {
            Vector256<float> changedA = Vector256<float>.Zero, changedB = Vector256<float>.Zero;
            for (var i = 0; i < n; i++)
            {
                (lsA[i], sumlxA, suml2A, var acceptedA) = Q3Step(xsA[i], lsA[i], sumlxA, suml2A, activeA, lowest, highest);
                changedA |= acceptedA;
                if (sets == 2)
                {
                    (lsB[i], sumlxB, suml2B, var acceptedB) = Q3Step(xsB[i], lsB[i], sumlxB, suml2B, activeB, lowest, highest);
                    changedB |= acceptedB;
                }
            }
            activeA &= changedA;
            activeB &= changedB;
        }

        Q3Finish(nmax, lsA, allZeroA, sumlxA, suml2A, levels[..(Lanes * n)], scales[..Lanes]);
        if (sets == 2) Q3Finish(nmax, lsB, allZeroB, sumlxB, suml2B, levels.Slice(Lanes * n, Lanes * n), scales.Slice(Lanes, Lanes));
    }

    /// <summary>make_q3_quants up to its descent, per lane: the all-zero test, levels from -nmax/max, and the x²-weighted sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float> AllZero, Vector256<float> SumLX, Vector256<float> SumL2) Q3Start(int nmax,
        ReadOnlySpan<Vector256<float>> xs, Span<Vector256<float>> ls, Vector256<int> lowest, Vector256<int> highest)
    {
        var (max, amax) = SignedAbsMax(xs);
        var allZero = Vector256.LessThan(amax, Vector256.Create(GroupMaxEps));
        var iscale = Vector256.Create((float)-nmax) / max;
        Vector256<float> sumlx = Vector256<float>.Zero, suml2 = Vector256<float>.Zero;
        for (var i = 0; i < xs.Length; i++)
        {
            var l = Vector256.ConvertToSingle(Clamp(NearestInt(iscale * xs[i]), lowest, highest));
            ls[i] = l;
            var w = xs[i] * xs[i];
            sumlx += w * xs[i] * l;
            suml2 += w * l * l;
        }
        return (allZero, sumlx, suml2);
    }

    /// <summary>One coordinate-descent step of make_q3_quants on weight xi, per lane: try the level that best fits the
    /// others' current scale and keep it when it lowers the error. Lanes outside <paramref name="active"/> keep theirs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float> Level, Vector256<float> SumLX, Vector256<float> SumL2, Vector256<float> Accepted) Q3Step(
        Vector256<float> xi, Vector256<float> li, Vector256<float> sumlx, Vector256<float> suml2, Vector256<float> active,
        Vector256<int> lowest, Vector256<int> highest)
    {
        var w = xi * xi;
        var slx = sumlx - w * xi * li;
        var sl2 = suml2 - w * li * li;
        var newL = Vector256.ConvertToSingle(Clamp(NearestInt(xi * sl2 / slx), lowest, highest));
        var slxNew = slx + w * xi * newL;
        var sl2New = sl2 + w * newL * newL;
        var accept = active
                     & Vector256.GreaterThan(slx, Vector256<float>.Zero)
                     & ~Vector256.Equals(newL, li)
                     & Vector256.GreaterThan(sl2New, Vector256<float>.Zero)
                     & Vector256.GreaterThan(slxNew * slxNew * suml2, sumlx * sumlx * sl2New);
        return (Vector256.ConditionalSelect(accept, newL, li), Vector256.ConditionalSelect(accept, slxNew, sumlx),
            Vector256.ConditionalSelect(accept, sl2New, suml2), accept);
    }

    /// <summary>make_q3_quants' result per lane: levels + nmax and sumlx/suml2 (zeros for all-zero groups).</summary>
    private static void Q3Finish(int nmax, ReadOnlySpan<Vector256<float>> ls, Vector256<float> allZero, Vector256<float> sumlx,
        Vector256<float> suml2, Span<sbyte> levels, Span<float> scales)
    {
        var n = ls.Length;
        var scale = Vector256.ConditionalSelect(Vector256.GreaterThan(suml2, Vector256<float>.Zero), sumlx / suml2, Vector256<float>.Zero);
        Vector256.ConditionalSelect(allZero, Vector256<float>.Zero, scale).CopyTo(scales);
        var offset = Vector256.Create((float)nmax);
        for (var i = 0; i < n; i++)
        {
            var stored = Vector256.ConditionalSelect(allZero, Vector256<float>.Zero, ls[i] + offset);
            for (var lane = 0; lane < Lanes; lane++) levels[lane * n + i] = (sbyte)stored.GetElement(lane);
        }
    }

    /// <summary><see cref="SignedAbsMaxScalar"/> in every lane: per lane, the first value of largest magnitude and that magnitude.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float> Max, Vector256<float> AbsMax) SignedAbsMax(ReadOnlySpan<Vector256<float>> xs)
    {
        Vector256<float> max = Vector256<float>.Zero, amax = Vector256<float>.Zero;
        foreach (var x in xs)
        {
            var ax = Vector256.Abs(x);
            var larger = Vector256.GreaterThan(ax, amax);
            amax = Vector256.ConditionalSelect(larger, ax, amax);
            max = Vector256.ConditionalSelect(larger, x, max);
        }
        return (max, amax);
    }

    /// <summary>Eight groups of <paramref name="n"/> consecutive values → n vectors, vector i holding value i of each group.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose(ReadOnlySpan<float> groups, int n, Span<Vector256<float>> lanes)
    {
        ref var src = ref MemoryMarshal.GetReference(groups);
        for (var i = 0; i < n; i++)
        {
            lanes[i] = Vector256.Create(
                Unsafe.Add(ref src, i), Unsafe.Add(ref src, n + i), Unsafe.Add(ref src, 2 * n + i), Unsafe.Add(ref src, 3 * n + i),
                Unsafe.Add(ref src, 4 * n + i), Unsafe.Add(ref src, 5 * n + i), Unsafe.Add(ref src, 6 * n + i), Unsafe.Add(ref src, 7 * n + i));
        }
    }

    /// <summary>
    /// make_qkx2_quants / make_qkx3_quants on eight groups at once, one group per lane. Each lane runs ggml's whole
    /// sequential search (first estimate, then every step with the min of the candidates it took so far), so no
    /// speculation is needed; levels are recomputed at the end from the taken candidate's iscale and the min it used.
    /// </summary>
    [SkipLocalsInit]
    private static void MakeAsymmetricEightGroups(int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, int n,
        Span<byte> levels, Span<float> scales, Span<float> negatedMins, float rmin, float rdelta, int nstep, bool useMad,
        bool emptyRangeIncludesInverted)
    {
        Span<Vector256<float>> xs = stackalloc Vector256<float>[MaxGroup];
        Span<Vector256<float>> ws = stackalloc Vector256<float>[MaxGroup];
        Span<Vector256<float>> trial = stackalloc Vector256<float>[MaxGroup];
        Transpose(x, n, xs);
        Transpose(weights, n, ws);

        var zeroF = Vector256<float>.Zero;
        var min = xs[0];
        var max = xs[0];
        var sumW = ws[0];
        var sumX = sumW * xs[0];
        for (var i = 1; i < n; i++)
        {
            min = Vector256.ConditionalSelect(Vector256.LessThan(xs[i], min), xs[i], min);
            max = Vector256.ConditionalSelect(Vector256.GreaterThan(xs[i], max), xs[i], max);
            sumW += ws[i];
            sumX += ws[i] * xs[i];
        }
        min = Vector256.ConditionalSelect(Vector256.GreaterThan(min, zeroF), zeroF, min);
        var empty = emptyRangeIncludesInverted ? Vector256.LessThanOrEqual(max, min) : Vector256.Equals(max, min);
        var emptyMin = min; // what ggml returns for an empty range; the lane's search below is garbage and discarded

        var zero = Vector256<int>.Zero;
        var highest = Vector256.Create(nmax);
        var nmaxF = Vector256.Create((float)nmax);
        var bestIscale = nmaxF / (max - min);
        var scale = Vector256.Create(1f) / bestIscale;
        var bestShift = min;
        var bestError = zeroF;
        for (var i = 0; i < n; i++)
        {
            var l = Vector256.ConvertToSingle(Clamp(NearestInt(bestIscale * (xs[i] - min)), zero, highest));
            var diff = scale * l + min - xs[i];
            diff = useMad ? Vector256.Abs(diff) : diff * diff;
            bestError += ws[i] * diff;
        }

        var stepCount = nstep < 1 ? 0 : nstep + 1;
        for (var step = 0; step < stepCount; step++)
        {
            var iscale = (Vector256.Create(rmin + rdelta * step) + nmaxF) / (max - min);
            Vector256<float> sumL = zeroF, sumL2 = zeroF, sumXL = zeroF;
            for (var i = 0; i < n; i++)
            {
                var l = Vector256.ConvertToSingle(Clamp(NearestInt(iscale * (xs[i] - min)), zero, highest));
                trial[i] = l;
                var wl = ws[i] * l;
                sumL += wl;
                sumL2 += wl * l;
                sumXL += wl * xs[i];
            }
            var det = sumW * sumL2 - sumL * sumL;
            var trialScale = (sumW * sumXL - sumX * sumL) / det;
            var trialMin = (sumL2 * sumX - sumL * sumXL) / det;
            var positive = Vector256.GreaterThan(trialMin, zeroF);
            trialMin = Vector256.ConditionalSelect(positive, zeroF, trialMin);
            trialScale = Vector256.ConditionalSelect(positive, sumXL / sumL2, trialScale);
            var error = zeroF;
            for (var i = 0; i < n; i++)
            {
                var diff = trialScale * trial[i] + trialMin - xs[i];
                diff = useMad ? Vector256.Abs(diff) : diff * diff;
                error += ws[i] * diff;
            }
            var take = Vector256.GreaterThan(det, zeroF) & Vector256.LessThan(error, bestError);
            bestError = Vector256.ConditionalSelect(take, error, bestError);
            scale = Vector256.ConditionalSelect(take, trialScale, scale);
            bestIscale = Vector256.ConditionalSelect(take, iscale, bestIscale);
            bestShift = Vector256.ConditionalSelect(take, min, bestShift);
            min = Vector256.ConditionalSelect(take, trialMin, min);
        }

        Vector256.ConditionalSelect(empty, zeroF, scale).CopyTo(scales);
        (-Vector256.ConditionalSelect(empty, emptyMin, min)).CopyTo(negatedMins);
        var emptyInt = empty.AsInt32();
        Span<int> chosen = stackalloc int[Lanes];
        for (var i = 0; i < n; i++)
        {
            var l = Clamp(NearestInt(bestIscale * (xs[i] - bestShift)), zero, highest);
            Vector256.ConditionalSelect(emptyInt, zero, l).CopyTo(chosen);
            for (var lane = 0; lane < Lanes; lane++) levels[lane * n + i] = (byte)chosen[lane];
        }
    }

    /// <summary>
    /// make_qx_quants (rmse_type 1) on eight groups at once, one group per lane: each lane tries ggml's 19 scales in
    /// ggml's order and keeps its own best; the levels are recomputed at the end from the iscale that won.
    /// </summary>
    [SkipLocalsInit]
    private static void MakeQxQuantsEightGroups(int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, int n,
        Span<sbyte> levels, Span<float> scales)
    {
        Span<Vector256<float>> xs = stackalloc Vector256<float>[MaxGroup];
        Span<Vector256<float>> ws = stackalloc Vector256<float>[MaxGroup];
        Span<Vector256<float>> wxs = stackalloc Vector256<float>[MaxGroup];
        Transpose(x, n, xs);
        if (weights.IsEmpty)
        {
            for (var i = 0; i < n; i++) ws[i] = xs[i] * xs[i];
        }
        else
        {
            Transpose(weights, n, ws);
        }
        for (var i = 0; i < n; i++) wxs[i] = ws[i] * xs[i];

        var (scale, bestIscale, allZero) = MakeQxTrialsEightGroups(nmax, xs[..n], ws[..n], wxs[..n]);
        scale.CopyTo(scales);
        var (lowest, highest) = (Vector256.Create(-nmax), Vector256.Create(nmax - 1));
        var allZeroInt = allZero.AsInt32();
        Span<int> chosen = stackalloc int[Lanes];
        for (var i = 0; i < n; i++)
        {
            var l = Clamp(NearestInt(bestIscale * xs[i]), lowest, highest) - lowest;
            Vector256.ConditionalSelect(allZeroInt, Vector256<int>.Zero, l).CopyTo(chosen);
            for (var lane = 0; lane < Lanes; lane++) levels[lane * n + i] = (sbyte)chosen[lane];
        }
    }

    /// <summary>
    /// make_qx_quants' trials on eight transposed groups (vector i holds value i of each group; <paramref name="wxs"/> =
    /// w·x): per lane, the scale of the best of ggml's 19 trials (0 for an all-zero lane, below GROUP_MAX_EPS), the
    /// inverse scale that trial rounded with (level = clamp(nearest_int(inverse·x), −nmax, nmax − 1)), and the all-zero
    /// mask. Shared by the codec and by the optimal path's lane start of Q5_0 (BlockLaneSearch), which must reproduce the
    /// codec's encoding bit for bit.
    /// </summary>
    internal static (Vector256<float> Scale, Vector256<float> Inverse, Vector256<float> AllZero) MakeQxTrialsEightGroups(int nmax,
        ReadOnlySpan<Vector256<float>> xs, ReadOnlySpan<Vector256<float>> ws, ReadOnlySpan<Vector256<float>> wxs)
    {
        var zeroF = Vector256<float>.Zero;
        var (max, amax) = SignedAbsMax(xs);
        var allZero = Vector256.LessThan(amax, Vector256.Create(GroupMaxEps));

        var lowest = Vector256.Create(-nmax);
        var highest = Vector256.Create(nmax - 1);
        var nmaxF = Vector256.Create((float)nmax);
        var scale = zeroF;
        var best = zeroF;
        var bestIscale = zeroF;
        for (var step = 0; step <= 18; step++)
        {
            // ggml evaluates its first estimate (-nmax/max) first, then steps -9..-1 and 1..9.
            var tried = step == 0 ? 0 : step <= 9 ? step - 10 : step - 9;
            var iscale = step == 0 ? Vector256.Create((float)-nmax) / max : -(nmaxF + Vector256.Create(0.1f * tried)) / max;
            Vector256<float> sumlx = zeroF, suml2 = zeroF;
            for (var i = 0; i < xs.Length; i++)
            {
                var l = Vector256.ConvertToSingle(Clamp(NearestInt(iscale * xs[i]), lowest, highest));
                sumlx += wxs[i] * l;
                suml2 += ws[i] * l * l;
            }
            if (step == 0)
            {
                scale = Vector256.ConditionalSelect(Vector256.Equals(suml2, zeroF), zeroF, sumlx / suml2);
                best = scale * sumlx;
                bestIscale = iscale;
                continue;
            }
            var take = Vector256.GreaterThan(suml2, zeroF) & Vector256.GreaterThan(sumlx * sumlx, best * suml2);
            var trialScale = sumlx / suml2;
            scale = Vector256.ConditionalSelect(take, trialScale, scale);
            best = Vector256.ConditionalSelect(take, trialScale * sumlx, best);
            bestIscale = Vector256.ConditionalSelect(take, iscale, bestIscale);
        }
        return (Vector256.ConditionalSelect(allZero, zeroF, scale), bestIscale, allZero);
    }
}
