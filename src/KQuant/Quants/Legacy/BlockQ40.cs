using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace KQuant.Quants.Legacy;

/// <summary>ggml's block_q4_0 (ggml-common.h): 32 weights in 18 bytes, 4.5 bits per weight. Weight i is D·(q_i − 8) with
/// q_i a 4-bit code; <see cref="Qs"/>[j] holds q_j in its low nibble and q_{j+16} in its high nibble.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal struct BlockQ40 : ILegacyBlock<BlockQ40>
{
    public const int Weights = 32;

    /// <summary>Scale, fp16 bits.</summary>
    public ushort D;
    public Bytes16 Qs;

    public static int CodeBits => 4;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref ushort Scale(ref BlockQ40 block) => ref block.D;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreCodes(ref BlockQ40 block, Vector256<int> q0, Vector256<int> q1, Vector256<int> q2, Vector256<int> q3) =>
        NibblePacking.PackNibbles(q0, q1, q2, q3).StoreUnsafe(ref block.Qs[0]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreCodes(ref BlockQ40 block, ReadOnlySpan<byte> codes) => NibblePacking.PackNibbles(codes, block.Qs);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector256<int> Q0, Vector256<int> Q1, Vector256<int> Q2, Vector256<int> Q3) LoadCodes(in BlockQ40 block) =>
        NibblePacking.UnpackNibbles(Vector128.Create((ReadOnlySpan<byte>)block.Qs));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int LoadCode(in BlockQ40 block, int j) => NibblePacking.Nibble(block.Qs, j);
}
