using System.Runtime.InteropServices;

namespace KQuant.Model.Kernels;

// Weight blocks rewritten once per matrix product into the shape the AVX2 integer dot products want: whole bytes instead
// of packed bits, scales widened to int16 lanes, offsets folded into "mins". Decoding costs one pass over a weight row;
// the row is then multiplied with every token of the batch, so the unpacking of each format is paid once per row rather
// than once per token. The integer sums stay those of ggml's kernels; only the order of float additions differs.

/// <summary>A super-block of 256 weights with non-negative codes (Q2_K..Q6_K): weight i in 16-group g is
/// D·Scale_g·Value_i − DMin·Min_g. Formats with a signed range store code + offset and fold offset·Scale_g into Min_g.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct DecodedSuperBlock
{
    public const int Weights = 256;

    /// <summary>Codes 0..63 (maddubs needs them unsigned; 63·127·2 cannot saturate its int16 pair sums).</summary>
    public fixed byte Values[Weights];
    /// <summary>For each 32 weights k: 8 int16 lanes of the scale of group 2k, then 8 of group 2k+1 (the lanes
    /// _mm256_maddubs_epi16 leaves for those bytes).</summary>
    public fixed short Scales[2 * Weights / 4];
    /// <summary>Per 16-group min, multiplied with the activations' sums of 16 codes.</summary>
    public fixed short Mins[16];
    public float D;
    public float DMin;
    private fixed float _padding[6];
}

/// <summary>A super-block of 256 weights with signed codes and no offset (IQ4_XS): weight i of 32-group k is
/// D·Scale_k·Signed_i. The dot product takes |Signed| against the activation with Signed's sign (ggml's sign trick).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct DecodedSignedSuperBlock
{
    public const int Weights = 256;

    public fixed byte Magnitudes[Weights];
    public fixed sbyte Signed[Weights];
    /// <summary>16 int16 lanes per 32 weights, as in <see cref="DecodedSuperBlock.Scales"/>.</summary>
    public fixed short Scales[2 * Weights / 4];
    public float D;
    private fixed float _padding[7];
}

/// <summary>A 32-weight block of the legacy formats and IQ4_NL: weight i is D·Code_i (+ M for Q4_1/Q5_1, whose codes
/// are non-negative). Signed formats keep |code| in <see cref="Magnitudes"/> and the code in <see cref="Signed"/>;
/// unsigned ones use <see cref="Magnitudes"/> alone.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct DecodedBlock32
{
    public const int Weights = 32;

    public fixed byte Magnitudes[Weights];
    public fixed sbyte Signed[Weights];
    public float D;
    public float M;
    private fixed float _padding[6];
}
