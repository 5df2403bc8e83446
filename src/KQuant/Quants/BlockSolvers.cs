using System.Runtime.CompilerServices;

namespace KQuant.Quants;

/// <summary>
/// The rounding core shared by ggml's block formats: given a small group of weights, pick integer levels and a scale
/// (and for the "qkx" solvers an offset) that minimise a weighted error. Each method matches one static helper of
/// ggml/src/ggml-quants.c in llama.cpp v0.5.0 bit for bit: float arithmetic in the same order, no fused multiply-add,
/// the same comparisons (including how NaN falls through them).
/// </summary>
/// <remarks>
/// The <c>…Scalar</c> methods are written to be read next to ggml's. BlockSolvers.Vector256.cs has two kinds of SIMD
/// versions, each lane doing exactly ggml's scalar arithmetic in ggml's order, so the results are the same bits:
/// <list type="bullet">
/// <item>the <c>…ForGroups</c> methods put eight groups (sub-blocks) in the eight lanes and run ggml's sequential
/// search in every lane at once — the fast path the formats use;</item>
/// <item><see cref="MakeQxQuants"/> on a single group puts its 19 independent candidate scales in lanes and replays
/// ggml's choice among them in order.</item>
/// </list>
/// Groups are at most <see cref="MaxGroup"/> weights (ggml uses 8, 16 and 32). Levels go to caller-provided spans;
/// scratch is on the stack, so calls do not allocate. The solvers assume finite input (the row quantizer checks).
/// </remarks>
internal static partial class BlockSolvers
{
    /// <summary>Largest group the solvers accept (their scratch lives on the stack).</summary>
    public const int MaxGroup = 32;

    /// <summary>ggml's GROUP_MAX_EPS: a group whose largest magnitude is below this is treated as all zeros.</summary>
    public const float GroupMaxEps = 1e-15f;

    /// <summary>1.5·2²³: adding it to a float in [-2²², 2²²] leaves round-to-nearest-even(value) in the low mantissa bits.</summary>
    public const float RoundingMagic = 12582912f;

    /// <summary>
    /// ggml's nearest_int: rounds half to even by adding 1.5·2²³ and reading the low 23 mantissa bits back. Only
    /// |value| ≤ 2²² - 1 rounds correctly; ggml asserts that in debug builds only, so larger magnitudes, ±Inf and NaN
    /// return what the bit trick gives (e.g. 0 for NaN and -2²² for ±Inf), and we must return the same.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int NearestInt(float value)
    {
        var biased = value + RoundingMagic;
        return (BitConverter.SingleToInt32Bits(biased) & 0x007fffff) - 0x00400000;
    }

    /// <summary>
    /// ggml's make_qx_quants with rmse_type 1 (the only type the file formats use): symmetric levels in
    /// [-nmax, nmax-1], stored as level + nmax in <paramref name="levels"/>; tries 19 scales around nmax/max and keeps
    /// the one with the best weighted least-squares fit. <paramref name="weights"/> empty means ggml's qw == NULL,
    /// i.e. weights x². Returns the scale (0 for an all-zero group).
    /// </summary>
    public static float MakeQxQuants(int nmax, ReadOnlySpan<float> x, Span<sbyte> levels, ReadOnlySpan<float> weights)
    {
        CheckGroup(x.Length);
        return UseVector256 ? MakeQxQuantsVector256(nmax, x, levels, weights) : MakeQxQuantsScalar(nmax, x, levels, weights);
    }

    /// <summary>
    /// <see cref="MakeQxQuants"/> on consecutive groups of <paramref name="groupSize"/> weights (eight at a time in SIMD
    /// lanes where available). <paramref name="weights"/> is empty (x² weights) or one weight per value.
    /// </summary>
    public static void MakeQxQuantsForGroups(int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, int groupSize,
        Span<sbyte> levels, Span<float> scales)
    {
        CheckGroup(groupSize);
        var groupCount = x.Length / groupSize;
        var first = 0;
        if (UseVector256)
        {
            const int lanes = 8;
            for (; first + lanes <= groupCount; first += lanes)
            {
                var span = new Range(first * groupSize, (first + lanes) * groupSize);
                MakeQxQuantsEightGroups(nmax, x[span], weights.IsEmpty ? default : weights[span], groupSize, levels[span],
                    scales.Slice(first, lanes));
            }
        }
        for (; first < groupCount; first++)
        {
            var span = new Range(first * groupSize, (first + 1) * groupSize);
            scales[first] = MakeQxQuants(nmax, x[span], levels[span], weights.IsEmpty ? default : weights[span]);
        }
    }

    internal static float MakeQxQuantsScalar(int nmax, ReadOnlySpan<float> x, Span<sbyte> levels, ReadOnlySpan<float> weights)
    {
        var n = x.Length;
        var (max, amax) = SignedAbsMaxScalar(x);
        if (amax < GroupMaxEps)
        {
            levels[..n].Clear();
            return 0f;
        }
        var useSquares = weights.IsEmpty;
        var iscale = -nmax / max;
        float sumlx = 0, suml2 = 0;
        for (var i = 0; i < n; i++)
        {
            var l = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
            levels[i] = (sbyte)(l + nmax);
            var w = useSquares ? x[i] * x[i] : weights[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        var scale = suml2 != 0 ? sumlx / suml2 : 0f;
        var best = scale * sumlx;
        for (var step = -9; step <= 9; step++)
        {
            if (step == 0) continue;
            iscale = -(nmax + 0.1f * step) / max;
            sumlx = suml2 = 0;
            for (var i = 0; i < n; i++)
            {
                var l = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
                var w = useSquares ? x[i] * x[i] : weights[i];
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
            }
            if (suml2 > 0 && sumlx * sumlx > best * suml2)
            {
                for (var i = 0; i < n; i++)
                {
                    levels[i] = (sbyte)(nmax + Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1));
                }
                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }
        return scale;
    }

    /// <summary>
    /// ggml's make_q3_quants with do_rmse (its only use, Q3_K without importance): symmetric levels in [-nmax, nmax-1]
    /// from nmax/max, then up to five rounds of coordinate descent on the x²-weighted fit. Levels are stored + nmax.
    /// </summary>
    public static float MakeQ3Quants(int nmax, ReadOnlySpan<float> x, Span<sbyte> levels)
    {
        CheckGroup(x.Length);
        var n = x.Length;
        var (max, amax) = SignedAbsMaxScalar(x);
        if (amax < GroupMaxEps)
        {
            levels[..n].Clear();
            return 0f;
        }
        var iscale = -nmax / max;
        float sumlx = 0, suml2 = 0;
        for (var i = 0; i < n; i++)
        {
            var l = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
            levels[i] = (sbyte)l;
            var w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        for (var round = 0; round < 5; round++)
        {
            var changed = 0;
            for (var i = 0; i < n; i++)
            {
                var w = x[i] * x[i];
                var slx = sumlx - w * x[i] * levels[i];
                if (slx > 0)
                {
                    var sl2 = suml2 - w * levels[i] * levels[i];
                    var newL = Math.Clamp(NearestInt(x[i] * sl2 / slx), -nmax, nmax - 1);
                    if (newL != levels[i])
                    {
                        slx += w * x[i] * newL;
                        sl2 += w * newL * newL;
                        if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2)
                        {
                            levels[i] = (sbyte)newL;
                            sumlx = slx;
                            suml2 = sl2;
                            changed++;
                        }
                    }
                }
            }
            if (changed == 0) break;
        }
        for (var i = 0; i < n; i++) levels[i] += (sbyte)nmax;
        return suml2 > 0f ? sumlx / suml2 : 0f;
    }

    /// <summary>
    /// ggml's make_q3_quants (with do_rmse) on many groups at once: groups of <paramref name="groupSize"/> consecutive
    /// weights, eight groups per vector, each lane running one group's coordinate descent in lockstep (a lane stops
    /// changing once its own round changes nothing, as ggml's loop breaks). Writes levels (+ nmax) and one scale per group.
    /// </summary>
    public static void MakeQ3QuantsForGroups(int nmax, ReadOnlySpan<float> x, int groupSize, Span<sbyte> levels, Span<float> scales)
    {
        CheckGroup(groupSize);
        var groupCount = x.Length / groupSize;
        var first = 0;
        if (UseVector256)
        {
            const int lanes = 8;
            while (groupCount - first >= lanes)
            {
                var sets = groupCount - first >= 2 * lanes ? 2 : 1;
                var span = new Range(first * groupSize, (first + sets * lanes) * groupSize);
                MakeQ3QuantsLaneSets(nmax, x[span], groupSize, sets, levels[span], scales.Slice(first, sets * lanes));
                first += sets * lanes;
            }
        }
        for (; first < groupCount; first++)
        {
            scales[first] = MakeQ3Quants(nmax, x.Slice(first * groupSize, groupSize), levels.Slice(first * groupSize, groupSize));
        }
    }

    /// <summary>
    /// ggml's make_qkx2_quants: asymmetric levels in [0, nmax] with x ≈ scale·level - min. Starts from the min/max
    /// range, then tries nstep+1 scales (nmax + rmin + rdelta·step) and refits scale and min by weighted least squares,
    /// keeping the candidate with the smallest weighted error (absolute when <paramref name="useMad"/>, else squared).
    /// Returns the scale; <paramref name="negatedMin"/> gets -min (ggml's *the_min), which is ≥ 0.
    /// </summary>
    public static float MakeQkx2Quants(int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<byte> levels,
        out float negatedMin, float rmin, float rdelta, int nstep, bool useMad) =>
        MakeAsymmetric(nmax, x, weights, levels, out negatedMin, rmin, rdelta, nstep, useMad, emptyRangeIncludesInverted: false);

    /// <summary>
    /// ggml's make_qkx3_quants with explicit weights and squared error (how every format calls it): the same search
    /// as <see cref="MakeQkx2Quants"/>, but an empty range is detected with max ≤ min rather than max == min.
    /// </summary>
    public static float MakeQkx3Quants(int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<byte> levels,
        out float negatedMin, float rmin, float rdelta, int nstep) =>
        MakeAsymmetric(nmax, x, weights, levels, out negatedMin, rmin, rdelta, nstep, useMad: false, emptyRangeIncludesInverted: true);

    private static float MakeAsymmetric(int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<byte> levels,
        out float negatedMin, float rmin, float rdelta, int nstep, bool useMad, bool emptyRangeIncludesInverted)
    {
        var n = x.Length;
        CheckGroup(n);
        var (min, max, sumW, sumX) = RangeAndWeightedSums(x, weights);
        if (min > 0) min = 0;
        if (emptyRangeIncludesInverted ? max <= min : max == min)
        {
            levels[..n].Clear();
            negatedMin = -min;
            return 0f;
        }
        return FitAsymmetricScalar(nmax, x, weights, levels, out negatedMin, min, max, sumW, sumX, rmin, rdelta, nstep, useMad);
    }

    /// <summary>min and max of x (first wins on ties, as ggml's strict comparisons do), Σw and Σw·x left to right.</summary>
    internal static (float Min, float Max, float SumW, float SumX) RangeAndWeightedSums(ReadOnlySpan<float> x, ReadOnlySpan<float> weights)
    {
        var sumW = weights[0];
        var sumX = sumW * x[0];
        for (var i = 1; i < x.Length; i++)
        {
            var w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        var (min, max) = UseVector256 && x.Length % 8 == 0 ? RangeVector256(x) : RangeScalar(x);
        return (min, max, sumW, sumX);
    }

    internal static (float Min, float Max) RangeScalar(ReadOnlySpan<float> x)
    {
        float min = x[0], max = x[0];
        for (var i = 1; i < x.Length; i++)
        {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
        }
        return (min, max);
    }

    /// <summary>
    /// <see cref="MakeQkx2Quants"/> on consecutive groups of <paramref name="groupSize"/> weights (eight at a time in
    /// SIMD lanes where available): levels for every weight, one scale and one -min per group.
    /// </summary>
    public static void MakeQkx2QuantsForGroups(int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, int groupSize,
        Span<byte> levels, Span<float> scales, Span<float> negatedMins, float rmin, float rdelta, int nstep, bool useMad) =>
        MakeAsymmetricForGroups(nmax, x, weights, groupSize, levels, scales, negatedMins, rmin, rdelta, nstep, useMad, emptyRangeIncludesInverted: false);

    /// <summary><see cref="MakeQkx3Quants"/> on consecutive groups of <paramref name="groupSize"/> weights.</summary>
    public static void MakeQkx3QuantsForGroups(int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, int groupSize,
        Span<byte> levels, Span<float> scales, Span<float> negatedMins, float rmin, float rdelta, int nstep) =>
        MakeAsymmetricForGroups(nmax, x, weights, groupSize, levels, scales, negatedMins, rmin, rdelta, nstep, useMad: false, emptyRangeIncludesInverted: true);

    private static void MakeAsymmetricForGroups(int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, int groupSize,
        Span<byte> levels, Span<float> scales, Span<float> negatedMins, float rmin, float rdelta, int nstep, bool useMad,
        bool emptyRangeIncludesInverted)
    {
        CheckGroup(groupSize);
        var groupCount = x.Length / groupSize;
        var first = 0;
        if (UseVector256)
        {
            const int lanes = 8;
            for (; first + lanes <= groupCount; first += lanes)
            {
                var span = new Range(first * groupSize, (first + lanes) * groupSize);
                MakeAsymmetricEightGroups(nmax, x[span], weights[span], groupSize, levels[span], scales.Slice(first, lanes),
                    negatedMins.Slice(first, lanes), rmin, rdelta, nstep, useMad, emptyRangeIncludesInverted);
            }
        }
        for (; first < groupCount; first++)
        {
            var span = new Range(first * groupSize, (first + 1) * groupSize);
            scales[first] = MakeAsymmetric(nmax, x[span], weights[span], levels[span], out negatedMins[first], rmin, rdelta, nstep,
                useMad, emptyRangeIncludesInverted);
        }
    }

    /// <summary>The search shared by make_qkx2_quants and make_qkx3_quants once min, max, Σw and Σwx are known.</summary>
    internal static float FitAsymmetricScalar(int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<byte> levels,
        out float negatedMin, float min, float max, float sumW, float sumX, float rmin, float rdelta, int nstep, bool useMad)
    {
        var n = x.Length;
        Span<byte> trial = stackalloc byte[MaxGroup];
        var iscale = nmax / (max - min);
        var scale = 1 / iscale;
        float bestError = 0;
        for (var i = 0; i < n; i++)
        {
            var l = Math.Clamp(NearestInt(iscale * (x[i] - min)), 0, nmax);
            levels[i] = (byte)l;
            var diff = scale * l + min - x[i];
            diff = useMad ? MathF.Abs(diff) : diff * diff;
            bestError += weights[i] * diff;
        }
        if (nstep < 1)
        {
            negatedMin = -min;
            return scale;
        }
        for (var step = 0; step <= nstep; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (var i = 0; i < n; i++)
            {
                var l = Math.Clamp(NearestInt(iscale * (x[i] - min)), 0, nmax);
                trial[i] = (byte)l;
                var w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }
            var det = sumW * sumL2 - sumL * sumL;
            if (det > 0)
            {
                var trialScale = (sumW * sumXL - sumX * sumL) / det;
                var trialMin = (sumL2 * sumX - sumL * sumXL) / det;
                if (trialMin > 0)
                {
                    trialMin = 0;
                    trialScale = sumXL / sumL2;
                }
                float error = 0;
                for (var i = 0; i < n; i++)
                {
                    var diff = trialScale * trial[i] + trialMin - x[i];
                    diff = useMad ? MathF.Abs(diff) : diff * diff;
                    error += weights[i] * diff;
                }
                if (error < bestError)
                {
                    trial[..n].CopyTo(levels);
                    bestError = error;
                    scale = trialScale;
                    min = trialMin;
                }
            }
        }
        negatedMin = -min;
        return scale;
    }

    /// <summary>
    /// ggml's make_qp_quants: non-negative levels in [0, nmax] for non-negative values (the sub-block scales and mins
    /// of Q2_K/Q4_K/Q5_K under an importance matrix), weighted by <paramref name="weights"/>. Tries 9 scales, then up
    /// to five rounds of coordinate descent. Returns the scale.
    /// </summary>
    public static float MakeQpQuants(int nmax, ReadOnlySpan<float> x, Span<byte> levels, ReadOnlySpan<float> weights)
    {
        var n = x.Length;
        float max = 0;
        for (var i = 0; i < n; i++) max = max > x[i] ? max : x[i];
        if (max < GroupMaxEps)
        {
            levels[..n].Clear();
            return 0f;
        }
        var iscale = nmax / max;
        // ggml stores the unclamped nearest level in its uint8 buffer here; only the truncated byte is ever read back.
        for (var i = 0; i < n; i++) levels[i] = (byte)NearestInt(iscale * x[i]);
        var scale = 1 / iscale;
        float bestMse = 0;
        for (var i = 0; i < n; i++)
        {
            var diff = x[i] - scale * levels[i];
            bestMse += weights[i] * diff * diff;
        }
        for (var step = -4; step <= 4; step++)
        {
            if (step == 0) continue;
            var trialIscale = (0.1f * step + nmax) / max;
            var trialScale = 1 / trialIscale;
            float mse = 0;
            for (var i = 0; i < n; i++)
            {
                var l = Math.Min(nmax, NearestInt(trialIscale * x[i]));
                var diff = x[i] - trialScale * l;
                mse += weights[i] * diff * diff;
            }
            if (mse < bestMse)
            {
                bestMse = mse;
                iscale = trialIscale;
            }
        }
        float sumlx = 0, suml2 = 0;
        for (var i = 0; i < n; i++)
        {
            var l = Math.Min(nmax, NearestInt(iscale * x[i]));
            levels[i] = (byte)l;
            var w = weights[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        for (var round = 0; round < 5; round++)
        {
            var changed = 0;
            for (var i = 0; i < n; i++)
            {
                var w = weights[i];
                var slx = sumlx - w * x[i] * levels[i];
                var sl2 = suml2 - w * levels[i] * levels[i];
                if (slx > 0 && sl2 > 0)
                {
                    var newL = Math.Min(nmax, NearestInt(x[i] * sl2 / slx));
                    if (newL != levels[i])
                    {
                        slx += w * x[i] * newL;
                        sl2 += w * newL * newL;
                        if (slx * slx * suml2 > sumlx * sumlx * sl2)
                        {
                            levels[i] = (byte)newL;
                            sumlx = slx;
                            suml2 = sl2;
                            changed++;
                        }
                    }
                }
            }
            if (changed == 0) break;
        }
        return suml2 > 0f ? sumlx / suml2 : 0f;
    }

    /// <summary>True where the lane-parallel versions run (AVX2: they need 256-bit integer min/max).</summary>
    internal static bool UseVector256 => System.Runtime.Intrinsics.X86.Avx2.IsSupported;

    private static void CheckGroup(int n)
    {
        if (n is < 1 or > MaxGroup) throw new ArgumentOutOfRangeException(nameof(n), n, $"groups hold 1 to {MaxGroup} weights");
    }

    /// <summary>The first value of largest magnitude (ggml keeps the first on ties; NaN never wins) and that magnitude.</summary>
    internal static (float Max, float AbsMax) SignedAbsMax(ReadOnlySpan<float> x) =>
        UseVector256 && x.Length % 8 == 0 ? SignedAbsMaxVector256(x) : SignedAbsMaxScalar(x);

    internal static (float Max, float AbsMax) SignedAbsMaxScalar(ReadOnlySpan<float> x)
    {
        float max = 0, amax = 0;
        for (var i = 0; i < x.Length; i++)
        {
            var ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        return (max, amax);
    }
}
