using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Numerics.Tensors;
using static KQuant.Quants.LaneLayout;

namespace KQuant.Quants;

/// <summary>
/// Q6_K's optimal path: every sub-block takes the best of a window of its stored integer scales, each scored with every
/// weight on its nearest level. Q6_K's sub-blocks are 16 weights on 64 levels under 8-bit scales, so a sub-block's error
/// is a jagged function of its scale, and the scale that puts its largest value on an end level (about what the reference
/// keeps) is seldom the best: for 95% of debdocs-llama-10m's sub-blocks the best was 1.0–1.2× as coarse, a stretch that
/// holds only a few dozen representable scales D·sc. Trying every sc under the reference's D gave 0.875 of the
/// reference's MSE there; the search that moved from the reference's levels (SuperBlockSearch) had reached 0.975. So the
/// sweep tries them: per sub-block <see cref="Candidates"/> integer scales from the one that puts its value of largest
/// magnitude on the lowest level (−32), and as many from the one that puts it on the highest (31), away from zero, each
/// scored by its weighted error with nearest levels. D is set so that the block's largest value reaches −32 at integer
/// scale 127/<see cref="Headroom"/>, which keeps every window inside the 8-bit range. Eight sub-blocks at once, one per
/// SIMD lane (transposed as <see cref="SuperBlockSearch"/> does), four candidates per pass.
/// </summary>
[SkipLocalsInit]
internal static class IntegerScaleSweep
{
    private const int SubBlock = 16, SubBlocks = 16, SuperBlock = SubBlock * SubBlocks;
    private const int LowestLevel = -32, HighestLevel = 31, LowestScale = -128, HighestScale = 127;

    /// <summary>Integer scales tried per end level and sub-block. Per sub-block 2 × 16 candidates reached 0.876 of the
    /// reference's MSE on debdocs-llama-10m (c = 1), 2 × 24 0.871, every scale under the reference's D 0.875.</summary>
    public const int Candidates = 16;

    /// <summary>The block's largest value sits on an end level at integer scale 127/Headroom, so that its sub-block's window
    /// of scales above that one stays below 127. 1.15 gave 0.876 of the reference's MSE, 1.25 0.875 (with 24 candidates),
    /// the reference's own D 0.893.</summary>
    public const float Headroom = 1.15f;

    /// <summary>Encodes one super-block: the integer sub-block scales, the levels (q + 32, 0–63, in weight order) and D.
    /// False when the block has nothing to encode (all values below ggml's GROUP_MAX_EPS) or D is not a finite non-zero
    /// fp16; the outputs then hold nothing usable.</summary>
    public static bool Encode(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<sbyte> scales, Span<byte> levels, out Half d)
    {
        d = Half.Zero;
        var largest = TensorPrimitives.MaxMagnitude(x[..SuperBlock]);
        if (MathF.Abs(largest) < BlockSolvers.GroupMaxEps) return false;
        d = GgmlFp16.FromSingle(MathF.Abs(largest) / -LowestLevel * Headroom / HighestScale);
        var dValue = (float)d;
        if (dValue == 0 || !float.IsFinite(dValue)) return false;

        Span<float> lanes = stackalloc float[3 * Lanes * SubBlock + SuperBlock];
        const int half = Lanes * SubBlock;
        var xs = lanes[..half];
        var ws = lanes.Slice(half, half);
        var ts = lanes.Slice(2 * half, half);
        var levelValues = lanes[(3 * half)..];
        var (low, high) = (Vector256.Create((float)LowestLevel), Vector256.Create((float)HighestLevel));
        for (var g = 0; g < SubBlocks; g += Lanes)
        {
            Transpose(x.Slice(g * SubBlock, half), xs, Lanes, SubBlock);
            Transpose(w.Slice(g * SubBlock, half), ws, Lanes, SubBlock);
            var best = ChooseScales(xs, ws, dValue);
            for (var j = 0; j < Lanes; j++) scales[g + j] = (sbyte)best.GetElement(j);
            // The levels for the chosen scales (q + 32; level 0, stored as 32, where the scale is 0), back in weight order.
            var inverse = Vector256<float>.One / (Vector256.Create(dValue) * Vector256.ConvertToSingle(best));
            inverse = Vector256.ConditionalSelect(Vector256.Equals(best, Vector256<int>.Zero).AsSingle(), Vector256<float>.Zero, inverse);
            for (var at = 0; at < half; at += Lanes)
                Store(ts, at, Vector256.Min(Vector256.Max(Vector256.Round(Load(xs, at) * inverse), low), high) - low);
            Transpose(ts, levelValues.Slice(g * SubBlock, half), SubBlock, Lanes);
        }
        for (var i = 0; i < SuperBlock; i += 4 * Lanes)
        {
            var (a, b) = (Vector256.ConvertToInt32(Load(levelValues, i)), Vector256.ConvertToInt32(Load(levelValues, i + Lanes)));
            var (c, e) = (Vector256.ConvertToInt32(Load(levelValues, i + 2 * Lanes)), Vector256.ConvertToInt32(Load(levelValues, i + 3 * Lanes)));
            Vector256.Narrow(Vector256.Narrow(a, b), Vector256.Narrow(c, e)).AsByte().CopyTo(levels[i..]);
        }
        return true;
    }

    /// <summary>The best integer scale of each of eight sub-blocks (transposed: weight i of lane b at i·8 + b) under D:
    /// 0 (every weight on level 0) unless a candidate has a lower weighted error.</summary>
    private static Vector256<int> ChooseScales(ReadOnlySpan<float> xs, ReadOnlySpan<float> ws, float d)
    {
        var largest = LargestValues(xs, out _);
        var bestError = Vector256<float>.Zero;
        for (var at = 0; at < xs.Length; at += Lanes)
        {
            var x = Load(xs, at);
            bestError = Vector256.FusedMultiplyAdd(Load(ws, at) * x, x, bestError);
        }
        var bestScale = Vector256<int>.Zero;
        var dVector = Vector256.Create(d);
        foreach (var endLevel in (ReadOnlySpan<float>)[LowestLevel, HighestLevel])
        {
            // The integer scale that puts the largest value on this end level, then away from zero one step at a time.
            var anchor = largest / (dVector * Vector256.Create(endLevel));
            var start = Vector256.ConvertToInt32(Vector256.Round(anchor));
            var step = Vector256.ConditionalSelect(Vector256.LessThan(anchor, Vector256<float>.Zero).AsInt32(), Vector256.Create(-1), Vector256<int>.One);
            for (var k = 0; k < Candidates; k += 4)
            {
                var scaleA = Vector256.Clamp(start + step * Vector256.Create(k), Vector256.Create(LowestScale), Vector256.Create(HighestScale));
                var scaleB = Vector256.Clamp(scaleA + step, Vector256.Create(LowestScale), Vector256.Create(HighestScale));
                var scaleC = Vector256.Clamp(scaleB + step, Vector256.Create(LowestScale), Vector256.Create(HighestScale));
                var scaleD = Vector256.Clamp(scaleC + step, Vector256.Create(LowestScale), Vector256.Create(HighestScale));
                var (errorA, errorB, errorC, errorD) = ErrorsOfFour(xs, ws, dVector * Vector256.ConvertToSingle(scaleA),
                    dVector * Vector256.ConvertToSingle(scaleB), dVector * Vector256.ConvertToSingle(scaleC), dVector * Vector256.ConvertToSingle(scaleD));
                Keep(errorA, scaleA, ref bestError, ref bestScale);
                Keep(errorB, scaleB, ref bestError, ref bestScale);
                Keep(errorC, scaleC, ref bestError, ref bestScale);
                Keep(errorD, scaleD, ref bestError, ref bestScale);
            }
        }
        return bestScale;
    }

    /// <summary>Takes a candidate's scale where its error is lower. A scale of 0 has no inverse (its error is NaN or its
    /// levels meaningless): it is the starting choice already.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Keep(Vector256<float> error, Vector256<int> scale, ref Vector256<float> bestError, ref Vector256<int> bestScale)
    {
        var better = Vector256.LessThan(error, bestError) & ~Vector256.Equals(scale, Vector256<int>.Zero).AsSingle();
        bestError = Vector256.ConditionalSelect(better, error, bestError);
        bestScale = Vector256.ConditionalSelect(better.AsInt32(), scale, bestScale);
    }

    /// <summary>Σ w·(x − s·q)² per lane for four scales, q the nearest level to x/s.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float>, Vector256<float>, Vector256<float>, Vector256<float>) ErrorsOfFour(ReadOnlySpan<float> xs,
        ReadOnlySpan<float> ws, Vector256<float> scaleA, Vector256<float> scaleB, Vector256<float> scaleC, Vector256<float> scaleD)
    {
        var (inverseA, inverseB) = (Vector256<float>.One / scaleA, Vector256<float>.One / scaleB);
        var (inverseC, inverseD) = (Vector256<float>.One / scaleC, Vector256<float>.One / scaleD);
        Vector256<float> errorA = default, errorB = default, errorC = default, errorD = default;
        for (var at = 0; at < xs.Length; at += Lanes)
        {
            var (x, w) = (Load(xs, at), Load(ws, at));
            errorA = AddError(x, w, scaleA, inverseA, errorA);
            errorB = AddError(x, w, scaleB, inverseB, errorB);
            errorC = AddError(x, w, scaleC, inverseC, errorC);
            errorD = AddError(x, w, scaleD, inverseD, errorD);
        }
        return (errorA, errorB, errorC, errorD);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> AddError(Vector256<float> x, Vector256<float> w, Vector256<float> scale, Vector256<float> inverse,
        Vector256<float> error)
    {
        var level = Vector256.Min(Vector256.Max(Vector256.Round(x * inverse), Vector256.Create((float)LowestLevel)),
            Vector256.Create((float)HighestLevel));
        var residual = Vector256.FusedMultiplyAdd(-scale, level, x);
        return Vector256.FusedMultiplyAdd(w * residual, residual, error);
    }
}
