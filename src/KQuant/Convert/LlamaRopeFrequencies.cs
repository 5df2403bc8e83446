using System.Text.Json;

namespace KQuant.Conversion;

/// <summary>Llama 3's RoPE scaling ("rope_type": "llama3"), which llama.cpp takes as a rope_freqs.weight tensor of one
/// factor per rotary frequency rather than as metadata (LlamaModel.generate_extra_tensors).</summary>
public static class LlamaRopeFrequencies
{
    /// <summary>The factors, or null when the model does not use llama3 scaling. Computed in float32 like the converter's
    /// torch code; a last-bit difference in powf between runtimes is possible.</summary>
    public static float[]? Compute(HfConfig config)
    {
        if (config.RopeScaling is not { } rope || !string.Equals(rope.GetString("rope_type") ?? rope.GetString("type"), "llama3", StringComparison.OrdinalIgnoreCase))
            return null;
        double Number(string key, double fallback) => rope.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : fallback;
        var theta = (float)Number("rope_theta", config.FindNumber("rope_theta") ?? 10000);
        var dim = config.FindInteger("head_dim") ?? config.EmbeddingLength / config.HeadCount;
        var factor = (float)Number("factor", 8.0);
        var lowFreqFactor = (float)Number("low_freq_factor", 1.0);
        var highFreqFactor = (float)Number("high_freq_factor", 4.0);
        var oldContext = (float)Number("original_max_position_embeddings", 8192);
        var lowFreqWavelength = oldContext / lowFreqFactor;
        var highFreqWavelength = oldContext / highFreqFactor;

        var factors = new float[(dim + 1) / 2];
        for (var i = 0; i < factors.Length; i++)
        {
            var frequency = 1f / MathF.Pow(theta, 2 * i / (float)dim);
            var wavelength = 2 * MathF.PI / frequency;
            if (wavelength < highFreqWavelength) factors[i] = 1;
            else if (wavelength > lowFreqWavelength) factors[i] = factor;
            else
            {
                var smooth = (oldContext / wavelength - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
                factors[i] = 1 / ((1 - smooth) / factor + smooth);
            }
        }
        return factors;
    }
}
