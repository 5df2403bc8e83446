using System.Runtime.InteropServices;

namespace KQuant.Quants.IQ;

/// <summary>ggml's block_iq4_xs (ggml-common.h): 256 weights in 136 bytes, 4.25 bits per weight. Eight sub-blocks of 32
/// share the fp16 scale <see cref="D"/>; sub-block b has a 6-bit scale s_b (stored + 32: low nibble in
/// <see cref="ScalesL"/>[b/2] at bit 4·(b%2), top two bits in <see cref="ScalesH"/> at bit 2b), and weight i of it is
/// D·(s_b − 32)·kvalues_iq4nl[q_i]. <see cref="Qs"/> packs each sub-block's indices in 16 bytes as IQ4_NL does.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal struct BlockIQ4XS
{
    public const int Weights = 256;
    public const int SubBlocks = Weights / IQ4Grid.BlockWeights;

    /// <summary>Super-block scale, fp16 bits.</summary>
    public ushort D;
    /// <summary>Top two bits of each sub-block scale, little-endian.</summary>
    public ushort ScalesH;
    /// <summary>Low four bits of each sub-block scale, two per byte.</summary>
    public Bytes4 ScalesL;
    public Bytes128 Qs;
}
