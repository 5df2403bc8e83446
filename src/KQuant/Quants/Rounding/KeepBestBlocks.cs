using System.Runtime.InteropServices;

namespace KQuant.Quants;

/// <summary>Proposes a better encoding of one block: <paramref name="candidate"/> arrives holding the reference block and
/// may be rewritten. <paramref name="w"/> are the error weights of the block's values.</summary>
internal delegate void BlockImprover<TBlock>(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ref TBlock candidate) where TBlock : unmanaged;

/// <summary>The optimal path's frame for every block format: quantize the row the reference way, let the format propose a
/// better encoding per block, and keep the proposal only when its dequantized weighted error (through the codec's own
/// dequantizer, i.e. what a reader of the file sees) is smaller. This makes "never worse than the reference" structural.</summary>
internal static class KeepBestBlocks
{
    public static void Quantize<TBlock>(IRowCodec codec, int blockWeights, ReadOnlySpan<float> source, Span<byte> destination,
        ReadOnlySpan<float> importance, BlockImprover<TBlock> improve) where TBlock : unmanaged
    {
        codec.Quantize(source, destination, importance);
        var blocks = MemoryMarshal.Cast<byte, TBlock>(destination);
        Span<float> ones = stackalloc float[blockWeights];
        ones.Fill(1f);
        Span<float> dequantized = stackalloc float[blockWeights];
        Span<TBlock> candidate = stackalloc TBlock[1];
        for (var i = 0; i < blocks.Length; i++)
        {
            var x = source.Slice(i * blockWeights, blockWeights);
            var w = importance.IsEmpty ? ones : importance.Slice(i * blockWeights, blockWeights);
            candidate[0] = blocks[i];
            improve(x, w, ref candidate[0]);
            var referenceError = BlockError(codec, blocks.Slice(i, 1), x, w, dequantized);
            var candidateError = BlockError(codec, candidate, x, w, dequantized);
            if (candidateError < referenceError) blocks[i] = candidate[0];
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
