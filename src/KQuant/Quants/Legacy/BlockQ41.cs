using System.Runtime.InteropServices;

namespace KQuant.Quants.Legacy;

/// <summary>ggml's block_q4_1 (ggml-common.h): 32 weights in 20 bytes, 5 bits per weight. Weight i is D·q_i + M with q_i a
/// 4-bit code; <see cref="Qs"/>[j] holds q_j in its low nibble and q_{j+16} in its high nibble.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct BlockQ41
{
    public const int Weights = 32;

    /// <summary>Scale, fp16 bits.</summary>
    public ushort D;
    /// <summary>Offset (the block minimum), fp16 bits.</summary>
    public ushort M;
    public Bytes16 Qs;
}
