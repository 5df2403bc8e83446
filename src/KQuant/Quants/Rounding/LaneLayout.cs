using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KQuant.Quants;

/// <summary>The lane layout both optimal searches work in (<see cref="SuperBlockSearch"/>: one sub-block per lane;
/// <see cref="BlockLaneSearch"/>: one 32-weight block per lane): groups transposed so that a vector holds the same weight
/// of eight groups, and unchecked vector access to such spans.</summary>
internal static class LaneLayout
{
    public const int Lanes = 8;

    /// <summary>source[j·length + i] → destination[i·subBlocks + j] (groups of <paramref name="length"/> become lanes): 8×8 tiles through AVX shuffles where available.</summary>
    public static void Transpose(ReadOnlySpan<float> source, Span<float> destination, int subBlocks, int length)
    {
        if (!Avx.IsSupported || length % Lanes != 0)
        {
            for (var j = 0; j < subBlocks; j++)
            {
                for (var i = 0; i < length; i++) destination[i * subBlocks + j] = source[j * length + i];
            }
            return;
        }
        for (var j0 = 0; j0 < subBlocks; j0 += Lanes)
        {
            for (var i0 = 0; i0 < length; i0 += Lanes)
            {
                // Rows r_k = sub-block j0 + k, weights i0..i0+7; out column m = weight i0 + m of the 8 sub-blocks.
                var at = j0 * length + i0;
                var (r0, r1, r2, r3) = (Load(source, at), Load(source, at + length), Load(source, at + 2 * length), Load(source, at + 3 * length));
                var (r4, r5, r6, r7) = (Load(source, at + 4 * length), Load(source, at + 5 * length), Load(source, at + 6 * length), Load(source, at + 7 * length));
                var (t0, t1, t2, t3) = (Avx.UnpackLow(r0, r1), Avx.UnpackHigh(r0, r1), Avx.UnpackLow(r2, r3), Avx.UnpackHigh(r2, r3));
                var (t4, t5, t6, t7) = (Avx.UnpackLow(r4, r5), Avx.UnpackHigh(r4, r5), Avx.UnpackLow(r6, r7), Avx.UnpackHigh(r6, r7));
                var (u0, u1, u2, u3) = (Avx.Shuffle(t0, t2, 0x44), Avx.Shuffle(t0, t2, 0xEE), Avx.Shuffle(t1, t3, 0x44), Avx.Shuffle(t1, t3, 0xEE));
                var (u4, u5, u6, u7) = (Avx.Shuffle(t4, t6, 0x44), Avx.Shuffle(t4, t6, 0xEE), Avx.Shuffle(t5, t7, 0x44), Avx.Shuffle(t5, t7, 0xEE));
                var to = i0 * subBlocks + j0;
                Store(destination, to, Avx.Permute2x128(u0, u4, 0x20));
                Store(destination, to + subBlocks, Avx.Permute2x128(u1, u5, 0x20));
                Store(destination, to + 2 * subBlocks, Avx.Permute2x128(u2, u6, 0x20));
                Store(destination, to + 3 * subBlocks, Avx.Permute2x128(u3, u7, 0x20));
                Store(destination, to + 4 * subBlocks, Avx.Permute2x128(u0, u4, 0x31));
                Store(destination, to + 5 * subBlocks, Avx.Permute2x128(u1, u5, 0x31));
                Store(destination, to + 6 * subBlocks, Avx.Permute2x128(u2, u6, 0x31));
                Store(destination, to + 7 * subBlocks, Avx.Permute2x128(u3, u7, 0x31));
            }
        }
    }

    public static Vector256<float> Load(ReadOnlySpan<float> values, int at)
    {
        Debug.Assert(at + Lanes <= values.Length);
        return Vector256.LoadUnsafe(ref MemoryMarshal.GetReference(values), (nuint)at);
    }

    public static void Store(Span<float> values, int at, Vector256<float> value)
    {
        Debug.Assert(at + Lanes <= values.Length);
        value.StoreUnsafe(ref MemoryMarshal.GetReference(values), (nuint)at);
    }

    /// <summary>Each lane's value of largest magnitude (the first on ties, as ggml's scans find it) over transposed values
    /// (value i of lane b at i·8 + b), and that magnitude.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LargestValues(ReadOnlySpan<float> values, out Vector256<float> magnitude)
    {
        Vector256<float> largest = Vector256<float>.Zero;
        magnitude = Vector256<float>.Zero;
        for (var at = 0; at < values.Length; at += Lanes)
        {
            var x = Load(values, at);
            var larger = Vector256.GreaterThan(Vector256.Abs(x), magnitude);
            largest = Vector256.ConditionalSelect(larger, x, largest);
            magnitude = Vector256.ConditionalSelect(larger, Vector256.Abs(x), magnitude);
        }
        return largest;
    }

    /// <summary>Entry <paramref name="index"/> (0–15) of a 16-entry table held as two vectors, in every lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Lookup16(Vector256<float> low, Vector256<float> high, Vector256<int> index)
    {
        if (Avx2.IsSupported)
        {
            // vpermps reads the low three bits of each index: both halves looked up, then the one the index is in.
            var fromLow = Avx2.PermuteVar8x32(low, index);
            var fromHigh = Avx2.PermuteVar8x32(high, index);
            return Avx.BlendVariable(fromLow, fromHigh, Vector256.GreaterThan(index, Vector256.Create(7)).AsSingle());
        }
        // Shuffle gives 0 for indices outside 0..7, so exactly one half contributes.
        return Vector256.Shuffle(low, index) + Vector256.Shuffle(high, index - Vector256.Create(Lanes));
    }
}
