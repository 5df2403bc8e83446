using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KQuant.Quants.Legacy;

/// <summary>Arithmetic shared by the legacy reference quantizers (quantize_row_q{4,5}_{0,1}_ref and quantize_row_q8_0_ref in
/// ggml-quants.c of llama.cpp v0.5.0), in a scalar and an AVX2 form that give identical results for finite input.</summary>
internal static class LegacyBlockMath
{
    public const int BlockWeights = 32;

    /// <summary>Blocks handed to the BlockSolvers group searches at once under importance: they run eight groups per SIMD
    /// pass, and the chunk's scratch stays on the stack.</summary>
    public const int WeightedChunkBlocks = 16;

    /// <summary>C's float-to-int conversion as x86's cvttss2si/cvttps2dq does it: truncation toward zero, and int.MinValue
    /// (0x80000000) for NaN, ±Inf and out-of-range input. ggml's <c>(int8_t)</c>/<c>(uint8_t)</c> casts compile to this and keep
    /// the low byte; .NET's own <c>(int)</c> cast saturates instead, so it cannot be used where the input may be ±Inf (a block
    /// of subnormals has an infinite inverse scale).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int TruncateLikeX86(float f) => f >= -2147483648f && f < 2147483648f ? (int)f : int.MinValue;

    /// <inheritdoc cref="TruncateLikeX86(float)"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> TruncateLikeX86(Vector256<float> v) => Avx.ConvertToVector256Int32WithTruncation(v);

    /// <summary>C's <c>(int8_t)</c> of an int on each lane: the low byte, sign-extended.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> LowByteSigned(Vector256<int> v) => Vector256.ShiftRightArithmetic(v << 24, 24);

    /// <summary>The value of largest magnitude among the 32 finite floats at <paramref name="block"/>, the first one on
    /// ties, +0 when all are zero: <see cref="BlockSolvers.SignedAbsMaxScalar"/>'s result, computed with a register-only
    /// tree reduction (the general lane-wise version costs several times more on one 32-weight block, the hot loop here).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SignedAbsMaxOf32(ref float block)
    {
        var a0 = Vector256.Abs(Vector256.LoadUnsafe(ref block));
        var a1 = Vector256.Abs(Vector256.LoadUnsafe(ref block, 8));
        var a2 = Vector256.Abs(Vector256.LoadUnsafe(ref block, 16));
        var a3 = Vector256.Abs(Vector256.LoadUnsafe(ref block, 24));
        var amax = HorizontalMax(Vector256.MaxNative(Vector256.MaxNative(a0, a1), Vector256.MaxNative(a2, a3)));
        if (amax == 0) return 0f;
        var first = FirstEqual(a0, a1, a2, a3, Vector256.Create(amax));
        return Unsafe.Add(ref block, first);
    }

    /// <summary>Minimum and maximum of the 32 finite floats at <paramref name="block"/> as ggml's
    /// <c>if (v &lt; min) min = v; if (v &gt; max) max = v;</c> scan finds them (<see cref="BlockSolvers.RangeScalar"/>): a zero
    /// extreme takes the sign of the block's first zero. Register-only, for the same reason as <see cref="SignedAbsMaxOf32"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (float Min, float Max) MinMaxOf32(ref float block)
    {
        var v0 = Vector256.LoadUnsafe(ref block);
        var v1 = Vector256.LoadUnsafe(ref block, 8);
        var v2 = Vector256.LoadUnsafe(ref block, 16);
        var v3 = Vector256.LoadUnsafe(ref block, 24);
        var min = HorizontalMin(Vector256.MinNative(Vector256.MinNative(v0, v1), Vector256.MinNative(v2, v3)));
        var max = HorizontalMax(Vector256.MaxNative(Vector256.MaxNative(v0, v1), Vector256.MaxNative(v2, v3)));
        // minps/maxps pick an arbitrary operand between +0 and -0; the scalar scan keeps the first zero it meets.
        if (min == 0 || max == 0)
        {
            var firstZero = Unsafe.Add(ref block, FirstEqual(v0, v1, v2, v3, Vector256<float>.Zero));
            if (min == 0) min = firstZero;
            if (max == 0) max = firstZero;
        }
        return (min, max);
    }

    /// <summary>ggml's σ² for weighting with an importance matrix: Σx²/n over the whole row, summed in order (the order fixes
    /// the rounding, so this stays a scalar loop).</summary>
    public static float MeanSquare(ReadOnlySpan<float> row)
    {
        float sum = 0;
        foreach (var v in row) sum += v * v;
        return sum / row.Length;
    }

    /// <summary>ggml's importance weighting of a block: weight_j = qw_j·√(σ² + x_j²).</summary>
    public static void ImportanceWeights(ReadOnlySpan<float> x, ReadOnlySpan<float> importance, float sigma2, Span<float> weights)
    {
        var j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var s2 = Vector256.Create(sigma2);
            for (; j <= x.Length - 8; j += 8)
            {
                var xv = Vector256.Create(x.Slice(j, 8));
                (Vector256.Create(importance.Slice(j, 8)) * Vector256.Sqrt(s2 + xv * xv)).CopyTo(weights.Slice(j, 8));
            }
        }
        for (; j < x.Length; j++) weights[j] = importance[j] * MathF.Sqrt(sigma2 + x[j] * x[j]);
    }

    /// <summary>Index of the first of 32 lanes equal to <paramref name="target"/>; the caller knows one is.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int FirstEqual(Vector256<float> v0, Vector256<float> v1, Vector256<float> v2, Vector256<float> v3,
        Vector256<float> target)
    {
        var mask = Vector256.Equals(v0, target).ExtractMostSignificantBits()
            | (Vector256.Equals(v1, target).ExtractMostSignificantBits() << 8)
            | (Vector256.Equals(v2, target).ExtractMostSignificantBits() << 16)
            | (Vector256.Equals(v3, target).ExtractMostSignificantBits() << 24);
        return BitOperations.TrailingZeroCount(mask);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HorizontalMax(Vector256<float> v)
    {
        var m = Vector128.MaxNative(v.GetLower(), v.GetUpper());
        m = Vector128.MaxNative(m, Vector128.Shuffle(m, Vector128.Create(2, 3, 0, 1)));
        m = Vector128.MaxNative(m, Vector128.Shuffle(m, Vector128.Create(1, 0, 3, 2)));
        return m.ToScalar();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HorizontalMin(Vector256<float> v)
    {
        var m = Vector128.MinNative(v.GetLower(), v.GetUpper());
        m = Vector128.MinNative(m, Vector128.Shuffle(m, Vector128.Create(2, 3, 0, 1)));
        m = Vector128.MinNative(m, Vector128.Shuffle(m, Vector128.Create(1, 0, 3, 2)));
        return m.ToScalar();
    }

    /// <summary>The block's 32 codes minus <paramref name="zeroPoint"/>, as floats: the levels the optimal search works on
    /// (<see cref="BlockLaneSearch"/>). The block's vector code access needs AVX2; without it, code by code.</summary>
    public static void CodesToLevels<TBlock>(in TBlock block, Span<float> levels, int zeroPoint) where TBlock : unmanaged, ILegacyBlock<TBlock>
    {
        if (!Avx2.IsSupported)
        {
            for (var j = 0; j < BlockWeights; j++) levels[j] = TBlock.LoadCode(in block, j) - zeroPoint;
            return;
        }
        var (q0, q1, q2, q3) = TBlock.LoadCodes(in block);
        var zero = Vector256.Create(zeroPoint);
        Vector256.ConvertToSingle(q0 - zero).CopyTo(levels);
        Vector256.ConvertToSingle(q1 - zero).CopyTo(levels[8..]);
        Vector256.ConvertToSingle(q2 - zero).CopyTo(levels[16..]);
        Vector256.ConvertToSingle(q3 - zero).CopyTo(levels[24..]);
    }

    /// <summary>Stores 32 levels (integers as floats) as the block's codes, level + <paramref name="zeroPoint"/>; inverse of
    /// <see cref="CodesToLevels{TBlock}"/>.</summary>
    public static void LevelsToCodes<TBlock>(ref TBlock block, ReadOnlySpan<float> levels, int zeroPoint) where TBlock : unmanaged, ILegacyBlock<TBlock>
    {
        if (!Avx2.IsSupported)
        {
            Span<byte> codes = stackalloc byte[BlockWeights];
            for (var j = 0; j < BlockWeights; j++) codes[j] = (byte)((int)levels[j] + zeroPoint);
            TBlock.StoreCodes(ref block, codes);
            return;
        }
        var zero = Vector256.Create(zeroPoint);
        TBlock.StoreCodes(ref block, Vector256.ConvertToInt32(Vector256.Create(levels)) + zero,
            Vector256.ConvertToInt32(Vector256.Create(levels[8..])) + zero, Vector256.ConvertToInt32(Vector256.Create(levels[16..])) + zero,
            Vector256.ConvertToInt32(Vector256.Create(levels[24..])) + zero);
    }
}
