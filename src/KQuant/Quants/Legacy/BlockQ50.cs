using System.Runtime.InteropServices;

namespace KQuant.Quants.Legacy;

/// <summary>ggml's block_q5_0 (ggml-common.h): 32 weights in 22 bytes, 5.5 bits per weight. Weight i is D·(q_i − 16) with
/// q_i a 5-bit code: its low 4 bits are packed in <see cref="Qs"/> as in Q4_0, its fifth bit is bit i of the little-endian
/// 32-bit <see cref="Qh"/>.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct BlockQ50
{
    public const int Weights = 32;

    /// <summary>Scale, fp16 bits.</summary>
    public ushort D;
    public Bytes4 Qh;
    public Bytes16 Qs;
}
