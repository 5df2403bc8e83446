using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace KQuant.Quants.Legacy;

/// <summary>ggml's block_q5_1 (ggml-common.h): 32 weights in 24 bytes, 6 bits per weight. Weight i is D·q_i + M with q_i a
/// 5-bit code split between <see cref="Qs"/> (low 4 bits, as in Q4_1) and bit i of the little-endian <see cref="Qh"/>.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal struct BlockQ51 : IAffineLegacyBlock<BlockQ51>
{
    public const int Weights = 32;

    /// <summary>Scale, fp16 bits.</summary>
    public ushort D;
    /// <summary>Offset (the block minimum), fp16 bits.</summary>
    public ushort M;
    public Bytes4 Qh;
    public Bytes16 Qs;

    public static int CodeBits => 5;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref ushort Scale(ref BlockQ51 block) => ref block.D;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref ushort Offset(ref BlockQ51 block) => ref block.M;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreCodes(ref BlockQ51 block, Vector256<int> q0, Vector256<int> q1, Vector256<int> q2, Vector256<int> q3) =>
        NibblePacking.StoreFiveBitCodes(block.Qs, block.Qh, q0, q1, q2, q3);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreCodes(ref BlockQ51 block, ReadOnlySpan<byte> codes) => NibblePacking.StoreFiveBitCodes(block.Qs, block.Qh, codes);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector256<int> Q0, Vector256<int> Q1, Vector256<int> Q2, Vector256<int> Q3) LoadCodes(in BlockQ51 block) =>
        NibblePacking.LoadFiveBitCodes(block.Qs, block.Qh);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int LoadCode(in BlockQ51 block, int j) => NibblePacking.FiveBitCode(block.Qs, block.Qh, j);
}
