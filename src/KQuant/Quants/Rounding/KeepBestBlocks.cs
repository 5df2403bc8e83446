using System.Runtime.InteropServices;
using KQuant.Gguf;

namespace KQuant.Quants;

/// <summary>Proposes a better encoding of one block: <paramref name="candidate"/> arrives holding the reference block and
/// may be rewritten. <paramref name="w"/> are the error weights of the block's values.</summary>
internal delegate void BlockImprover<TBlock>(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ref TBlock candidate) where TBlock : unmanaged;

/// <summary>What the optimal path minimises (<see cref="KeepBestBlocks.WeightingFor"/>).</summary>
internal enum ErrorWeighting
{
    /// <summary>No search: the reference bytes.</summary>
    Reference,

    /// <summary>w = c, the column importance (1 without an imatrix).</summary>
    Importance,

    /// <summary>w = c·x².</summary>
    ImportanceTimesSquare,
}

/// <summary>The optimal path's frame for every block format: quantize the row the reference way, let the format propose a
/// better encoding per block, and keep the proposal only when its dequantized weighted error (through the codec's own
/// dequantizer, i.e. what a reader of the file sees) is smaller. This makes "never worse than the reference" structural
/// (in the weighted error of <see cref="WeightingFor"/>; the KL divergence it is chosen for is measured, not guaranteed).</summary>
internal static class KeepBestBlocks
{
    public static void Quantize<TBlock>(IRowCodec codec, int blockWeights, ReadOnlySpan<float> source, Span<byte> destination,
        ReadOnlySpan<float> importance, RowRole role, BlockImprover<TBlock> improve) where TBlock : unmanaged
    {
        codec.Quantize(source, destination, importance);
        var weighting = WeightingFor(codec.Type, !importance.IsEmpty, role);
        if (weighting == ErrorWeighting.Reference) return;
        var blocks = MemoryMarshal.Cast<byte, TBlock>(destination);
        Span<float> weights = stackalloc float[blockWeights];
        Span<float> dequantized = stackalloc float[blockWeights];
        Span<TBlock> candidate = stackalloc TBlock[1];
        for (var i = 0; i < blocks.Length; i++)
        {
            var x = source.Slice(i * blockWeights, blockWeights);
            ErrorWeights(weighting, x, importance.IsEmpty ? default : importance.Slice(i * blockWeights, blockWeights), weights);
            ReadOnlySpan<float> w = weights;
            candidate[0] = blocks[i];
            improve(x, w, ref candidate[0]);
            var referenceError = BlockError(codec, blocks.Slice(i, 1), x, w, dequantized);
            var candidateError = BlockError(codec, candidate, x, w, dequantized);
            if (candidateError < referenceError) blocks[i] = candidate[0];
        }
    }

    /// <summary>
    /// The error the optimal path minimises, per format and row role; c is the importance (imatrix) of each column, 1
    /// without one. Chosen by whole-model KL divergence against F16 on debdocs-llama-10m (src/KQuant/Quants/README.md):
    /// <list type="bullet">
    /// <item>2- and 3-bit K-quants (Q2_K, Q3_K) in products: c·x². Searching on c alone lowers the weight RMSE but raised
    /// the KLD (Q2_K: +35% without an imatrix, +12% with one); c·x² lowered it.</item>
    /// <item>Token embeddings (lookups) and the other formats: c.</item>
    /// <item>Q4_K and Q5_K products without an imatrix: no search (the reference bytes): every weighting tried raised the
    /// KLD of Q4_K_M (+2% with 1, +5% with x²). Their token embeddings (never in an imatrix) are searched with c = 1,
    /// which lowered Q4_K_M's KLD by 1.0% without and 0.7% with an imatrix.</item>
    /// </list>
    /// </summary>
    public static ErrorWeighting WeightingFor(GgmlType type, bool hasImportance, RowRole role) => type switch
    {
        GgmlType.Q4_K or GgmlType.Q5_K when !hasImportance && role == RowRole.Product => ErrorWeighting.Reference,
        GgmlType.Q2_K or GgmlType.Q3_K when role == RowRole.Product => ErrorWeighting.ImportanceTimesSquare,
        _ => ErrorWeighting.Importance,
    };

    /// <summary>The error weights of one block under <paramref name="weighting"/> (c = <paramref name="importance"/>, or 1 when empty).</summary>
    public static void ErrorWeights(ErrorWeighting weighting, ReadOnlySpan<float> x, ReadOnlySpan<float> importance, Span<float> w)
    {
        var squares = weighting == ErrorWeighting.ImportanceTimesSquare;
        for (var j = 0; j < x.Length; j++)
        {
            var c = importance.IsEmpty ? 1f : importance[j];
            w[j] = squares ? c * x[j] * x[j] : c;
        }
    }

    /// <summary>Σ w·(dequantized − x)² of one block, in double; +∞ when the block decodes to NaN (an fp16 scale overflowed
    /// on huge input), so any finite candidate beats it.</summary>
    public static double BlockError<TBlock>(IRowCodec codec, ReadOnlySpan<TBlock> block, ReadOnlySpan<float> x, ReadOnlySpan<float> w,
        Span<float> scratch) where TBlock : unmanaged
    {
        codec.Dequantize(MemoryMarshal.AsBytes(block), scratch);
        return WeightedSquaredError(x, scratch, w);
    }

    public static double WeightedSquaredError(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> w)
    {
        double sum = 0;
        for (var j = 0; j < x.Length; j++)
        {
            double e = y[j] - (double)x[j];
            sum += w[j] * e * e;
        }
        return double.IsNaN(sum) ? double.PositiveInfinity : sum;
    }
}
