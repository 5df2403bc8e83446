namespace KQuant.Quants;

/// <summary>How the block formats choose their integer quants and scales.</summary>
public enum RoundingMode
{
    /// <summary>llama.cpp v0.5.0's quantizers: the bytes llama-quantize writes.</summary>
    Reference,

    /// <summary>Search for a lower error than the reference's (super-block formats: alternating minimisation of scales,
    /// integer sub-block scales and levels, <see cref="SuperBlockSearch"/>; the legacy formats where their reference is
    /// round-to-nearest: trial scales, <see cref="ScaleTrialLaneSearch"/>; the others: the greedy quant-step search of
    /// ik_llama.cpp PR 295, <see cref="BlockLaneSearch"/>), keeping per block whichever of the search's and the
    /// reference's encodings has the smaller final (dequantized) error, except where a format searches from its own
    /// start (<see cref="KeepBestBlocks"/>). The output is the same llama.cpp format.</summary>
    Optimal,
}

/// <summary>How a matrix's rows are used by the model, which decides what error the optimal path minimises.</summary>
public enum RowRole
{
    /// <summary>Rows multiplied by activations (every projection, the output matrix).</summary>
    Product,

    /// <summary>Rows read directly (token embeddings): each value's error reaches the model unscaled, so errors weigh uniformly.</summary>
    Lookup,
}

/// <summary>A codec with an <see cref="RoundingMode.Optimal"/> path.</summary>
/// <remarks>The error it minimises is Σ w·(dequantized − x)² per block, with w chosen per format and row role by
/// <see cref="KeepBestBlocks.WeightingFor"/> (the importance c, or c·x²; c = 1 without an importance vector). The importance
/// vector is passed even to formats whose reference path ignores it (Q8_0).</remarks>
public interface IOptimalRowCodec : IRowCodec
{
    /// <summary>Quantizes one row (same contract as <see cref="IRowCodec.Quantize"/>); per block, the result has unit gain
    /// against the input where the format takes it (<see cref="UnitGain"/>) and its weighted squared error (the weighting of
    /// <see cref="KeepBestBlocks.WeightingFor"/>) is never above that of <see cref="IRowCodec.Quantize"/>'s brought to unit gain.</summary>
    void QuantizeOptimal(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance, RowRole role);
}
