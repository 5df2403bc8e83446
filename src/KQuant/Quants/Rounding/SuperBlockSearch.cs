using System.Numerics;
using System.Runtime.CompilerServices;

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

    /// <summary>The lowest level when the levels are the consecutive integers lowest, lowest + 1, … (every K-quant; not
    /// IQ4's grid): nearest levels are then computed by rounding, not by comparisons with the midpoints.</summary>
    public int? LinearLowest { get; } = IsLinear(Levels) ? (int)Levels[0] : null;

    /// <summary>Midpoints between consecutive levels: a value above Midpoints[k] is nearer to level k + 1 than to level k.</summary>
    public float[] Midpoints { get; } = Levels.Zip(Levels.Skip(1), (a, b) => (a + b) / 2).ToArray();

    private static bool IsLinear(float[] levels)
    {
        for (var i = 0; i < levels.Length; i++)
        {
            if (levels[i] != levels[0] + i || levels[i] != MathF.Round(levels[i])) return false;
        }
        return true;
    }
}

/// <summary>One super-block's encoding, unpacked: a level index per weight, integer scale (and min) per sub-block, and the
/// super-scales as the decoder reads them (fp16 values).</summary>
internal ref struct SuperBlockState(Span<int> indices, Span<int> scales, Span<int> mins)
{
    public readonly Span<int> Indices = indices;
    public readonly Span<int> Scales = scales;
    public readonly Span<int> Mins = mins;
    public float D;
    public float DMin;
}

/// <summary>
/// The optimal path of the super-block formats (Q2_K–Q6_K, IQ4_XS): alternating minimisation of the weighted error
/// Σ w·(y − x)², each step exact for the variables it changes, so the error never grows:
/// <list type="number">
/// <item>free sub-block scales (and offsets): from the reference encoding, least-squares scale (and offset) for the levels,
/// then the nearest levels for that scale, a few times (Lloyd iterations);</item>
/// <item>the sub-block scales quantized to their integers under a few fp16 super-scales (the reference one, max/high and,
/// for signed scales, max/low), each scored after one rounding;</item>
/// <item>from the best of those: the least-squares super-scales (D, Dmin) for the fixed integers, the best integer scale
/// (and min) of each sub-block among the neighbours of its least-squares value, and the nearest levels for the stored
/// scales, repeated, keeping the lowest-error encoding seen (the reference's included).</item>
/// </list>
/// The sums of every step come from one vectorised pass per sub-block (x, w and the level values), and errors from the
/// quadratic form of those sums, so no step re-reads the block more than once. This replaced a quant-step search per
/// sub-block (ik_llama.cpp PR 295): a similar weighted error at 3–5× this one's cost, and a higher KLD on most recipes
/// (src/KQuant/Quants/README.md).
/// </summary>
[SkipLocalsInit]
internal static class SuperBlockSearch
{
    /// <summary>Rounds at the stored scales: the candidates' first, then refinements (super-scales, integer scales, levels) of the best.</summary>
    private const int StoredRounds = 3;

    private const int MaxSubBlocks = 16;

    /// <summary>The codecs' form of <see cref="Improve(SuperBlockSpec, ReadOnlySpan{float}, ReadOnlySpan{float}, ref SuperBlockState)"/>:
    /// level indices as bytes, the integer scales and mins (empty for type-0 formats), the fp16 super-scales; all rewritten with the best encoding.</summary>
    public static void Improve(SuperBlockSpec spec, ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<byte> levels, Span<int> scales,
        Span<int> mins, ref Half d, ref Half dmin)
    {
        Span<int> indices = stackalloc int[x.Length];
        for (var i = 0; i < indices.Length; i++) indices[i] = levels[i];
        Span<int> noMins = stackalloc int[scales.Length]; // type-0 formats pass none: all zero
        if (mins.IsEmpty) noMins.Clear();
        var state = new SuperBlockState(indices, scales, mins.IsEmpty ? noMins : mins) { D = (float)d, DMin = (float)dmin };
        Improve(spec, x, w, ref state);
        for (var i = 0; i < indices.Length; i++) levels[i] = (byte)indices[i];
        d = GgmlFp16.FromSingle(state.D);
        dmin = GgmlFp16.FromSingle(state.DMin);
    }

    public static void Improve(SuperBlockSpec spec, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ref SuperBlockState state)
    {
        var n = x.Length;
        var subBlocks = n / spec.SubBlock;
        Span<float> t = stackalloc float[n];
        Span<int> bestScales = stackalloc int[subBlocks];
        Span<int> bestMins = stackalloc int[subBlocks];
        Span<SubBlockSums> sums = stackalloc SubBlockSums[subBlocks];
        for (var j = 0; j < subBlocks; j++) sums[j] = SubBlockSums.OfData(x, w, j * spec.SubBlock, spec.SubBlock);

        // The reference encoding is the first candidate.
        for (var i = 0; i < n; i++) t[i] = spec.Levels[state.Indices[i]];
        AccumulateLevels(spec, x, w, t, sums);
        // The best encoding is kept as its scales: its levels are the nearest for them (every candidate is scored right
        // after rounding), so they are recomputed once at the end, unless the reference (whose levels may not be) wins.
        var bestError = StoredError(spec, sums, state);
        var bestIsReference = true;
        state.Scales.CopyTo(bestScales);
        state.Mins.CopyTo(bestMins);
        var (bestD, bestDMin) = (state.D, state.DMin);

        // 1. Free scales (s) and offsets (o, x ≈ s·T + o), by Lloyd iterations from the reference levels.
        Span<float> scales = stackalloc float[subBlocks];
        Span<float> offsets = stackalloc float[subBlocks];
        Span<double> freeErrors = stackalloc double[subBlocks];
        Span<float> bestScalesFree = stackalloc float[subBlocks];
        Span<float> bestOffsetsFree = stackalloc float[subBlocks];
        for (var j = 0; j < subBlocks; j++) freeErrors[j] = double.PositiveInfinity;
        // A second chain from another start: signed scales with asymmetric levels (Q3_K's −4..3, IQ4's grid) fit a
        // sub-block differently with either sign, so the reference scale negated; the affine formats, the sub-block's
        // range [min(x, 0), max(x)] spread over the levels.
        var starts = spec.Affine || (spec.ScaleLow < 0 && spec.Levels[0] != -spec.Levels[^1]) ? 2 : 1;
        for (var start = 0; start < starts; start++)
        {
            for (var j = 0; j < subBlocks; j++)
            {
                (scales[j], offsets[j]) = (state.D * state.Scales[j], -state.DMin * state.Mins[j]);
                if (start == 0) continue;
                if (spec.Affine)
                {
                    var low = Math.Min(sums[j].Min, 0f);
                    (scales[j], offsets[j]) = ((sums[j].Max - low) / (spec.Levels.Length - 1), low);
                }
                else scales[j] = -scales[j];
                if (scales[j] != 0) RoundSubBlock(spec, x, t, default, j, scales[j], offsets[j]);
            }
            if (start > 0) AccumulateLevels(spec, x, w, t, sums);
            for (var round = 0; round < spec.FreeRounds; round++)
            {
                for (var j = 0; j < subBlocks; j++)
                {
                    var (s, o) = sums[j].Fit(spec.Affine);
                    if (!(s > 0 || (spec.ScaleLow < 0 && s < 0))) continue;
                    var error = sums[j].Error(s, o);
                    if (error < freeErrors[j]) (freeErrors[j], bestScalesFree[j], bestOffsetsFree[j]) = (error, (float)s, (float)o);
                    (scales[j], offsets[j]) = ((float)s, (float)o);
                }
                if (round + 1 == spec.FreeRounds) break;
                for (var j = 0; j < subBlocks; j++)
                {
                    if (scales[j] != 0) RoundSubBlock(spec, x, t, default, j, scales[j], offsets[j]);
                }
                AccumulateLevels(spec, x, w, t, sums);
            }
        }
        for (var j = 0; j < subBlocks; j++)
        {
            if (double.IsFinite(freeErrors[j])) (scales[j], offsets[j]) = (bestScalesFree[j], bestOffsetsFree[j]);
            else (scales[j], offsets[j]) = (state.D * state.Scales[j], -state.DMin * state.Mins[j]);
        }

        // 2. Super-scale candidates for the integer scales.
        float maxAbs = 0, signedMax = 0, maxMin = 0;
        for (var j = 0; j < subBlocks; j++)
        {
            if (MathF.Abs(scales[j]) > maxAbs) (maxAbs, signedMax) = (MathF.Abs(scales[j]), scales[j]);
            maxMin = Math.Max(maxMin, -offsets[j]);
        }
        var minScale = spec.Affine && maxMin > 0 ? maxMin / spec.MinHigh : state.DMin;
        Span<float> superScales = stackalloc float[3];
        superScales[0] = state.D;
        superScales[1] = spec.ScaleLow < 0 ? signedMax / spec.ScaleHigh : maxAbs / spec.ScaleHigh;
        superScales[2] = spec.ScaleLow < 0 ? signedMax / spec.ScaleLow : 0;
        var minValue = spec.Affine ? Fp16Value(minScale) : 0;
        var bestCandidate = -1;
        var bestCandidateError = double.PositiveInfinity;
        for (var candidate = 0; candidate < superScales.Length; candidate++)
        {
            var dValue = Fp16Value(superScales[candidate]);
            if (dValue == 0 || !float.IsFinite(dValue)) continue;
            var error = ScoreCandidate(spec, x, w, t, sums, scales, offsets, dValue, minValue, ref state);
            if (error < bestCandidateError) (bestCandidate, bestCandidateError) = (candidate, error);
            Keep(error, state, ref bestError, ref bestIsReference, bestScales, bestMins, ref bestD, ref bestDMin);
        }

        // 3. Alternate at the stored scales, from the best candidate.
        if (bestCandidate >= 0)
        {
            ScoreCandidate(spec, x, w, t, sums, scales, offsets, Fp16Value(superScales[bestCandidate]), minValue, ref state);
            for (var round = 1; round < StoredRounds; round++)
            {
                if (!RefitSuperScales(spec, sums, ref state)) break;
                ChooseIntegerScales(spec, sums, ref state);
                RoundToStoredScales(spec, x, t, default, state);
                AccumulateLevels(spec, x, w, t, sums);
                Keep(StoredError(spec, sums, state), state, ref bestError, ref bestIsReference, bestScales, bestMins, ref bestD, ref bestDMin);
            }
        }
        bestScales.CopyTo(state.Scales);
        bestMins.CopyTo(state.Mins);
        (state.D, state.DMin) = (bestD, bestDMin);
        // The reference's levels were never overwritten; any other winner's are the nearest for its stored scales.
        if (!bestIsReference) RoundToStoredScales(spec, x, t, state.Indices, state);
    }

    /// <summary>Stores the free scales under super-scales (<paramref name="d"/>, <paramref name="dmin"/>), rounds the levels
    /// for them and returns the weighted error; the sums are left for those levels.</summary>
    private static double ScoreCandidate(SuperBlockSpec spec, ReadOnlySpan<float> x, ReadOnlySpan<float> w, scoped Span<float> t,
        scoped Span<SubBlockSums> sums, scoped ReadOnlySpan<float> scales, scoped ReadOnlySpan<float> offsets, float d, float dmin, ref SuperBlockState state)
    {
        state.D = d;
        state.DMin = dmin;
        for (var j = 0; j < scales.Length; j++)
        {
            state.Scales[j] = Math.Clamp((int)Math.Clamp(MathF.Round(scales[j] / d), -1e6f, 1e6f), spec.ScaleLow, spec.ScaleHigh);
            state.Mins[j] = spec.Affine && dmin != 0 ? Math.Clamp((int)Math.Clamp(MathF.Round(-offsets[j] / dmin), -1e6f, 1e6f), 0, spec.MinHigh) : 0;
        }
        RoundToStoredScales(spec, x, t, default, state);
        AccumulateLevels(spec, x, w, t, sums);
        return StoredError(spec, sums, state);
    }

    private static void Keep(double error, in SuperBlockState state, ref double bestError, ref bool bestIsReference, Span<int> bestScales,
        Span<int> bestMins, ref float bestD, ref float bestDMin)
    {
        if (!(error < bestError)) return;
        bestError = error;
        bestIsReference = false;
        state.Scales.CopyTo(bestScales);
        state.Mins.CopyTo(bestMins);
        (bestD, bestDMin) = (state.D, state.DMin);
    }

    /// <summary>Per sub-block weighted sums: the data's (fixed) and the current levels'.</summary>
    private struct SubBlockSums
    {
        public double W, X, XX; // Σw, Σw·x, Σw·x²
        public double T, TT, XT; // Σw·t, Σw·t², Σw·x·t
        public float Min, Max; // of x

        public static SubBlockSums OfData(ReadOnlySpan<float> x, ReadOnlySpan<float> w, int start, int length)
        {
            Vector<float> sw = default, sx = default, sxx = default;
            Vector<float> min = new(float.MaxValue), max = new(float.MinValue);
            for (var i = start; i < start + length; i += Vector<float>.Count)
            {
                var xv = new Vector<float>(x[i..]);
                var wv = new Vector<float>(w[i..]);
                var wx = wv * xv;
                sw += wv;
                sx += wx;
                sxx += wx * xv;
                min = Vector.Min(min, xv);
                max = Vector.Max(max, xv);
            }
            float lowest = float.MaxValue, highest = float.MinValue;
            for (var k = 0; k < Vector<float>.Count; k++) (lowest, highest) = (Math.Min(lowest, min[k]), Math.Max(highest, max[k]));
            return new SubBlockSums { W = Vector.Sum(sw), X = Vector.Sum(sx), XX = Vector.Sum(sxx), Min = lowest, Max = highest };
        }

        /// <summary>Least-squares scale and offset (type-0: offset 0). The affine formats store −Dmin·m with m ≥ 0 under a
        /// positive Dmin, so a positive offset is replaced by the best fit with offset 0.</summary>
        public readonly (double Scale, double Offset) Fit(bool affine)
        {
            if (affine)
            {
                var det = W * TT - T * T;
                if (det > 1e-12 * W * TT)
                {
                    var s = (W * XT - T * X) / det;
                    var o = (TT * X - T * XT) / det;
                    if (o <= 0) return (s, o);
                }
            }
            return TT > 0 ? (XT / TT, 0) : (0, 0);
        }

        /// <summary>Σ w·(s·t + o − x)² from the sums.</summary>
        public readonly double Error(double s, double o) =>
            XX - 2 * s * XT - 2 * o * X + s * s * TT + 2 * s * o * T + o * o * W;
    }

    /// <summary>Σw·t, Σw·t², Σw·x·t of every sub-block for the current level values <paramref name="t"/>.</summary>
    private static void AccumulateLevels(SuperBlockSpec spec, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> t,
        Span<SubBlockSums> sums)
    {
        for (var j = 0; j < sums.Length; j++)
        {
            Vector<float> st = default, stt = default, sxt = default;
            for (var i = j * spec.SubBlock; i < (j + 1) * spec.SubBlock; i += Vector<float>.Count)
            {
                var tv = new Vector<float>(t[i..]);
                var wt = new Vector<float>(w[i..]) * tv;
                st += wt;
                stt += wt * tv;
                sxt += wt * new Vector<float>(x[i..]);
            }
            sums[j].T = Vector.Sum(st);
            sums[j].TT = Vector.Sum(stt);
            sums[j].XT = Vector.Sum(sxt);
        }
    }

    /// <summary>The weighted error of the stored encoding, from the sums of its current levels.</summary>
    private static double StoredError(SuperBlockSpec spec, ReadOnlySpan<SubBlockSums> sums, in SuperBlockState state)
    {
        double total = 0;
        for (var j = 0; j < sums.Length; j++)
        {
            total += sums[j].Error((double)state.D * state.Scales[j], spec.Affine ? -(double)state.DMin * state.Mins[j] : 0);
        }
        return double.IsNaN(total) ? double.PositiveInfinity : total;
    }

    /// <summary>The nearest levels for the stored scales (their indices too when <paramref name="indices"/> is not empty).</summary>
    private static void RoundToStoredScales(SuperBlockSpec spec, ReadOnlySpan<float> x, Span<float> t, Span<int> indices, in SuperBlockState state)
    {
        for (var j = 0; j < state.Scales.Length; j++)
        {
            var scale = state.D * state.Scales[j];
            if (scale != 0) RoundSubBlock(spec, x, t, indices, j, scale, -state.DMin * state.Mins[j]);
        }
    }

    /// <summary>The nearest level to (x − offset)/scale for every weight of sub-block <paramref name="j"/>: its index and value.</summary>
    private static void RoundSubBlock(SuperBlockSpec spec, ReadOnlySpan<float> x, Span<float> t, Span<int> indices, int j, float scale,
        float offset)
    {
        // A subnormal scale's inverse overflows: those weights keep their levels.
        if (!float.IsFinite(1 / scale)) return;
        var inverse = new Vector<float>(1 / scale);
        var offsetVector = new Vector<float>(offset);
        var end = (j + 1) * spec.SubBlock;
        if (spec.LinearLowest is { } lowest)
        {
            var low = new Vector<float>(lowest);
            var high = new Vector<float>(lowest + spec.Levels.Length - 1);
            for (var i = j * spec.SubBlock; i < end; i += Vector<float>.Count)
            {
                var v = (new Vector<float>(x[i..]) - offsetVector) * inverse;
                var level = Vector.Min(Vector.Max(Vector.Round(v), low), high);
                level.CopyTo(t[i..]);
                if (!indices.IsEmpty) (Vector.ConvertToInt32(level) - new Vector<int>(lowest)).CopyTo(indices[i..]);
            }
            return;
        }
        var first = new Vector<float>(spec.Levels[0]);
        for (var i = j * spec.SubBlock; i < end; i += Vector<float>.Count)
        {
            var v = (new Vector<float>(x[i..]) - offsetVector) * inverse;
            var index = Vector<int>.Zero;
            var value = first;
            for (var k = 0; k < spec.Midpoints.Length; k++)
            {
                var above = Vector.GreaterThan(v, new Vector<float>(spec.Midpoints[k]));
                index -= above;
                value += Vector.ConditionalSelect(above, new Vector<float>(spec.Levels[k + 1] - spec.Levels[k]), Vector<float>.Zero);
            }
            value.CopyTo(t[i..]);
            if (!indices.IsEmpty) index.CopyTo(indices[i..]);
        }
    }

    /// <summary>Least-squares D (and Dmin) for the fixed integer scales, mins and levels: x ≈ D·(sc·T) − Dmin·m. False when
    /// the system is singular or the fit leaves the fp16 range.</summary>
    private static bool RefitSuperScales(SuperBlockSpec spec, scoped ReadOnlySpan<SubBlockSums> sums, ref SuperBlockState state)
    {
        double aa = 0, ab = 0, bb = 0, xa = 0, xb = 0;
        for (var j = 0; j < sums.Length; j++)
        {
            // a = sc·T and b = −m per weight, summed per sub-block.
            double sc = state.Scales[j], m = state.Mins[j];
            aa += sc * sc * sums[j].TT;
            ab -= sc * m * sums[j].T;
            bb += m * m * sums[j].W;
            xa += sc * sums[j].XT;
            xb -= m * sums[j].X;
        }
        double d, dmin;
        var det = aa * bb - ab * ab;
        if (spec.Affine && bb > 0 && det > 1e-12 * aa * bb)
        {
            d = (bb * xa - ab * xb) / det;
            dmin = (aa * xb - ab * xa) / det;
        }
        else if (aa > 0)
        {
            // Dmin kept: D alone for x − Dmin·b.
            dmin = spec.Affine ? state.DMin : 0;
            d = (xa - dmin * ab) / aa;
        }
        else return false;
        var dValue = Fp16Value((float)d);
        var dminValue = spec.Affine ? Fp16Value((float)dmin) : 0;
        if (!float.IsFinite(dValue) || !float.IsFinite(dminValue) || dValue == 0) return false;
        state.D = dValue;
        state.DMin = dminValue;
        return true;
    }

    /// <summary>For the current levels and super-scales, each sub-block's integer scale (and min) with the lowest error among
    /// the integers around its least-squares value.</summary>
    private static void ChooseIntegerScales(SuperBlockSpec spec, scoped ReadOnlySpan<SubBlockSums> sums, ref SuperBlockState state)
    {
        double d = state.D, dmin = state.DMin;
        for (var j = 0; j < sums.Length; j++)
        {
            var (s, o) = sums[j].Fit(spec.Affine);
            var scaleBase = (int)Math.Floor(s / d);
            var minBase = spec.Affine && dmin != 0 ? (int)Math.Floor(-o / dmin) : 0;
            var bestError = sums[j].Error(d * state.Scales[j], -dmin * state.Mins[j]);
            for (var ds = 0; ds <= 1; ds++)
            {
                var sc = Math.Clamp(scaleBase + ds, spec.ScaleLow, spec.ScaleHigh);
                for (var dm = 0; dm <= (spec.Affine ? 1 : 0); dm++)
                {
                    var m = spec.Affine ? Math.Clamp(minBase + dm, 0, spec.MinHigh) : 0;
                    var error = sums[j].Error(d * sc, -dmin * m);
                    if (error < bestError) (bestError, state.Scales[j], state.Mins[j]) = (error, sc, m);
                }
            }
        }
    }

    private static float Fp16Value(float value) => (float)GgmlFp16.FromSingle(value);
}
