using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KQuant.Quants;

/// <summary>AVX2 helpers that move 4- and 5-bit codes between 32-bit lanes and ggml's packed bytes. Every 32-weight group of the
/// formats here stores code j in the low nibble of byte j and code j+16 in the high nibble; a fifth bit, where there is one,
/// is bit j of a little-endian 32-bit word.</summary>
internal static class NibblePacking
{
    /// <summary>The low bytes of 16 ints (<paramref name="first"/> = lanes 0–7, <paramref name="second"/> = lanes 8–15), in order:
    /// what storing C ints into uint8_t does.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> LowBytes(Vector256<int> first, Vector256<int> second)
    {
        var byteMask = Vector256.Create(0xFF);
        // packusdw works per 128-bit half: [f0-3 s0-3 | f4-7 s4-7]; the permute restores [f0-7 | s0-7].
        var words = Avx2.PackUnsignedSaturate(first & byteMask, second & byteMask).AsUInt64();
        var ordered = Avx2.Permute4x64(words, 0b11_01_10_00).AsInt16();
        return Sse2.PackUnsignedSaturate(ordered.GetLower(), ordered.GetUpper());
    }

    /// <summary>Packs 32 codes (lanes of <paramref name="q0"/>..<paramref name="q3"/> = codes 0–31) into 16 bytes, code j in
    /// the low nibble and code j+16 in the high nibble of byte j. Bits above the nibble are dropped.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> PackNibbles(Vector256<int> q0, Vector256<int> q1, Vector256<int> q2, Vector256<int> q3)
    {
        var nibble = Vector256.Create(0x0F);
        return LowBytes((q0 & nibble) | ((q2 & nibble) << 4), (q1 & nibble) | ((q3 & nibble) << 4));
    }

    /// <summary>Bit 4 of each of 32 codes, code j at bit j: the qh word of Q5_0/Q5_1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint FifthBits(Vector256<int> q0, Vector256<int> q1, Vector256<int> q2, Vector256<int> q3) =>
        (q0 << 27).ExtractMostSignificantBits()
        | ((q1 << 27).ExtractMostSignificantBits() << 8)
        | ((q2 << 27).ExtractMostSignificantBits() << 16)
        | ((q3 << 27).ExtractMostSignificantBits() << 24);

    /// <summary>Scalar <see cref="PackNibbles(Vector256{int},Vector256{int},Vector256{int},Vector256{int})"/> of 32 levels
    /// that already fit in 4 bits (ggml's <c>L[j] | (L[j+16] &lt;&lt; 4)</c>).</summary>
    public static void PackNibbles(ReadOnlySpan<byte> levels, Span<byte> packed)
    {
        for (var j = 0; j < 16; j++) packed[j] = (byte)(levels[j] | (levels[j + 16] << 4));
    }

    /// <summary>Scalar form for 5-bit levels: the low nibbles packed as above and bit 4 of level j returned as bit j.</summary>
    public static uint PackFiveBitLevels(ReadOnlySpan<byte> levels, Span<byte> packed)
    {
        uint qh = 0;
        for (var j = 0; j < 16; j++)
        {
            packed[j] = (byte)((levels[j] & 0x0F) | ((levels[j + 16] & 0x0F) << 4));
            qh |= (uint)((levels[j] & 0x10) >> 4) << j;
            qh |= (uint)((levels[j + 16] & 0x10) >> 4) << (j + 16);
        }
        return qh;
    }

    /// <summary>Unpacks 16 bytes of nibbles into the 32 codes, in code order (inverse of <see cref="PackNibbles"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector256<int> Q0, Vector256<int> Q1, Vector256<int> Q2, Vector256<int> Q3) UnpackNibbles(Vector128<byte> packed)
    {
        var low = packed & Vector128.Create((byte)0x0F);
        var high = Vector128.ShiftRightLogical(packed, 4);
        return (Avx2.ConvertToVector256Int32(low), Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(low, 8)),
            Avx2.ConvertToVector256Int32(high), Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(high, 8)));
    }

    /// <summary>The 32 fifth bits of a qh word as 0 or 16 per code, in code order (inverse of <see cref="FifthBits"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector256<int> H0, Vector256<int> H1, Vector256<int> H2, Vector256<int> H3) UnpackFifthBits(uint qh)
    {
        var word = Vector256.Create(qh);
        var shifts = Vector256.Create(0u, 1, 2, 3, 4, 5, 6, 7);
        var eight = Vector256.Create(8u);
        var bit = Vector256.Create(1u);
        var h0 = Avx2.ShiftRightLogicalVariable(word, shifts) & bit;
        var h1 = Avx2.ShiftRightLogicalVariable(word, shifts + eight) & bit;
        var h2 = Avx2.ShiftRightLogicalVariable(word, shifts + eight + eight) & bit;
        var h3 = Avx2.ShiftRightLogicalVariable(word, shifts + eight + eight + eight) & bit;
        return ((h0 << 4).AsInt32(), (h1 << 4).AsInt32(), (h2 << 4).AsInt32(), (h3 << 4).AsInt32());
    }

    /// <summary>Code <paramref name="j"/> (0–31) of 16 bytes of nibbles.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Nibble(ReadOnlySpan<byte> packed, int j) => j < 16 ? packed[j] & 0x0F : packed[j - 16] >> 4;

    // 5-bit codes: low nibbles in 16 bytes (as above), fifth bits in a little-endian 32-bit word.

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreFiveBitCodes(Span<byte> qs, Span<byte> qh, Vector256<int> q0, Vector256<int> q1, Vector256<int> q2, Vector256<int> q3)
    {
        PackNibbles(q0, q1, q2, q3).StoreUnsafe(ref qs[0]);
        BinaryPrimitives.WriteUInt32LittleEndian(qh, FifthBits(q0, q1, q2, q3));
    }

    public static void StoreFiveBitCodes(Span<byte> qs, Span<byte> qh, ReadOnlySpan<byte> codes) =>
        BinaryPrimitives.WriteUInt32LittleEndian(qh, PackFiveBitLevels(codes, qs));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector256<int> Q0, Vector256<int> Q1, Vector256<int> Q2, Vector256<int> Q3) LoadFiveBitCodes(ReadOnlySpan<byte> qs, ReadOnlySpan<byte> qh)
    {
        var (q0, q1, q2, q3) = UnpackNibbles(Vector128.Create(qs));
        var (h0, h1, h2, h3) = UnpackFifthBits(BinaryPrimitives.ReadUInt32LittleEndian(qh));
        return (q0 | h0, q1 | h1, q2 | h2, q3 | h3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int FiveBitCode(ReadOnlySpan<byte> qs, ReadOnlySpan<byte> qh, int j) =>
        Nibble(qs, j) | (int)((BinaryPrimitives.ReadUInt32LittleEndian(qh) >> j) & 1) << 4;
}
