using System.Runtime.InteropServices;

namespace KQuant.Quants.IQ;

/// <summary>ggml's block_iq4_nl (ggml-common.h): 32 weights in 18 bytes, 4.5 bits per weight. Weight i is
/// D·kvalues_iq4nl[q_i] with q_i a 4-bit index into the non-linear grid (<see cref="IQ4Grid.Levels"/>);
/// <see cref="Qs"/>[j] holds q_j in its low nibble and q_{j+16} in its high nibble.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal struct BlockIQ4NL
{
    public const int Weights = 32;

    /// <summary>Scale, fp16 bits.</summary>
    public ushort D;
    public Bytes16 Qs;
}
