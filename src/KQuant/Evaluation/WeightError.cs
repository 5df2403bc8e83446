using KQuant.Gguf;
using KQuant.Importance;
using KQuant.Quants;

namespace KQuant.Evaluation;

/// <summary>How far one quantized tensor's weights are from the original's.</summary>
/// <param name="RelativeRmse">RMS of (quantized − original) over RMS of the original.</param>
/// <param name="WeightedRelativeRmse">The same, each column weighted by its importance (mean squared activation) when an
/// importance matrix has an entry for the tensor; otherwise equal to <see cref="RelativeRmse"/>. This is the error the
/// quantizers minimise, and the one that reaches the model's outputs.</param>
public sealed record TensorError(string Name, GgmlType Type, long Elements, double RelativeRmse, double WeightedRelativeRmse);

/// <summary>Compares the weights of a quantized model with those of the model it came from, tensor by tensor.</summary>
public static class WeightError
{
    /// <summary>Every tensor of <paramref name="quantized"/> whose type differs from the same tensor in <paramref name="original"/>.</summary>
    public static IReadOnlyList<TensorError> Compare(GgufFile original, GgufFile quantized, ImportanceMatrix? importance = null, int threads = 0)
    {
        var results = new List<TensorError>();
        foreach (var q in quantized.Tensors)
        {
            var o = original.FindTensor(q.Name) ?? throw new InvalidDataException($"{original.Path} has no tensor {q.Name}, which {quantized.Path} has");
            if (o.Type == q.Type) continue;
            if (!o.Shape.SequenceEqual(q.Shape))
                throw new InvalidDataException($"{q.Name}: shape [{string.Join(", ", q.Shape)}] in {quantized.Path}, [{string.Join(", ", o.Shape)}] in {original.Path}");
            results.Add(CompareTensor(original, o, quantized, q, importance?.WeightsFor(q.Name), threads));
        }
        return results;
    }

    /// <summary>Parameter-weighted mean of a per-tensor error over the whole model.</summary>
    public static double ModelMean(IReadOnlyList<TensorError> errors, Func<TensorError, double> metric)
    {
        var total = errors.Sum(e => (double)e.Elements);
        return total == 0 ? 0 : errors.Sum(e => metric(e) * e.Elements) / total;
    }

    private static TensorError CompareTensor(GgufFile original, GgufTensorInfo o, GgufFile quantized, GgufTensorInfo q, float[]? importance, int threads)
    {
        var rowLength = checked((int)o.RowLength);
        var rowsPerExpert = o.Shape.Length > 1 ? o.Shape[1] : 1;
        var useImportance = importance is not null && importance.Length % rowLength == 0 && importance.Length / rowLength * rowsPerExpert >= o.RowCount;
        var sums = new double[4]; // error², original², weighted error², weighted original²
        var gate = new object();
        const int rowsPerChunk = 64;
        var chunks = (int)((o.RowCount + rowsPerChunk - 1) / rowsPerChunk);
        Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = threads > 0 ? threads : Environment.ProcessorCount },
            () => (Local: new double[4], A: new float[rowLength], B: new float[rowLength]),
            (chunk, _, state) =>
            {
                var first = (long)chunk * rowsPerChunk;
                var last = Math.Min(o.RowCount, first + rowsPerChunk);
                for (var row = first; row < last; row++)
                {
                    ReadRow(original, o, row, state.A);
                    ReadRow(quantized, q, row, state.B);
                    var weights = useImportance ? importance.AsSpan((int)(row / rowsPerExpert) * rowLength, rowLength) : default;
                    for (var i = 0; i < rowLength; i++)
                    {
                        double a = state.A[i], d = state.B[i] - a;
                        state.Local[0] += d * d;
                        state.Local[1] += a * a;
                        if (useImportance)
                        {
                            state.Local[2] += weights[i] * d * d;
                            state.Local[3] += weights[i] * a * a;
                        }
                    }
                }
                return state;
            },
            state => { lock (gate) for (var k = 0; k < 4; k++) sums[k] += state.Local[k]; });
        var relative = Ratio(sums[0], sums[1]);
        return new TensorError(q.Name, q.Type, q.ElementCount, relative, useImportance ? Ratio(sums[2], sums[3]) : relative);
    }

    private static double Ratio(double error, double signal) => signal > 0 ? Math.Sqrt(error / signal) : error > 0 ? double.PositiveInfinity : 0;

    private static void ReadRow(GgufFile file, GgufTensorInfo t, long row, Span<float> destination)
    {
        var bytes = file.GetRows(t, row, 1);
        if (t.Type == GgmlType.F32) System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).CopyTo(destination);
        else RowCodecs.Get(t.Type).Dequantize(bytes, destination);
    }
}
