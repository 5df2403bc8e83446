using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace KQuant.Quants.Legacy;

/// <summary>ggml's block_q5_0 (ggml-common.h): 32 weights in 22 bytes, 5.5 bits per weight. Weight i is D·(q_i − 16) with
/// q_i a 5-bit code: its low 4 bits are packed in <see cref="Qs"/> as in Q4_0, its fifth bit is bit i of the little-endian
/// 32-bit <see cref="Qh"/>.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal struct BlockQ50 : ILegacyBlock<BlockQ50>
{
    public const int Weights = 32;

    /// <summary>Scale, fp16 bits.</summary>
    public ushort D;
    public Bytes4 Qh;
    public Bytes16 Qs;

    public static int CodeBits => 5;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref ushort Scale(ref BlockQ50 block) => ref block.D;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreCodes(ref BlockQ50 block, Vector256<int> q0, Vector256<int> q1, Vector256<int> q2, Vector256<int> q3) =>
        NibblePacking.StoreFiveBitCodes(block.Qs, block.Qh, q0, q1, q2, q3);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreCodes(ref BlockQ50 block, ReadOnlySpan<byte> codes) => NibblePacking.StoreFiveBitCodes(block.Qs, block.Qh, codes);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector256<int> Q0, Vector256<int> Q1, Vector256<int> Q2, Vector256<int> Q3) LoadCodes(in BlockQ50 block) =>
        NibblePacking.LoadFiveBitCodes(block.Qs, block.Qh);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int LoadCode(in BlockQ50 block, int j) => NibblePacking.FiveBitCode(block.Qs, block.Qh, j);
}
