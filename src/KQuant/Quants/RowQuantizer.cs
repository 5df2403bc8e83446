using KQuant.Gguf;

namespace KQuant.Quants;

/// <summary>Row-parallel quantization and dequantization of whole matrices (what ggml_quantize_chunk does).</summary>
public static class RowQuantizer
{
    /// <summary>Quantizes <paramref name="source"/>.Length / <paramref name="rowLength"/> rows into <paramref name="destination"/>.
    /// Throws <see cref="NonFiniteInputException"/> naming the first row holding NaN or ±Inf. With
    /// <see cref="RoundingMode.Optimal"/>, codecs that have an optimal path (<see cref="IOptimalRowCodec"/>) use it; the
    /// others (float types, Q8_K) quantize as llama.cpp does. <paramref name="role"/> tells the optimal path how the rows are
    /// used (token embeddings are <see cref="RowRole.Lookup"/>).</summary>
    public static void Quantize(GgmlType type, ReadOnlySpan<float> source, Span<byte> destination, int rowLength,
        ReadOnlySpan<float> importance = default, int threads = 1, RoundingMode rounding = RoundingMode.Reference,
        RowRole role = RowRole.Product)
    {
        var optimal = rounding == RoundingMode.Optimal;
        var codec = RowCodecs.Get(type);
        var traits = GgmlTypeTraits.Of(type);
        Validate(traits, source.Length, destination.Length, rowLength, importance.Length);
        var rows = source.Length / rowLength;
        var rowBytes = (int)traits.RowBytes(rowLength);
        if (threads <= 1 || rows < 2)
        {
            for (var r = 0; r < rows; r++)
            {
                QuantizeOne(codec, source.Slice(r * rowLength, rowLength), destination.Slice(r * rowBytes, rowBytes), importance, r, optimal, role);
            }
            return;
        }
        unsafe
        {
            fixed (float* src = source)
            fixed (byte* dst = destination)
            fixed (float* imp = importance)
            {
                var s = (nint)src;
                var d = (nint)dst;
                var w = (nint)imp;
                var wLen = importance.Length;
                try
                {
                    Parallel.For(0, rows, new ParallelOptions { MaxDegreeOfParallelism = threads }, r =>
                    {
                        var row = new ReadOnlySpan<float>((float*)s + (long)r * rowLength, rowLength);
                        var outRow = new Span<byte>((byte*)d + (long)r * rowBytes, rowBytes);
                        QuantizeOne(codec, row, outRow, new ReadOnlySpan<float>((float*)w, wLen), r, optimal, role);
                    });
                }
                catch (AggregateException e) when (e.InnerExceptions.All(inner => inner is NonFiniteInputException))
                {
                    // Same exception as the single-threaded path; of the rows the workers hit, name the first.
                    var first = e.InnerExceptions.Cast<NonFiniteInputException>().MinBy(inner => inner.Row)!;
                    System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
                }
            }
        }
    }

    /// <summary>Dequantizes whole rows of <paramref name="type"/> into floats.</summary>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> source, Span<float> destination)
    {
        var codec = RowCodecs.Get(type);
        var traits = GgmlTypeTraits.Of(type);
        if (destination.Length % traits.BlockSize != 0 || traits.RowBytes(destination.Length) != source.Length)
        {
            throw new ArgumentException($"{traits.Name}: {source.Length} bytes do not hold {destination.Length} weights");
        }
        codec.Dequantize(source, destination);
    }

    private static void QuantizeOne(IRowCodec codec, ReadOnlySpan<float> row, Span<byte> dst, ReadOnlySpan<float> importance, int rowIndex,
        bool optimal, RowRole role)
    {
        var finite = codec is IFiniteCheckingRowCodec checking
            ? checking.TryQuantizeFinite(row, dst, importance)
            : System.Numerics.Tensors.TensorPrimitives.IsFiniteAll(row);
        if (!finite)
        {
            var column = 0;
            while (float.IsFinite(row[column])) column++;
            throw new NonFiniteInputException(rowIndex, column, row[column]);
        }
        if (codec is IFiniteCheckingRowCodec) return;
        if (optimal && codec is IOptimalRowCodec optimalCodec) optimalCodec.QuantizeOptimal(row, dst, importance, role);
        else codec.Quantize(row, dst, importance);
    }

    private static void Validate(GgmlTypeTraits traits, int sourceLength, int destinationLength, int rowLength, int importanceLength)
    {
        if (rowLength <= 0 || rowLength % traits.BlockSize != 0)
            throw new ArgumentException($"{traits.Name}: row length {rowLength} is not a positive multiple of the block size {traits.BlockSize}");
        if (sourceLength % rowLength != 0)
            throw new ArgumentException($"{sourceLength} weights are not a whole number of rows of {rowLength}");
        if (traits.RowBytes(rowLength) * (sourceLength / rowLength) != destinationLength)
            throw new ArgumentException($"{traits.Name}: destination has {destinationLength} bytes, {sourceLength / rowLength} rows need {traits.RowBytes(rowLength) * (sourceLength / rowLength)}");
        if (importanceLength != 0 && importanceLength != rowLength)
            throw new ArgumentException($"importance vector has {importanceLength} values, expected one per column ({rowLength})");
    }
}

/// <summary>Raised when a row to be quantized holds NaN or ±Inf: quantizing it would write garbage silently.</summary>
public sealed class NonFiniteInputException(int row, int column, float value)
    : Exception($"row {row} holds a non-finite value ({value}) at column {column}")
{
    public int Row { get; } = row;
    public int Column { get; } = column;
}
