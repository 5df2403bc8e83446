using System.Runtime.InteropServices;

namespace KQuant.Quants.Legacy;

/// <summary>ggml's block_q8_0 (ggml-common.h): 32 weights in 34 bytes, 8.5 bits per weight. Weight i is D·q_i with q_i the
/// signed byte <see cref="Qs"/>[i].</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal struct BlockQ80
{
    public const int Weights = 32;

    /// <summary>Scale, fp16 bits.</summary>
    public ushort D;
    /// <summary>Signed 8-bit codes (stored as bytes; read them as sbyte).</summary>
    public Bytes32 Qs;
}
