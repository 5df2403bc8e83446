using System.Runtime.InteropServices;

namespace KQuant.Quants.Legacy;

/// <summary>ggml's block_q4_0 (ggml-common.h): 32 weights in 18 bytes, 4.5 bits per weight. Weight i is D·(q_i − 8) with
/// q_i a 4-bit code; <see cref="Qs"/>[j] holds q_j in its low nibble and q_{j+16} in its high nibble.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct BlockQ40
{
    public const int Weights = 32;

    /// <summary>Scale, fp16 bits.</summary>
    public ushort D;
    public Bytes16 Qs;
}
