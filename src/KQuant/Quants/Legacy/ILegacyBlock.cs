using System.Runtime.Intrinsics;

namespace KQuant.Quants.Legacy;

/// <summary>What the legacy quantizers need to know of a block layout: how wide its 32 codes are and where they and the
/// fp16 scale go. Implemented by the block structs; the codecs are generic over it, and the JIT specializes them per
/// layout, so these calls cost nothing.</summary>
internal interface ILegacyBlock<TSelf> where TSelf : unmanaged, ILegacyBlock<TSelf>
{
    /// <summary>4 (codes in Qs only) or 5 (their fifth bits in Qh).</summary>
    static abstract int CodeBits { get; }

    /// <summary>The fp16 scale bits (ggml's d).</summary>
    static abstract ref ushort Scale(ref TSelf block);

    /// <summary>Stores 32 codes given as the lanes of four vectors (codes 0–7, 8–15, 16–23, 24–31); bits above
    /// <see cref="CodeBits"/> are dropped.</summary>
    static abstract void StoreCodes(ref TSelf block, Vector256<int> q0, Vector256<int> q1, Vector256<int> q2, Vector256<int> q3);

    /// <summary>Stores 32 codes given one per byte.</summary>
    static abstract void StoreCodes(ref TSelf block, ReadOnlySpan<byte> codes);

    /// <summary>The 32 codes as the lanes of four vectors (inverse of the vector <see cref="StoreCodes(ref TSelf, Vector256{int}, Vector256{int}, Vector256{int}, Vector256{int})"/>).</summary>
    static abstract (Vector256<int> Q0, Vector256<int> Q1, Vector256<int> Q2, Vector256<int> Q3) LoadCodes(in TSelf block);

    /// <summary>Code <paramref name="j"/> (0–31).</summary>
    static abstract int LoadCode(in TSelf block, int j);
}

/// <summary>A legacy layout with an offset as well as a scale (Q4_1, Q5_1): weight = d·code + m.</summary>
internal interface IAffineLegacyBlock<TSelf> : ILegacyBlock<TSelf> where TSelf : unmanaged, IAffineLegacyBlock<TSelf>
{
    /// <summary>The fp16 offset bits (ggml's m).</summary>
    static abstract ref ushort Offset(ref TSelf block);
}
