namespace KQuant.Quants.K;

/// <summary>The final rounding pass every K-quant runs once the super-block scales are stored in fp16: each weight is
/// rounded against the scale (and min) the decoder will actually see, not the unrounded float ones.</summary>
internal static class SuperBlockRounding
{
    /// <summary>Levels in [0, nmax] for x ≈ d·level - dm: nearest_int((x + dm) / d), clamped.</summary>
    public static void RoundAffine(ReadOnlySpan<float> x, Span<byte> levels, float d, float dm, int nmax)
    {
        for (var i = 0; i < x.Length; i++)
        {
            levels[i] = (byte)Math.Clamp(BlockSolvers.NearestInt((x[i] + dm) / d), 0, nmax);
        }
    }

    /// <summary>Levels in [lowest, highest] for x ≈ d·level, stored shifted by -lowest: nearest_int(x / d), clamped.</summary>
    public static void RoundSymmetric(ReadOnlySpan<float> x, Span<sbyte> levels, float d, int lowest, int highest)
    {
        for (var i = 0; i < x.Length; i++)
        {
            levels[i] = (sbyte)(Math.Clamp(BlockSolvers.NearestInt(x[i] / d), lowest, highest) - lowest);
        }
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
        for (var i = 0; i < x.Length; i++) weights[i] = importance[i] * MathF.Sqrt(sigma2 + x[i] * x[i]);
    }

    /// <summary>Σw added left to right.</summary>
    public static float Sum(ReadOnlySpan<float> values)
    {
        float sum = 0;
        for (var i = 0; i < values.Length; i++) sum += values[i];
        return sum;
    }
}
