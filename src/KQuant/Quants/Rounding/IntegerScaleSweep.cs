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
/// SIMD lane (transposed as <see cref="SuperBlockSearch"/> does), two candidates per pass.
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

        Span<float> lanes = stackalloc float[2 * Lanes * SubBlock];
        var xs = lanes[..(Lanes * SubBlock)];
        var ws = lanes[(Lanes * SubBlock)..];
        const int half = Lanes * SubBlock;
        for (var g = 0; g < SubBlocks; g += Lanes)
        {
            Transpose(x.Slice(g * SubBlock, half), xs, Lanes, SubBlock);
            Transpose(w.Slice(g * SubBlock, half), ws, Lanes, SubBlock);
            var best = ChooseScales(xs, ws, dValue);
            for (var j = 0; j < Lanes; j++) scales[g + j] = (sbyte)best.GetElement(j);
        }
        for (var j = 0; j < SubBlocks; j++)
        {
            var scale = dValue * scales[j];
            var inverse = scale == 0 ? 0 : 1 / scale;
            for (var i = SubBlock * j; i < SubBlock * (j + 1); i++)
                levels[i] = (byte)(Math.Clamp(MathF.Round(x[i] * inverse), LowestLevel, HighestLevel) - LowestLevel);
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
            for (var k = 0; k < Candidates; k += 2)
            {
                var scaleA = Vector256.Clamp(start + step * Vector256.Create(k), Vector256.Create(LowestScale), Vector256.Create(HighestScale));
                var scaleB = Vector256.Clamp(scaleA + step, Vector256.Create(LowestScale), Vector256.Create(HighestScale));
                var (errorA, errorB) = ErrorsOfTwo(xs, ws, dVector * Vector256.ConvertToSingle(scaleA), dVector * Vector256.ConvertToSingle(scaleB));
                // A scale of 0 has no inverse (its error is NaN or its levels meaningless): it is the starting choice already.
                var betterA = Vector256.LessThan(errorA, bestError) & ~Vector256.Equals(scaleA, Vector256<int>.Zero).AsSingle();
                bestError = Vector256.ConditionalSelect(betterA, errorA, bestError);
                bestScale = Vector256.ConditionalSelect(betterA.AsInt32(), scaleA, bestScale);
                var betterB = Vector256.LessThan(errorB, bestError) & ~Vector256.Equals(scaleB, Vector256<int>.Zero).AsSingle();
                bestError = Vector256.ConditionalSelect(betterB, errorB, bestError);
                bestScale = Vector256.ConditionalSelect(betterB.AsInt32(), scaleB, bestScale);
            }
        }
        return bestScale;
    }

    /// <summary>Σ w·(x − s·q)² per lane for two scales, q the nearest level to x/s.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float>, Vector256<float>) ErrorsOfTwo(ReadOnlySpan<float> xs, ReadOnlySpan<float> ws, Vector256<float> scaleA,
        Vector256<float> scaleB)
    {
        var (inverseA, inverseB) = (Vector256<float>.One / scaleA, Vector256<float>.One / scaleB);
        var (low, high) = (Vector256.Create((float)LowestLevel), Vector256.Create((float)HighestLevel));
        Vector256<float> errorA = default, errorB = default;
        for (var at = 0; at < xs.Length; at += Lanes)
        {
            var (x, w) = (Load(xs, at), Load(ws, at));
            var levelA = Vector256.Min(Vector256.Max(Vector256.Round(x * inverseA), low), high);
            var levelB = Vector256.Min(Vector256.Max(Vector256.Round(x * inverseB), low), high);
            var residualA = Vector256.FusedMultiplyAdd(-scaleA, levelA, x);
            var residualB = Vector256.FusedMultiplyAdd(-scaleB, levelB, x);
            errorA = Vector256.FusedMultiplyAdd(w * residualA, residualA, errorA);
            errorB = Vector256.FusedMultiplyAdd(w * residualB, residualB, errorB);
        }
        return (errorA, errorB);
    }
}
