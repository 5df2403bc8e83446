using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using KQuant.Gguf;
using KQuant.Quants.K;

namespace KQuant.Quants;

/// <summary>Proposes a better encoding of one block: <paramref name="candidate"/> arrives holding the reference block and
/// may be rewritten. <paramref name="w"/> are the error weights of the block's values.</summary>
internal delegate void BlockImprover<TBlock>(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ref TBlock candidate) where TBlock : unmanaged;

/// <summary>Encodes one block with no reference encoding to start from (<paramref name="w"/>: the error weights); false
/// when it found no encoding with a finite error.</summary>
internal delegate bool BlockEncoder<TBlock>(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ref TBlock block) where TBlock : unmanaged;

/// <summary>What the optimal path minimises (<see cref="KeepBestBlocks.WeightingFor"/>).</summary>
internal enum ErrorWeighting
{
    /// <summary>No search: the reference encoding brought to unit gain (<see cref="UnitGain"/>).</summary>
    ReferenceAtUnitGain,

    /// <summary>w = c, the column importance (1 without an imatrix).</summary>
    Importance,

    /// <summary>w = c·x².</summary>
    ImportanceTimesSquare,

    /// <summary>w = c·sqrt(σ² + x²) with σ² = 2·mean(x²) over the block: the reference searches' own weighting (Q4_K, Q5_K
    /// and IQ4 with an imatrix), which favours large weights less than c·x².</summary>
    ImportanceTimesMagnitude,

    /// <summary>w = c·(rms + |x|), rms over each 32-weight sub-block: the reference search's own weighting of Q4_K and
    /// Q5_K without an imatrix, which favours large weights more than sqrt(σ² + x²) does.</summary>
    SubBlockRmsPlusMagnitude,
}

/// <summary>The optimal path's frame for the super-block formats (the legacy formats and IQ4_NL make the same comparison in
/// SIMD lanes, <see cref="BlockLaneSearch"/> and <see cref="ScaleTrialLaneSearch"/>): quantize the row the reference way, let the format propose a
/// better encoding per block, bring both to unit gain (<see cref="UnitGain"/>: super-block formats and IQ4_NL), and keep
/// the proposal only when its dequantized weighted error (through the codec's own dequantizer, i.e. what a reader of the
/// file sees) is smaller. This makes "never worse than the reference at unit gain" structural (in the weighted error of
/// <see cref="WeightingFor"/>; the KL divergence it is chosen for is measured, not guaranteed). Except where a format
/// passes an encoder (Q2_K, Q3_K, Q4_K and Q5_K without an imatrix, Q6_K and IQ4_XS always): there the reference encoding took as
/// long as the search, and the search from its own start (<see cref="SuperBlockSearch.Encode"/>; Q6_K's
/// <see cref="IntegerScaleSweep"/>) reaches the same error or lower and a lower KLD in total, so no reference is made and
/// a block can be worse than the reference's (on debdocs-llama-10m 0.6–8% of SuperBlockSearch.Encode's blocks, at most 1.19× its
/// error).</summary>
internal static class KeepBestBlocks
{
    /// <summary>Quantizes a row: with <paramref name="encode"/> (the format searches from its own start in this case),
    /// block by block from no reference; otherwise the reference encoding, each block improved by
    /// <paramref name="improve"/> and kept only when better (or only brought to unit gain, as the weighting says). Q3_K
    /// passes no improver: without an imatrix it encodes from its own start, with one it takes the reference at unit gain;
    /// nor do Q6_K and IQ4_XS, which encode from their own start in both modes.</summary>
    public static void Quantize<TBlock>(IRowCodec codec, int blockWeights, ReadOnlySpan<float> source, Span<byte> destination,
        ReadOnlySpan<float> importance, RowRole role, BlockImprover<TBlock>? improve, BlockEncoder<TBlock>? encode = null)
        where TBlock : unmanaged
    {
        var weighting = WeightingFor(codec.Type, !importance.IsEmpty, role);
        if (encode is not null && weighting != ErrorWeighting.ReferenceAtUnitGain)
        {
            Encode(codec, blockWeights, source, destination, importance, weighting, encode);
            return;
        }
        codec.Quantize(source, destination, importance);
        var unitGain = UnitGain.Applies(codec.Type);
        var blocks = MemoryMarshal.Cast<byte, TBlock>(destination);
        Span<float> weights = stackalloc float[blockWeights];
        Span<float> dequantized = stackalloc float[blockWeights];
        Span<float> candidateDequantized = stackalloc float[blockWeights];
        Span<TBlock> candidate = stackalloc TBlock[1];
        for (var i = 0; i < blocks.Length; i++)
        {
            var x = source.Slice(i * blockWeights, blockWeights);
            var c = importance.IsEmpty ? default : importance.Slice(i * blockWeights, blockWeights);
            if (weighting == ErrorWeighting.ReferenceAtUnitGain)
            {
                UnitGain.Correct(codec, MemoryMarshal.AsBytes(blocks.Slice(i, 1)), x, c, dequantized, decodeResult: false);
                continue;
            }
            if (improve is null) throw new InvalidOperationException($"{codec.Type}: no search from the reference for weighting {weighting}");
            ErrorWeights(weighting, x, c, weights);
            candidate[0] = blocks[i];
            improve(x, weights, ref candidate[0]);
            if (KeepCandidate(codec, unitGain, ref blocks[i], ref candidate[0], x, c, weights, dequantized, candidateDequantized)) blocks[i] = candidate[0];
        }
    }

    /// <summary>The rows of the formats whose search starts from its own encoding (no reference encoding to compare with:
    /// on Q4_K computing it took 1.0× the reference mode's time, the search from it 1.5×, the search from its own start
    /// 0.3–0.4× more). Each block is brought to unit gain where the format takes it; a block the encoder finds nothing
    /// finite for (all zero, fp16 overflow), or whose gain is too far from 1 to correct, is encoded the reference way (and
    /// corrected) instead.</summary>
    private static void Encode<TBlock>(IRowCodec codec, int blockWeights, ReadOnlySpan<float> source, Span<byte> destination,
        ReadOnlySpan<float> importance, ErrorWeighting weighting, BlockEncoder<TBlock> encode) where TBlock : unmanaged
    {
        var unitGain = UnitGain.Applies(codec.Type);
        var blocks = MemoryMarshal.Cast<byte, TBlock>(destination);
        Span<float> weights = stackalloc float[blockWeights];
        Span<float> decoded = stackalloc float[blockWeights];
        for (var i = 0; i < blocks.Length; i++)
        {
            var x = source.Slice(i * blockWeights, blockWeights);
            var c = importance.IsEmpty ? default : importance.Slice(i * blockWeights, blockWeights);
            var bytes = MemoryMarshal.AsBytes(blocks.Slice(i, 1));
            ErrorWeights(weighting, x, c, weights);
            if (encode(x, weights, ref blocks[i]) && (!unitGain || UnitGain.Correct(codec, bytes, x, c, decoded, decodeResult: false))) continue;
            codec.Quantize(x, bytes, c);
            if (unitGain) UnitGain.Correct(codec, bytes, x, c, decoded, decodeResult: false);
        }
    }

    /// <summary>The comparison of one block: brings the reference block and the proposed one to unit gain where the format
    /// takes it (<see cref="UnitGain"/>) and returns whether the candidate, so corrected, has the lower error Σ w·(y − x)² as
    /// the codec decodes it. When false, <paramref name="reference"/> holds the reference at unit gain. A candidate whose gain
    /// is too far from 1 to correct is not taken over a reference that could be corrected: its lower weighted error comes
    /// with the shrink unit gain removes.</summary>
    public static bool KeepCandidate<TBlock>(IRowCodec codec, bool unitGain, ref TBlock reference, ref TBlock candidate, ReadOnlySpan<float> x,
        ReadOnlySpan<float> c, ReadOnlySpan<float> w, Span<float> dequantized, Span<float> candidateDequantized) where TBlock : unmanaged
    {
        var referenceBytes = MemoryMarshal.AsBytes(new Span<TBlock>(ref reference));
        var candidateBytes = MemoryMarshal.AsBytes(new Span<TBlock>(ref candidate));
        if (candidateBytes.SequenceEqual(referenceBytes))
        {
            // The search kept the reference: it only needs its unit gain.
            if (unitGain) UnitGain.Correct(codec, referenceBytes, x, c, dequantized, decodeResult: false);
            return false;
        }
        var referenceAtUnitGain = Decode(codec, unitGain, referenceBytes, x, c, dequantized);
        var candidateAtUnitGain = Decode(codec, unitGain, candidateBytes, x, c, candidateDequantized);
        return (candidateAtUnitGain || !referenceAtUnitGain) && IsLower(x, candidateDequantized, dequantized, w);
    }

    /// <summary>Decodes the block, at unit gain first where the format takes it; false when it could not be brought there.</summary>
    private static bool Decode(IRowCodec codec, bool unitGain, Span<byte> block, ReadOnlySpan<float> x, ReadOnlySpan<float> c,
        Span<float> decoded)
    {
        if (unitGain) return UnitGain.Correct(codec, block, x, c, decoded);
        codec.Dequantize(block, decoded);
        return true;
    }

    /// <summary>
    /// The error the optimal path minimises, per format and row role; c is the importance (imatrix) of each column, 1
    /// without one. Chosen by whole-model KL divergence against F16 on debdocs-llama-10m, with every block at unit gain
    /// (ratios are of the reference's KLD, without / with an imatrix; src/KQuant/Quants/README.md has the rest):
    /// <list type="bullet">
    /// <item>Q6_K: c, swept from its own start (<see cref="IntegerScaleSweep"/>, session 14). The Q6_K recipe / Q4_K_M
    /// ×0.936 / ×0.965 without an imatrix and ×0.955 / ×0.919 with one, against ×0.936 / ×0.968 and ×0.966 / ×0.928 with
    /// c·(rms + |x|), ×0.935 / ×0.977 and ×0.963 / ×0.929 with c·sqrt(σ² + x²), ×0.967 / ×0.993 with x² (without);
    /// debdocs-tiny alike. Until then no search: the search from the reference lowered the weight error by 2.5% and
    /// raised the KLD; the sweep lowers it by 12%.</item>
    /// <item>Q2_K products: c·x². Searching on c alone lowers the weight RMSE but raised the KLD (+35% without an imatrix,
    /// +12% with one, before unit gain); c·x² lowered it.</item>
    /// <item>Q3_K products without an imatrix, searched from its own start (session 11): rms + |x|, rms per 32 weights.
    /// Q3_K_M / Q3_K_S on debdocs-tiny ×0.961 / ×0.979 with one trial factor, against ×1.061 / ×1.062 with x² (the
    /// reference's own make_q3_quants weights, which the search from the reference had used) and ×1.010 / ×0.992 with
    /// c = 1; rms over its own 16-weight sub-blocks ×0.965 / ×0.975. With an imatrix no search, the reference at unit
    /// gain: ×0.888 / ×0.930 here and ×0.973 / ×0.971 on debdocs-tiny, against ×0.887 / ×0.928 and ×0.963 / ×0.970
    /// for the search on c from the reference at 2.6× the codec's time. The own start with c·(rms + |x|) measured
    /// ×0.894 / ×0.911 and ×0.933 / ×0.991, but on test rows with widely spread importance reached 2.3× the reference's
    /// error: its trial scales come from the largest value, which an imatrix can make unimportant.</item>
    /// <item>Q4_K and Q5_K products without an imatrix: rms + |x| per 32-weight sub-block, the reference search's own
    /// weights. With the search from its own start (before its trials kept the running offset), Q4_K_M's KLD, mean over
    /// three trial grids (debdocs-llama-10m / debdocs-tiny): ×0.958 / ×0.987 with it, ×0.970 / ×1.044 (one grid) with
    /// sqrt(σ² + x²); on debdocs-tiny 0.5·rms + |x| gave ×0.999 and
    /// 2·rms + |x| ×1.021. (From the reference start: sqrt(σ² + x²) ×0.978; c = 1 ×0.970 here but ×1.007 on debdocs-tiny;
    /// x² ×1.022.) With an imatrix: c for Q4_K; no search for Q5_K, the reference at unit gain (Q5_K_M ×0.996; its search
    /// raised the KLD with every weighting tried before unit gain).</item>
    /// <item>IQ4_XS products: c, searched from its own start. Without an imatrix ×0.944 here and ×0.953 on debdocs-tiny,
    /// against ×0.939 and ×0.983 with sqrt(σ² + x²) and ×1.009 on debdocs-tiny with x² (the reference's own weights).
    /// With one (session 13) ×0.928 here and ×0.950 on debdocs-tiny, against ×0.928 / ×1.020 with c·sqrt(σ² + x²),
    /// ×1.054 (debdocs-tiny) with c·x² and ×1.061 with c·(rms + |x|); the search from the reference on c·sqrt(σ² + x²)
    /// had given ×0.938 / ×0.988 (c alone had been worse than the reference there, before unit gain).</item>
    /// <item>IQ4_NL products: c·sqrt(σ² + x²), at unit gain (×0.982 / ×0.962; with c and no unit gain ×1.026 /
    /// ×0.999, the 10m row furthest above the reference before this rule).</item>
    /// <item>Token embeddings (lookups) and the legacy formats: c.</item>
    /// </list>
    /// </summary>
    public static ErrorWeighting WeightingFor(GgmlType type, bool hasImportance, RowRole role) => type switch
    {
        GgmlType.Q3_K when hasImportance => ErrorWeighting.ReferenceAtUnitGain,
        _ when role == RowRole.Lookup => ErrorWeighting.Importance,
        GgmlType.Q2_K => ErrorWeighting.ImportanceTimesSquare,
        GgmlType.Q3_K => ErrorWeighting.SubBlockRmsPlusMagnitude,
        GgmlType.Q4_K or GgmlType.Q5_K when !hasImportance => ErrorWeighting.SubBlockRmsPlusMagnitude,
        GgmlType.Q5_K => ErrorWeighting.ReferenceAtUnitGain,
        GgmlType.IQ4_XS => ErrorWeighting.Importance,
        GgmlType.IQ4_NL => ErrorWeighting.ImportanceTimesMagnitude,
        _ => ErrorWeighting.Importance,
    };

    /// <summary>The error weights of one block under <paramref name="weighting"/> (c = <paramref name="importance"/>, or 1 when empty).</summary>
    public static void ErrorWeights(ErrorWeighting weighting, ReadOnlySpan<float> x, ReadOnlySpan<float> importance, Span<float> w)
    {
        var j = 0;
        if (weighting == ErrorWeighting.SubBlockRmsPlusMagnitude)
        {
            // |x| + rms(x) of each 32-weight sub-block, as ggml's quantize_row_q4_K_ref / q5_K_ref weight their search
            // (AffineSuperBlock's reference path; its Σx² runs left to right, this one in vector order).
            const int subBlock = 32;
            for (; j < x.Length; j += subBlock)
            {
                var group = x.Slice(j, Math.Min(subBlock, x.Length - j));
                SuperBlockRounding.AddAbsolute(MathF.Sqrt(TensorPrimitives.SumOfSquares(group) / group.Length), group, w.Slice(j, group.Length));
            }
            if (!importance.IsEmpty) TensorPrimitives.Multiply(w[..x.Length], importance[..x.Length], w);
            return;
        }
        if (weighting == ErrorWeighting.ImportanceTimesMagnitude)
        {
            var squareSums = Vector<float>.Zero;
            for (; j <= x.Length - Vector<float>.Count; j += Vector<float>.Count)
            {
                var xv = new Vector<float>(x[j..]);
                squareSums += xv * xv;
            }
            var sumSquares = Vector.Sum(squareSums);
            for (; j < x.Length; j++) sumSquares += x[j] * x[j];
            var sigma2 = 2 * sumSquares / x.Length;
            var sigma2Vector = new Vector<float>(sigma2);
            for (j = 0; j <= x.Length - Vector<float>.Count; j += Vector<float>.Count)
            {
                var c = importance.IsEmpty ? Vector<float>.One : new Vector<float>(importance[j..]);
                var xv = new Vector<float>(x[j..]);
                (c * Vector.SquareRoot(sigma2Vector + xv * xv)).CopyTo(w[j..]);
            }
            for (; j < x.Length; j++) w[j] = (importance.IsEmpty ? 1f : importance[j]) * MathF.Sqrt(sigma2 + x[j] * x[j]);
            return;
        }
        var squares = weighting == ErrorWeighting.ImportanceTimesSquare;
        for (; j <= x.Length - Vector<float>.Count; j += Vector<float>.Count)
        {
            var c = importance.IsEmpty ? Vector<float>.One : new Vector<float>(importance[j..]);
            var xv = new Vector<float>(x[j..]);
            (squares ? c * xv * xv : c).CopyTo(w[j..]);
        }
        for (; j < x.Length; j++)
        {
            var c = importance.IsEmpty ? 1f : importance[j];
            w[j] = squares ? c * x[j] * x[j] : c;
        }
    }

    /// <summary>Σ w·(y − x)² of one block, in double; +∞ when y holds NaN (an fp16 scale overflowed on huge input), so any
    /// finite candidate beats it.</summary>
    public static double WeightedSquaredError(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> w)
    {
        // In double, as the comparison it decides must hold in double (a float sum could prefer a block that is worse by
        // its rounding error).
        var sums = Vector<double>.Zero;
        var j = 0;
        for (; j <= x.Length - Vector<float>.Count; j += Vector<float>.Count)
        {
            Vector.Widen(new Vector<float>(y[j..]), out var eLow, out var eHigh);
            Vector.Widen(new Vector<float>(x[j..]), out var xLow, out var xHigh);
            Vector.Widen(new Vector<float>(w[j..]), out var wLow, out var wHigh);
            eLow -= xLow;
            eHigh -= xHigh;
            sums += wLow * eLow * eLow + wHigh * eHigh * eHigh;
        }
        var sum = Vector.Sum(sums);
        for (; j < x.Length; j++)
        {
            double e = y[j] - (double)x[j];
            sum += w[j] * e * e;
        }
        return double.IsNaN(sum) ? double.PositiveInfinity : sum;
    }

    /// <summary><see cref="WeightedSquaredError"/> in float (each square exact to a few ulps, the sum to about 256 ulps at
    /// worst): a quick estimate for deciding clear cases.</summary>
    private static float WeightedSquaredErrorEstimate(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> w)
    {
        var count = Vector<float>.Count;
        Vector<float> sum0 = default, sum1 = default;
        var j = 0;
        for (; j <= x.Length - 2 * count; j += 2 * count)
        {
            var e0 = new Vector<float>(y[j..]) - new Vector<float>(x[j..]);
            var e1 = new Vector<float>(y[(j + count)..]) - new Vector<float>(x[(j + count)..]);
            sum0 += new Vector<float>(w[j..]) * e0 * e0;
            sum1 += new Vector<float>(w[(j + count)..]) * e1 * e1;
        }
        var sum = Vector.Sum(sum0 + sum1);
        for (; j < x.Length; j++) sum += w[j] * (y[j] - x[j]) * (y[j] - x[j]);
        return sum;
    }

    /// <summary>Whether the candidate's error is below the reference's, in double; the float estimates decide when they
    /// differ by far more than their rounding (10⁻³ relative against at most about 256·2⁻²⁴ ≈ 1.5·10⁻⁵).</summary>
    private static bool IsLower(ReadOnlySpan<float> x, ReadOnlySpan<float> candidate, ReadOnlySpan<float> reference, ReadOnlySpan<float> w)
    {
        var (c, r) = (WeightedSquaredErrorEstimate(x, candidate, w), WeightedSquaredErrorEstimate(x, reference, w));
        if (float.IsFinite(c) && float.IsFinite(r))
        {
            if (c < r * 0.999f) return true;
            if (c > r * 1.001f) return false;
        }
        return WeightedSquaredError(x, candidate, w) < WeightedSquaredError(x, reference, w);
    }
}
