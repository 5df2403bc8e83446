using System.Runtime.InteropServices;

namespace KQuant.Quants.Legacy;

/// <summary>ggml's block_q5_1 (ggml-common.h): 32 weights in 24 bytes, 6 bits per weight. Weight i is D·q_i + M with q_i a
/// 5-bit code split between <see cref="Qs"/> (low 4 bits, as in Q4_1) and bit i of the little-endian <see cref="Qh"/>.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct BlockQ51
{
    public const int Weights = 32;

    /// <summary>Scale, fp16 bits.</summary>
    public ushort D;
    /// <summary>Offset (the block minimum), fp16 bits.</summary>
    public ushort M;
    public Bytes4 Qh;
    public Bytes16 Qs;
}
