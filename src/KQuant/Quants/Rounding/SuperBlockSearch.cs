namespace KQuant.Quants;

/// <summary>What the optimal path needs to know of a K-quant style super-block: sub-blocks of <see cref="SubBlock"/> weights,
/// each x ≈ (D·sc)·Levels[q] (− Dmin·m when <see cref="Affine"/>), with integer sub-block scales sc in
/// [<see cref="ScaleLow"/>, <see cref="ScaleHigh"/>] and mins m in [0, <see cref="MinHigh"/>] under fp16 D and Dmin.</summary>
internal sealed record SuperBlockSpec(int SubBlock, float[] Levels, bool Affine, int ScaleLow, int ScaleHigh, int MinHigh = 0)
{
    /// <summary>The lowest level when the levels are the consecutive integers lowest, lowest + 1, … (every K-quant; not
    /// IQ4's grid): nearest levels are then computed, not searched.</summary>
    public int? LinearLowest { get; } = IsLinear(Levels) ? (int)Levels[0] : null;

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

    /// <summary>Copies this encoding into <paramref name="other"/>'s storage and returns it with this one's super-scales.</summary>
    public readonly SuperBlockState CopyInto(SuperBlockState other)
    {
        Indices.CopyTo(other.Indices);
        Scales.CopyTo(other.Scales);
        Mins.CopyTo(other.Mins);
        other.D = D;
        other.DMin = DMin;
        return other;
    }
}

/// <summary>
/// The optimal path of the super-block formats (Q2_K–Q6_K, IQ4_XS). From the reference encoding: a quant-step search per
/// sub-block with its own free scale (and min); then the sub-block scales quantized under an fp16 super-scale (a few
/// choices of super-scale, including the reference one); then, as the error that matters is the dequantized one, every
/// quant re-rounded against the stored scales and the super-scales re-fitted by least squares for the fixed integers,
/// twice. Returns the encoding with the lowest weighted error seen, the reference's included.
/// </summary>
internal static class SuperBlockSearch
{
    private const int RefitRounds = 2;

    /// <summary>The codecs' form of <see cref="Improve(SuperBlockSpec, ReadOnlySpan{float}, ReadOnlySpan{float}, ref SuperBlockState)"/>:
    /// level indices as bytes, the integer scales and mins (empty for type-0 formats), the fp16 super-scales; all rewritten with the best encoding.</summary>
    public static void Improve(SuperBlockSpec spec, ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<byte> levels, Span<int> scales,
        Span<int> mins, ref Half d, ref Half dmin)
    {
        Span<int> indices = stackalloc int[x.Length];
        for (var i = 0; i < indices.Length; i++) indices[i] = levels[i];
        Span<int> noMins = stackalloc int[scales.Length]; // type-0 formats pass none: all zero
        var state = new SuperBlockState(indices, scales, mins.IsEmpty ? noMins : mins) { D = (float)d, DMin = (float)dmin };
        Improve(spec, x, w, ref state);
        for (var i = 0; i < indices.Length; i++) levels[i] = (byte)indices[i];
        d = GgmlFp16.FromSingle(state.D);
        dmin = GgmlFp16.FromSingle(state.DMin);
    }

    public static void Improve(SuperBlockSpec spec, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ref SuperBlockState state)
    {
        var subBlocks = x.Length / spec.SubBlock;
        Span<int> bestIndices = stackalloc int[x.Length];
        Span<int> bestScales = stackalloc int[subBlocks];
        Span<int> bestMins = stackalloc int[subBlocks];
        var best = state.CopyInto(new SuperBlockState(bestIndices, bestScales, bestMins));
        var bestError = Error(spec, x, w, best);

        // Free per-sub-block scales and mins from the step search, starting from the reference quants.
        Span<float> scales = stackalloc float[subBlocks];
        Span<float> mins = stackalloc float[subBlocks];
        for (var j = 0; j < subBlocks; j++)
        {
            var range = new Range(j * spec.SubBlock, (j + 1) * spec.SubBlock);
            if (spec.Affine)
            {
                var (s, o) = QuantStepSearch.RefineScaleOffset(x[range], w[range], spec.Levels, state.Indices[range]);
                (scales[j], mins[j]) = (Math.Max(s, 0f), Math.Max(-o, 0f));
            }
            else
            {
                scales[j] = QuantStepSearch.RefineScale(x[range], w[range], spec.Levels, state.Indices[range]);
            }
        }

        float maxAbs = 0, maxMin = 0;
        foreach (var s in scales) maxAbs = Math.Max(maxAbs, MathF.Abs(s));
        foreach (var m in mins) maxMin = Math.Max(maxMin, m);
        var referenceD = best.D;
        var minScale = spec.Affine && maxMin > 0 ? maxMin / spec.MinHigh : best.DMin;
        ReadOnlySpan<float> superScales = spec.ScaleLow < 0
            ? [referenceD, maxAbs / spec.ScaleHigh, -maxAbs / -spec.ScaleLow]
            : [referenceD, maxAbs / spec.ScaleHigh];
        foreach (var superScale in superScales)
        {
            if (superScale == 0 || !float.IsFinite(superScale)) continue;
            for (var j = 0; j < subBlocks; j++)
            {
                state.Scales[j] = Math.Clamp((int)MathF.Round(scales[j] / superScale), spec.ScaleLow, spec.ScaleHigh);
                state.Mins[j] = spec.Affine && minScale != 0 ? Math.Clamp((int)MathF.Round(mins[j] / minScale), 0, spec.MinHigh) : 0;
            }
            state.D = Fp16Value(superScale);
            state.DMin = spec.Affine ? Fp16Value(minScale) : 0;
            for (var round = 0; round <= RefitRounds; round++)
            {
                if (round > 0 && !RefitSuperScales(spec, x, w, ref state)) break;
                RoundToStoredScales(spec, x, ref state);
                var error = Error(spec, x, w, state);
                if (error < bestError)
                {
                    bestError = error;
                    best = state.CopyInto(best);
                }
            }
        }
        var result = best.CopyInto(state);
        (state.D, state.DMin) = (result.D, result.DMin);
    }

    /// <summary>The nearest level for every weight against its sub-block's stored scale and min (a zero scale keeps them).</summary>
    private static void RoundToStoredScales(SuperBlockSpec spec, ReadOnlySpan<float> x, ref SuperBlockState state)
    {
        for (var j = 0; j < state.Scales.Length; j++)
        {
            var scale = state.D * state.Scales[j];
            if (scale == 0) continue;
            var inverse = 1 / scale;
            var offset = state.DMin * state.Mins[j];
            if (spec.LinearLowest is { } lowest)
            {
                // Integer levels lowest..: the pair around v is found by floor instead of a binary search, then the same
                // float comparison as Nearest (ties to the lower level), so the indices are Nearest's.
                var below = spec.Levels.Length - 2;
                for (var i = j * spec.SubBlock; i < (j + 1) * spec.SubBlock; i++)
                {
                    var v = (x[i] + offset) * inverse;
                    var lo = float.IsNaN(v) ? 0 : Math.Clamp((int)Math.Clamp(MathF.Floor(v), -1e6f, 1e6f) - lowest, 0, below);
                    float low = lowest + lo;
                    state.Indices[i] = v - low <= low + 1 - v ? lo : lo + 1;
                }
                continue;
            }
            for (var i = j * spec.SubBlock; i < (j + 1) * spec.SubBlock; i++)
            {
                state.Indices[i] = QuantStepSearch.Nearest(spec.Levels, (x[i] + offset) * inverse);
            }
        }
    }

    /// <summary>Least-squares D (and Dmin) for the fixed integer scales, mins and levels: x ≈ D·(sc·T) − Dmin·m. False when
    /// the system is singular or the fit leaves the fp16 range.</summary>
    private static bool RefitSuperScales(SuperBlockSpec spec, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ref SuperBlockState state)
    {
        double aa = 0, ab = 0, bb = 0, xa = 0, xb = 0;
        for (var j = 0; j < state.Scales.Length; j++)
        {
            double sumA = 0, sumAA = 0, sumW = 0, sumXA = 0, sumX = 0;
            for (var i = j * spec.SubBlock; i < (j + 1) * spec.SubBlock; i++)
            {
                double t = spec.Levels[state.Indices[i]];
                sumA += w[i] * t;
                sumAA += w[i] * t * t;
                sumW += w[i];
                sumXA += w[i] * x[i] * t;
                sumX += w[i] * x[i];
            }
            // a = sc·T and b = −m per weight, summed per sub-block.
            double sc = state.Scales[j], m = state.Mins[j];
            aa += sc * sc * sumAA;
            ab -= sc * m * sumA;
            bb += m * m * sumW;
            xa += sc * sumXA;
            xb -= m * sumX;
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
        if (!float.IsFinite(dValue) || !float.IsFinite(dminValue)) return false;
        state.D = dValue;
        state.DMin = dminValue;
        return true;
    }

    /// <summary>Σ w·(y − x)² with y as the dequantizers compute it: (D·sc)·T[q] − Dmin·m. NaN counts as +∞.</summary>
    public static double Error(SuperBlockSpec spec, ReadOnlySpan<float> x, ReadOnlySpan<float> w, in SuperBlockState state)
    {
        double sum = 0;
        for (var j = 0; j < state.Scales.Length; j++)
        {
            var scale = state.D * state.Scales[j];
            var offset = state.DMin * state.Mins[j];
            for (var i = j * spec.SubBlock; i < (j + 1) * spec.SubBlock; i++)
            {
                double e = scale * spec.Levels[state.Indices[i]] - offset - (double)x[i];
                sum += w[i] * e * e;
            }
        }
        return double.IsNaN(sum) ? double.PositiveInfinity : sum;
    }

    private static float Fp16Value(float value) => (float)GgmlFp16.FromSingle(value);
}
