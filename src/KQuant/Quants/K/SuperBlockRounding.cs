using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace KQuant.Quants.K;

/// <summary>The final rounding pass every K-quant runs once the super-block scales are stored in fp16: each weight is
/// rounded against the scale (and min) the decoder will actually see, not the unrounded float ones. Also the
/// element-wise helpers around it. Every lane does ggml's scalar arithmetic, so the vector paths give the same bits.</summary>
internal static class SuperBlockRounding
{
    /// <summary>Levels in [0, nmax] for x ≈ d·level - dm: nearest_int((x + dm) / d), clamped.</summary>
    [SkipLocalsInit]
    public static void RoundAffine(ReadOnlySpan<float> x, Span<byte> levels, float d, float dm, int nmax)
    {
        var i = 0;
        if (BlockSolvers.UseVector256)
        {
            var dv = Vector256.Create(d);
            var dmv = Vector256.Create(dm);
            var lowest = Vector256<int>.Zero;
            var highest = Vector256.Create(nmax);
            ref var src = ref MemoryMarshal.GetReference(x);
            for (; i + 16 <= x.Length; i += 16)
            {
                var a = BlockSolvers.NearestInt((Vector256.LoadUnsafe(ref src, (nuint)i) + dmv) / dv);
                var b = BlockSolvers.NearestInt((Vector256.LoadUnsafe(ref src, (nuint)i + 8) + dmv) / dv);
                StoreBytes(Vector256.Min(Vector256.Max(a, lowest), highest), Vector256.Min(Vector256.Max(b, lowest), highest), levels[i..]);
            }
        }
        for (; i < x.Length; i++)
        {
            levels[i] = (byte)Math.Clamp(BlockSolvers.NearestInt((x[i] + dm) / d), 0, nmax);
        }
    }

    /// <summary>Levels in [lowest, highest] for x ≈ d·level, stored shifted by -lowest: nearest_int(x / d), clamped.</summary>
    [SkipLocalsInit]
    public static void RoundSymmetric(ReadOnlySpan<float> x, Span<sbyte> levels, float d, int lowest, int highest)
    {
        var i = 0;
        if (BlockSolvers.UseVector256)
        {
            var dv = Vector256.Create(d);
            var lo = Vector256.Create(lowest);
            var hi = Vector256.Create(highest);
            ref var src = ref MemoryMarshal.GetReference(x);
            var bytes = MemoryMarshal.AsBytes(levels);
            for (; i + 16 <= x.Length; i += 16)
            {
                var a = BlockSolvers.NearestInt(Vector256.LoadUnsafe(ref src, (nuint)i) / dv);
                var b = BlockSolvers.NearestInt(Vector256.LoadUnsafe(ref src, (nuint)i + 8) / dv);
                StoreBytes(Vector256.Min(Vector256.Max(a, lo), hi) - lo, Vector256.Min(Vector256.Max(b, lo), hi) - lo, bytes[i..]);
            }
        }
        for (; i < x.Length; i++)
        {
            levels[i] = (sbyte)(Math.Clamp(BlockSolvers.NearestInt(x[i] / d), lowest, highest) - lowest);
        }
    }

    /// <summary>Stores sixteen small non-negative ints (0-255) as bytes, in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreBytes(Vector256<int> first, Vector256<int> second, Span<byte> destination)
    {
        var shorts = Vector256.Narrow(first, second);
        Vector128.Narrow(shorts.GetLower(), shorts.GetUpper()).AsByte().CopyTo(destination);
    }

    /// <summary>Σx² added left to right, as ggml does before deriving σ² for the importance weights.</summary>
    public static float SumOfSquares(ReadOnlySpan<float> x)
    {
        float sum = 0;
        for (var i = 0; i < x.Length; i++) sum += x[i] * x[i];
        return sum;
    }

    /// <summary>The importance weights of ggml's imatrix paths: qw·sqrt(σ² + x²).</summary>
    public static void ImportanceWeights(ReadOnlySpan<float> x, ReadOnlySpan<float> importance, float sigma2, Span<float> weights)
    {
        var i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var s = Vector256.Create(sigma2);
            for (; i + 8 <= x.Length; i += 8)
            {
                var xi = Vector256.Create<float>(x[i..]);
                (Vector256.Create<float>(importance[i..]) * Vector256.Sqrt(s + xi * xi)).CopyTo(weights[i..]);
            }
        }
        for (; i < x.Length; i++) weights[i] = importance[i] * MathF.Sqrt(sigma2 + x[i] * x[i]);
    }

    /// <summary>weights = offset + |x| (the reference paths' weighting, offset being the group's rms).</summary>
    public static void AddAbsolute(float offset, ReadOnlySpan<float> x, Span<float> weights)
    {
        var i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var o = Vector256.Create(offset);
            for (; i + 8 <= x.Length; i += 8) (o + Vector256.Abs(Vector256.Create<float>(x[i..]))).CopyTo(weights[i..]);
        }
        for (; i < x.Length; i++) weights[i] = offset + MathF.Abs(x[i]);
    }

    /// <summary>Σw added left to right.</summary>
    public static float Sum(ReadOnlySpan<float> values)
    {
        float sum = 0;
        for (var i = 0; i < values.Length; i++) sum += values[i];
        return sum;
    }
}
