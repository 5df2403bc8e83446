using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using KQuant.Quants.Legacy;

namespace KQuant.Quants.IQ;

/// <summary>The 16-level non-linear grid of IQ4_NL and IQ4_XS and the per-32-weight scale search both formats run
/// (quantize_row_iq4_nl_impl in ggml-quants.c of llama.cpp v0.5.0, with ntry = 7 as quantize_iq4_nl and quantize_iq4_xs
/// pass it). Scalar and AVX2 forms give identical results: every sum is accumulated in ggml's order.</summary>
internal static class IQ4Grid
{
    /// <summary>Weights per scale group.</summary>
    public const int BlockWeights = 32;

    /// <summary>ggml's ntry: the search tries scales (itry + Levels[0]) / max for itry in −7..7.</summary>
    private const int ScaleTries = 7;

    /// <summary>kvalues_iq4nl (ggml-common.h): the dequantized value of each 4-bit index, before scaling.</summary>
    public static ReadOnlySpan<sbyte> Levels => [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

    /// <summary>Index of the level nearest to <paramref name="x"/> (ggml's best_index_int8 over <see cref="Levels"/>): a
    /// binary search for the bracketing pair, then the nearer of the two by float differences, the upper one on ties.
    /// NaN gives 15.</summary>
    public static int NearestLevel(float x)
    {
        var levels = Levels;
        if (x <= levels[0]) return 0;
        if (x >= levels[15]) return 15;
        int low = 0, high = 15;
        while (high - low > 1)
        {
            var mid = (low + high) / 2;
            if (x < levels[mid]) high = mid;
            else low = mid;
        }
        return x - levels[high - 1] < levels[high] - x ? high - 1 : high;
    }

    /// <summary>The scale of one 32-weight group (the per-group part of quantize_row_iq4_nl_impl): 0 when the group's largest
    /// magnitude is below GROUP_MAX_EPS; otherwise the weighted least-squares scale Σwqx/Σwq² of the best of 16 candidate
    /// quantizations, the first from −max/Levels[0] and then (itry + Levels[0])/max for itry = −7..7, where a candidate
    /// replaces the best only if it fits strictly better.</summary>
    public static float FitScale(ReadOnlySpan<float> x, ReadOnlySpan<float> weights)
    {
        var max = BlockSolvers.SignedAbsMaxScalar(x).Max;
        if (MathF.Abs(max) < BlockSolvers.GroupMaxEps) return 0f;
        var (sumqx, sumq2) = WeightedSums(x, weights, 1 / (-max / Levels[0]));
        var d = sumq2 > 0 ? sumqx / sumq2 : 0f;
        var best = d * sumqx;
        for (var itry = -ScaleTries; itry <= ScaleTries; itry++)
        {
            (sumqx, sumq2) = WeightedSums(x, weights, (itry + Levels[0]) / max);
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2)
            {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        return d;
    }

    private static (float SumQX, float SumQ2) WeightedSums(ReadOnlySpan<float> x, ReadOnlySpan<float> weights, float inverseScale)
    {
        float sumqx = 0, sumq2 = 0;
        for (var j = 0; j < x.Length; j++)
        {
            float q = Levels[NearestLevel(inverseScale * x[j])];
            var w = weights[j];
            sumqx += w * q * x[j];
            sumq2 += w * q * q;
        }
        return (sumqx, sumq2);
    }

    /// <summary>Writes the nearest-level index of <paramref name="inverseScale"/>·x_j for 32 weights as packed nibbles.</summary>
    public static void QuantizeGroup(ReadOnlySpan<float> x, float inverseScale, Span<byte> packed)
    {
        for (var j = 0; j < 16; j++)
        {
            packed[j] = (byte)(NearestLevel(inverseScale * x[j]) | (NearestLevel(inverseScale * x[j + 16]) << 4));
        }
    }

    /// <summary>Dequantizes one group of 32: y_j = scale·Levels[index_j] (dequantize_row_iq4_nl / _iq4_xs).</summary>
    public static void DequantizeGroupScalar(ReadOnlySpan<byte> packed, float scale, Span<float> y)
    {
        var levels = Levels;
        for (var j = 0; j < 16; j++)
        {
            y[j] = scale * levels[packed[j] & 0x0F];
            y[j + 16] = scale * levels[packed[j] >> 4];
        }
    }

    // ---- AVX2 ----
    // The search runs all 16 candidates at once, one per lane (lane 0 the first guess, lanes 1-15 itry = -7..7), walking
    // the 32 weights in order, so each lane adds its terms in exactly ggml's order. Nearest levels come from a branch-free
    // binary search over permute tables.

    /// <summary>Candidate numerators itry + Levels[0] for lanes 1-15 (lane 0 is replaced by the first guess).</summary>
    private static readonly Vector256<float> TryNumeratorsLow = Vector256.Create(0f, -134, -133, -132, -131, -130, -129, -128);
    private static readonly Vector256<float> TryNumeratorsHigh = Vector256.Create(-127f, -126, -125, -124, -123, -122, -121, -120);

    // Tables indexed by (bracket so far) / 2: at the step that may add s, entry i is the level at 2i + s.
    private static readonly Vector256<float> Step4Levels = LevelTable(i => Math.Min(2 * i + 4, 15));
    private static readonly Vector256<float> Step2Levels = LevelTable(i => Math.Min(2 * i + 2, 15));
    private static readonly Vector256<float> OddLevels = LevelTable(i => 2 * i + 1);
    private static readonly Vector256<float> EvenLevels = LevelTable(i => 2 * i);
    // The level above an odd bracket; past the top it repeats level 15 so that x ≥ 113 (and NaN) resolve to index 15.
    private static readonly Vector256<float> NextEvenLevels = LevelTable(i => Math.Min(2 * i + 2, 15));

    private static Vector256<float> LevelTable(Func<int, int> levelIndex)
    {
        Span<float> table = stackalloc float[8];
        for (var i = 0; i < 8; i++) table[i] = Levels[levelIndex(i)];
        return Vector256.Create<float>(table);
    }

    /// <summary><see cref="NearestLevel(float)"/> on 8 lanes: the index, and the level value as float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> NearestLevel(Vector256<float> x, out Vector256<float> value)
    {
        // "Not less than" is true for NaN, so NaN climbs to the top bracket as ggml's search does.
        var bracket = Avx.CompareNotLessThan(x, Vector256.Create((float)Levels[8])).AsInt32() & Vector256.Create(8);
        bracket |= Avx.CompareNotLessThan(x, Avx2.PermuteVar8x32(Step4Levels, bracket >> 1)).AsInt32() & Vector256.Create(4);
        bracket |= Avx.CompareNotLessThan(x, Avx2.PermuteVar8x32(Step2Levels, bracket >> 1)).AsInt32() & Vector256.Create(2);
        var pair = bracket >> 1;
        var odd = Avx2.PermuteVar8x32(OddLevels, pair);
        var aboveOdd = Avx.CompareNotLessThan(x, odd);
        var lower = Vector256.ConditionalSelect(aboveOdd, odd, Avx2.PermuteVar8x32(EvenLevels, pair));
        var upper = Vector256.ConditionalSelect(aboveOdd, Avx2.PermuteVar8x32(NextEvenLevels, pair), odd);
        var nearerLower = Avx.CompareLessThan(x - lower, upper - x);
        value = Vector256.ConditionalSelect(nearerLower, lower, upper);
        // index = bracket + (aboveOdd ? 1 : 0) + (nearerLower ? 0 : 1), at most 15
        var index = bracket - aboveOdd.AsInt32() + nearerLower.AsInt32() + Vector256<int>.One;
        return Vector256.Min(index, Vector256.Create(15));
    }

    /// <summary><see cref="FitScale(ReadOnlySpan{float}, ReadOnlySpan{float})"/> of the 32 weights at <paramref name="x"/>
    /// with the weights at <paramref name="weights"/>, all 16 candidates evaluated together.</summary>
    public static float FitScale(ref float x, ref float weights)
    {
        var max = LegacyBlockMath.SignedAbsMaxOf32(ref x);
        if (MathF.Abs(max) < BlockSolvers.GroupMaxEps) return 0f;
        var maxV = Vector256.Create(max);
        var idLow = (TryNumeratorsLow / maxV).WithElement(0, 1 / (-max / Levels[0]));
        var idHigh = TryNumeratorsHigh / maxV;
        Vector256<float> sumqxLow = default, sumq2Low = default, sumqxHigh = default, sumq2High = default;
        for (var j = 0; j < BlockWeights; j++)
        {
            var xj = Vector256.Create(Unsafe.Add(ref x, j));
            var wj = Vector256.Create(Unsafe.Add(ref weights, j));
            NearestLevel(idLow * xj, out var qLow);
            NearestLevel(idHigh * xj, out var qHigh);
            var wqLow = wj * qLow;
            var wqHigh = wj * qHigh;
            sumqxLow += wqLow * xj;
            sumq2Low += wqLow * qLow;
            sumqxHigh += wqHigh * xj;
            sumq2High += wqHigh * qHigh;
        }

        var d = sumq2Low[0] > 0 ? sumqxLow[0] / sumq2Low[0] : 0f;
        var best = d * sumqxLow[0];
        for (var lane = 1; lane < 16; lane++)
        {
            var sumqx = lane < 8 ? sumqxLow[lane] : sumqxHigh[lane - 8];
            var sumq2 = lane < 8 ? sumq2Low[lane] : sumq2High[lane - 8];
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2)
            {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        return d;
    }

    /// <summary><see cref="QuantizeGroup(ReadOnlySpan{float}, float, Span{byte})"/> of the 32 weights at <paramref name="x"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void QuantizeGroup(ref float x, float inverseScale, ref byte packed)
    {
        var id = Vector256.Create(inverseScale);
        var q0 = NearestLevel(Vector256.LoadUnsafe(ref x) * id, out _);
        var q1 = NearestLevel(Vector256.LoadUnsafe(ref x, 8) * id, out _);
        var q2 = NearestLevel(Vector256.LoadUnsafe(ref x, 16) * id, out _);
        var q3 = NearestLevel(Vector256.LoadUnsafe(ref x, 24) * id, out _);
        NibblePacking.PackNibbles(q0, q1, q2, q3).StoreUnsafe(ref packed);
    }

    /// <summary><see cref="DequantizeGroupScalar"/> with the level lookup done by pshufb on the packed nibbles.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void DequantizeGroup(ReadOnlySpan<byte> packed, float scale, Span<float> y)
    {
        var table = Vector128.Create(Levels);
        var nibbles = Vector128.Create(packed);
        var low = Ssse3.Shuffle(table, (nibbles & Vector128.Create((byte)0x0F)).AsSByte());
        var high = Ssse3.Shuffle(table, Vector128.ShiftRightLogical(nibbles, 4).AsSByte());
        var d = Vector256.Create(scale);
        ref var dst = ref MemoryMarshal.GetReference(y);
        (d * Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(low))).StoreUnsafe(ref dst);
        (d * Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(low, 8)))).StoreUnsafe(ref dst, 8);
        (d * Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(high))).StoreUnsafe(ref dst, 16);
        (d * Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(high, 8)))).StoreUnsafe(ref dst, 24);
    }

    /// <summary>The per-weight error weights of a group: x² without importance, qw·√(σ² + x²) with it.</summary>
    public static void GroupWeights(ReadOnlySpan<float> x, ReadOnlySpan<float> importance, float sigma2, Span<float> weights)
    {
        if (importance.IsEmpty)
        {
            for (var j = 0; j < x.Length; j++) weights[j] = x[j] * x[j];
        }
        else
        {
            LegacyBlockMath.ImportanceWeights(x, importance, sigma2, weights);
        }
    }

    /// <summary>ggml's σ² for IQ4: 2·Σx²/n over the super-block, summed in order.</summary>
    public static float Sigma2(ReadOnlySpan<float> x)
    {
        float sum = 0;
        foreach (var v in x) sum += v * v;
        return sum * (2f / x.Length);
    }
}
