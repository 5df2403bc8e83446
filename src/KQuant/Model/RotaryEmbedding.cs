namespace KQuant.Model;

/// <summary>RoPE with llama.cpp's arithmetic (ggml_rope_ext on the CPU: rope_yarn and ggml_rope_cache_init of ops.cpp,
/// ggml_rope_yarn_corr_dims of ggml.c, v0.5.0): per position, cos and sin of each rotated pair, scaled by the YaRN
/// magnitude factor. The angles are built as ggml builds them, theta_{i+1} = theta_i · base^(−2/n) in float, so the
/// tables match its values rather than a closed form's.</summary>
internal sealed class RotaryEmbedding
{
    private readonly float[] _table; // [position][pair] → (cos, sin)
    private readonly int _pairs;
    private readonly RopeStyle _style;

    public RotaryEmbedding(RopeConfig rope, int positions, ReadOnlySpan<float> frequencyFactors)
    {
        _pairs = rope.Dimensions / 2;
        _style = rope.Style;
        if (!frequencyFactors.IsEmpty && frequencyFactors.Length < _pairs)
            throw new InvalidDataException($"rope_freqs.weight has {frequencyFactors.Length} factors for {_pairs} rotated pairs");
        _table = new float[positions * _pairs * 2];
        var thetaScale = MathF.Pow(rope.FreqBase, -2f / rope.Dimensions);
        var (low, high) = CorrectionDimensions(rope);
        for (var p = 0; p < positions; p++)
        {
            var theta = (float)p;
            var row = _table.AsSpan(p * _pairs * 2, _pairs * 2);
            for (var i = 0; i < _pairs; i++)
            {
                var factor = frequencyFactors.IsEmpty ? 1f : frequencyFactors[i];
                var (cos, sin) = Yarn(theta / factor, rope, low, high, 2 * i);
                row[2 * i] = cos;
                row[2 * i + 1] = sin;
                theta *= thetaScale;
            }
        }
    }

    /// <summary>Rotates every head of one row (<paramref name="heads"/> heads of <paramref name="headDimension"/>
    /// values) as position <paramref name="position"/>.</summary>
    public void Apply(Span<float> row, int heads, int headDimension, int position)
    {
        var table = _table.AsSpan(position * _pairs * 2, _pairs * 2);
        var offset = _style == RopeStyle.NeoX ? _pairs : 1;
        var stride = _style == RopeStyle.NeoX ? 1 : 2;
        for (var h = 0; h < heads; h++)
        {
            var head = row.Slice(h * headDimension, headDimension);
            for (var i = 0; i < _pairs; i++)
            {
                var cos = table[2 * i];
                var sin = table[2 * i + 1];
                var a = i * stride;
                var x0 = head[a];
                var x1 = head[a + offset];
                // ggml's rotate_pairs as the C compiler contracted it: one product rounded, the one with x0 fused.
                head[a] = MathF.FusedMultiplyAdd(cos, x0, -(sin * x1));
                head[a + offset] = MathF.FusedMultiplyAdd(sin, x0, cos * x1);
            }
        }
    }

    // rope_yarn: the angle interpolated by freq_scale, mixed back towards the original for the high-frequency pairs
    // (ramp between the correction dimensions), and the magnitude scaled by mscale.
    private static (float Cos, float Sin) Yarn(float thetaExtrapolated, RopeConfig rope, float low, float high, int i0)
    {
        var thetaInterpolated = rope.FreqScale * thetaExtrapolated;
        var theta = thetaInterpolated;
        var mscale = rope.AttnFactor;
        if (rope.ExtFactor != 0f)
        {
            var ramp = 1 - MathF.Min(1, MathF.Max(0, (i0 / 2 - low) / MathF.Max(0.001f, high - low)));
            var mix = ramp * rope.ExtFactor;
            // As the C compiler contracted it: the extrapolated product rounded, the interpolated one fused.
            theta = MathF.FusedMultiplyAdd(thetaInterpolated, 1 - mix, thetaExtrapolated * mix);
            mscale *= MathF.FusedMultiplyAdd(0.1f, MathF.Log(1f / rope.FreqScale), 1f);
        }
        return (MathF.Cos(theta) * mscale, MathF.Sin(theta) * mscale);
    }

    private static (float Low, float High) CorrectionDimensions(RopeConfig rope)
    {
        float Dimension(float rotations) =>
            rope.Dimensions * MathF.Log(rope.OriginalContext / (rotations * 2 * MathF.PI)) / (2 * MathF.Log(rope.FreqBase));
        var start = MathF.Floor(Dimension(rope.BetaFast));
        var end = MathF.Ceiling(Dimension(rope.BetaSlow));
        return (MathF.Max(0, start), MathF.Min(rope.Dimensions - 1, end));
    }
}
