using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace KQuant.Quants.Legacy;

/// <summary>ggml's block_q4_1 (ggml-common.h): 32 weights in 20 bytes, 5 bits per weight. Weight i is D·q_i + M with q_i a
/// 4-bit code; <see cref="Qs"/>[j] holds q_j in its low nibble and q_{j+16} in its high nibble.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal struct BlockQ41 : IAffineLegacyBlock<BlockQ41>
{
    public const int Weights = 32;

    /// <summary>Scale, fp16 bits.</summary>
    public ushort D;
    /// <summary>Offset (the block minimum), fp16 bits.</summary>
    public ushort M;
    public Bytes16 Qs;

    public static int CodeBits => 4;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref ushort Scale(ref BlockQ41 block) => ref block.D;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref ushort Offset(ref BlockQ41 block) => ref block.M;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreCodes(ref BlockQ41 block, Vector256<int> q0, Vector256<int> q1, Vector256<int> q2, Vector256<int> q3) =>
        NibblePacking.PackNibbles(q0, q1, q2, q3).StoreUnsafe(ref block.Qs[0]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreCodes(ref BlockQ41 block, ReadOnlySpan<byte> codes) => NibblePacking.PackNibbles(codes, block.Qs);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector256<int> Q0, Vector256<int> Q1, Vector256<int> Q2, Vector256<int> Q3) LoadCodes(in BlockQ41 block) =>
        NibblePacking.UnpackNibbles(Vector128.Create((ReadOnlySpan<byte>)block.Qs));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int LoadCode(in BlockQ41 block, int j) => NibblePacking.Nibble(block.Qs, j);
}
