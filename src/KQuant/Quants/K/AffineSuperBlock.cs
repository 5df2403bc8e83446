namespace KQuant.Quants.K;

/// <summary>
/// The scale search Q4_K and Q5_K share (ggml-quants.c, llama.cpp v0.5.0): eight sub-blocks of 32 weights, each
/// x ≈ d·sc·level - dmin·m with 6-bit sc and m. The formats differ only in the level range (15 or 31), in the search
/// parameters of the reference path, and in how they pack the levels afterwards.
/// </summary>
internal static class AffineSuperBlock
{
    public const int SubBlock = 32;
    public const int SubBlocks = KQuantLayout.SuperBlock / SubBlock;

    /// <summary>What distinguishes Q4_K from Q5_K here: the largest level, the reference path's search (start
    /// nmax + <see cref="ReferenceRmin"/>, steps of 0.1, <see cref="ReferenceSteps"/> + 1 candidates), and whether the
    /// importance path clamps the chosen 6-bit scale levels to 63.</summary>
    public readonly record struct Format(int Nmax, float ReferenceRmin, int ReferenceSteps, bool ClampScaleLevels);

    /// <summary>One super-block: the reference path without importance, the weighted path with it (as
    /// ggml_quantize_chunk chooses). Fills the levels (0..nmax), the 12 packed scale bytes, d and dmin.</summary>
    public static void Quantize(Format format, ReadOnlySpan<float> x, ReadOnlySpan<float> importance, Span<byte> levels,
        Span<byte> packedScales, out Half d, out Half dmin)
    {
        if (importance.IsEmpty)
        {
            QuantizeReference(x, format.Nmax, format.ReferenceRmin, format.ReferenceSteps, levels, packedScales, out d, out dmin);
        }
        else
        {
            QuantizeWeighted(x, importance, format.Nmax, format.ClampScaleLevels, levels, packedScales, out d, out dmin);
        }
    }

    /// <summary>The optimal path's improvement of one super-block (<see cref="SuperBlockSearch"/>): the unpacked levels,
    /// packed scales and super-scales of the reference encoding in, a candidate out.</summary>
    public static void Improve(Format format, ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<byte> levels,
        Span<byte> packedScales, ref Half d, ref Half dmin)
    {
        Span<int> scales = stackalloc int[SubBlocks];
        Span<int> mins = stackalloc int[SubBlocks];
        for (var j = 0; j < SubBlocks; j++) (scales[j], mins[j]) = KQuantLayout.UnpackScaleMin(j, packedScales);
        SuperBlockSearch.Improve(format.Nmax == 15 ? Q4Spec : Q5Spec, x, w, levels, scales, mins, ref d, ref dmin);
        Pack(scales, mins, packedScales);
    }

    /// <summary>The optimal path's encoding of one super-block without a reference start (<see cref="SuperBlockSearch.Encode"/>):
    /// fills the unpacked levels, packed scales and super-scales; false when it found nothing finite.</summary>
    public static bool Encode(Format format, ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<byte> levels, Span<byte> packedScales,
        out Half d, out Half dmin)
    {
        Span<int> scales = stackalloc int[SubBlocks];
        Span<int> mins = stackalloc int[SubBlocks];
        if (!SuperBlockSearch.Encode(format.Nmax == 15 ? Q4Spec : Q5Spec, x, w, levels, scales, mins, out d, out dmin)) return false;
        Pack(scales, mins, packedScales);
        return true;
    }

    private static void Pack(ReadOnlySpan<int> scales, ReadOnlySpan<int> mins, Span<byte> packedScales)
    {
        Span<byte> scaleLevels = stackalloc byte[SubBlocks];
        Span<byte> minLevels = stackalloc byte[SubBlocks];
        for (var j = 0; j < SubBlocks; j++) (scaleLevels[j], minLevels[j]) = ((byte)scales[j], (byte)mins[j]);
        packedScales.Clear();
        KQuantLayout.PackScaleMins(scaleLevels, minLevels, packedScales);
    }

    // The trial starts: the reference path's scale grid (make_qkx2_quants, δ from −1 for Q4_K), for Q5_K widened down
    // from −0.5 to −1, so that the largest weight can land below the top level: the reference gets there only through the
    // tie at δ = −0.5, which it rounds to even (an outlier sub-block of Q5_K had 3.2× the reference's error without).
    private static readonly SuperBlockSpec Q4Spec = new(SubBlock, SuperBlockSpec.IntegerLevels(0, 15), Affine: true, 0, 63, 63)
    {
        NeighbourIntegers = true,
        StartScales = SuperBlockSpec.SpanSteps(15, -1f, 21),
    };
    private static readonly SuperBlockSpec Q5Spec = new(SubBlock, SuperBlockSpec.IntegerLevels(0, 31), Affine: true, 0, 63, 63)
    {
        NeighbourIntegers = true,
        StartScales = SuperBlockSpec.SpanSteps(31, -1f, 21),
    };

    /// <summary>The effective scales and mins (d·sc, dmin·m) of sub-blocks 2·pair and 2·pair + 1, as the dequantizers use them.</summary>
    public static (float Scale1, float Min1, float Scale2, float Min2) PairScales(float d, float dmin, ReadOnlySpan<byte> packedScales, int pair)
    {
        var (sc1, m1) = KQuantLayout.UnpackScaleMin(2 * pair, packedScales);
        var (sc2, m2) = KQuantLayout.UnpackScaleMin(2 * pair + 1, packedScales);
        return (d * sc1, dmin * m1, d * sc2, dmin * m2);
    }

    /// <summary>quantize_row_q4_K_ref / quantize_row_q5_K_ref: per sub-block weights rms(x) + |x| and make_qkx2_quants,
    /// then the largest scale and min set the fp16 super-scales.</summary>
    private static void QuantizeReference(ReadOnlySpan<float> x, int nmax, float rmin, int nstep, Span<byte> levels,
        Span<byte> packedScales, out Half d, out Half dmin)
    {
        Span<float> scales = stackalloc float[SubBlocks];
        Span<float> mins = stackalloc float[SubBlocks];
        Span<float> weights = stackalloc float[KQuantLayout.SuperBlock];
        for (var j = 0; j < SubBlocks; j++)
        {
            var group = x.Slice(SubBlock * j, SubBlock);
            var rms = MathF.Sqrt(SuperBlockRounding.SumOfSquares(group) / SubBlock);
            SuperBlockRounding.AddAbsolute(rms, group, weights.Slice(SubBlock * j, SubBlock));
        }
        BlockSolvers.MakeQkx2QuantsForGroups(nmax, x[..KQuantLayout.SuperBlock], weights, SubBlock, levels, scales, mins,
            rmin, 0.1f, nstep, useMad: false);
        float maxScale = 0, maxMin = 0;
        for (var j = 0; j < SubBlocks; j++)
        {
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }

        var inverseScale = maxScale > 0 ? 63f / maxScale : 0f;
        var inverseMin = maxMin > 0 ? 63f / maxMin : 0f;
        Span<byte> scaleLevels = stackalloc byte[SubBlocks];
        Span<byte> minLevels = stackalloc byte[SubBlocks];
        for (var j = 0; j < SubBlocks; j++)
        {
            // ggml stores nearest_int into a uint8_t before clamping to 63: truncate first, as it does.
            scaleLevels[j] = Math.Min((byte)63, (byte)BlockSolvers.NearestInt(inverseScale * scales[j]));
            minLevels[j] = Math.Min((byte)63, (byte)BlockSolvers.NearestInt(inverseMin * mins[j]));
        }
        KQuantLayout.PackScaleMins(scaleLevels, minLevels, packedScales);
        d = GgmlFp16.FromSingle(maxScale / 63f);
        dmin = GgmlFp16.FromSingle(maxMin / 63f);
        RoundToStoredScales(x, levels, packedScales, d, dmin, nmax);
    }

    /// <summary>quantize_row_q4_K_impl / quantize_row_q5_K_impl with an importance vector: weights qw·sqrt(σ² + x²) with
    /// σ² = 2·mean(x²), make_qkx3_quants per sub-block, then make_qp_quants picks the 6-bit scales and mins.
    /// <paramref name="clampScaleLevels"/>: Q5_K clamps the chosen scale levels to 63, Q4_K stores them as they come.</summary>
    private static void QuantizeWeighted(ReadOnlySpan<float> x, ReadOnlySpan<float> importance, int nmax, bool clampScaleLevels,
        Span<byte> levels, Span<byte> packedScales, out Half d, out Half dmin)
    {
        Span<float> scales = stackalloc float[SubBlocks];
        Span<float> mins = stackalloc float[SubBlocks];
        Span<float> subBlockWeights = stackalloc float[SubBlocks];
        Span<float> weights = stackalloc float[KQuantLayout.SuperBlock];
        var sigma2 = 2 * SuperBlockRounding.SumOfSquares(x[..KQuantLayout.SuperBlock]) / KQuantLayout.SuperBlock;
        SuperBlockRounding.ImportanceWeights(x[..KQuantLayout.SuperBlock], importance[..KQuantLayout.SuperBlock], sigma2, weights);
        for (var j = 0; j < SubBlocks; j++) subBlockWeights[j] = SuperBlockRounding.Sum(weights.Slice(SubBlock * j, SubBlock));
        BlockSolvers.MakeQkx3QuantsForGroups(nmax, x[..KQuantLayout.SuperBlock], weights, SubBlock, levels, scales, mins,
            -0.9f, 0.05f, 36);

        Span<byte> scaleLevels = stackalloc byte[SubBlocks];
        Span<byte> minLevels = stackalloc byte[SubBlocks];
        var dBlock = BlockSolvers.MakeQpQuants(63, scales, scaleLevels, subBlockWeights);
        var minBlock = BlockSolvers.MakeQpQuants(63, mins, minLevels, subBlockWeights);
        if (clampScaleLevels)
        {
            for (var j = 0; j < SubBlocks; j++)
            {
                scaleLevels[j] = Math.Min((byte)63, scaleLevels[j]);
                minLevels[j] = Math.Min((byte)63, minLevels[j]);
            }
        }
        KQuantLayout.PackScaleMins(scaleLevels, minLevels, packedScales);
        d = GgmlFp16.FromSingle(dBlock);
        dmin = GgmlFp16.FromSingle(minBlock);
        RoundToStoredScales(x, levels, packedScales, d, dmin, nmax);
    }

    /// <summary>Rounds every sub-block against its stored scale and min; a sub-block whose scale is zero keeps the
    /// levels the search chose (as in ggml).</summary>
    private static void RoundToStoredScales(ReadOnlySpan<float> x, Span<byte> levels, ReadOnlySpan<byte> packedScales,
        Half d, Half dmin, int nmax)
    {
        var superScale = (float)d;
        var superMin = (float)dmin;
        for (var j = 0; j < SubBlocks; j++)
        {
            var (sc, m) = KQuantLayout.UnpackScaleMin(j, packedScales);
            var scale = superScale * sc;
            if (scale == 0) continue;
            SuperBlockRounding.RoundAffine(x.Slice(SubBlock * j, SubBlock), levels.Slice(SubBlock * j, SubBlock), scale,
                superMin * m, nmax);
        }
    }
}
