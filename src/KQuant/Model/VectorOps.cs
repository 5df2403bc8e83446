using System.Numerics.Tensors;

namespace KQuant.Model;

/// <summary>The element-wise steps of the llama graph, computed as ggml-cpu computes them (ops.cpp, vec.h of llama.cpp
/// v0.5.0) up to the order of float additions.</summary>
internal static class VectorOps
{
    /// <summary>ggml_rms_norm then ggml_mul: y = (x·scale)·w with scale = 1/sqrt(mean(x²) + eps), the squares summed
    /// in double.</summary>
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float epsilon, Span<float> y)
    {
        // Float squares added one by one in double, as ggml's loop does (the order decides the last bit of the mean).
        double sum = 0;
        foreach (var v in x) sum += v * v;
        var mean = (float)(sum / x.Length);
        var scale = 1f / MathF.Sqrt(mean + epsilon);
        TensorPrimitives.Multiply(x, scale, y);
        TensorPrimitives.Multiply(y, weight, y);
    }

    /// <summary>ggml_swiglu_split: y = silu(gate)·up with silu(g) = g / (1 + e^(−g)). <paramref name="gate"/> is
    /// overwritten with the result.</summary>
    public static void SwiGlu(Span<float> gate, ReadOnlySpan<float> up) => GgmlExp.SwiGlu(gate, up);

    /// <summary>Adds <paramref name="bias"/> to every row of a row-major matrix.</summary>
    public static void AddBias(Span<float> rows, int columns, ReadOnlySpan<float> bias)
    {
        for (var r = 0; r + columns <= rows.Length; r += columns)
        {
            var row = rows.Slice(r, columns);
            TensorPrimitives.Add(row, bias, row);
        }
    }
}
