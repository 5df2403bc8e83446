using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KQuant.Model;

namespace KQuant.Importance;

/// <summary>Accumulates an importance matrix from the forward pass, as llama-imatrix's collector does (IMatrixCollector
/// of tools/imatrix/imatrix.cpp, llama.cpp v0.5.0): for each weight matrix, the sum over tokens of each input column's
/// squared activation, and how many token rows went in (one count per expert for a 3-D expert tensor).</summary>
/// <remarks>
/// <para>Which products count, as llama-imatrix decides: every expert product; a plain product only when its weight is a
/// layer's (<c>blk.*</c>), or <c>output.weight</c> with <see cref="IncludeOutput"/> (llama-imatrix's --process-output;
/// never <c>token_embd.weight</c>, which a tied output multiplies by), and only when its micro-batch has at least 16
/// tokens (llama-imatrix ignores smaller ones). The micro-batch is what llama.cpp multiplies at once, which may hold
/// several sequences; the driver announces it with <see cref="BeginMicroBatch"/>.</para>
/// <para>Sums are floats, each row added as <c>sum += x·x</c> (a product rounded, then a sum rounded: no fused
/// multiply-add), row after row in the order the observer sees them, which is llama-imatrix's order: token order for
/// plain products; for an expert, the tokens that chose it first, then those that chose it second, ... (the forward pass
/// gathers an expert's tokens in that order). Counts are exact integers.</para>
/// </remarks>
public sealed class ImportanceCollector : IActivationObserver
{
    /// <summary>llama-imatrix skips plain products of fewer token rows than this ("why are small batches ignored?").</summary>
    public const int MinimumRows = 16;

    public const string OutputWeight = "output.weight";

    private readonly Dictionary<string, Accumulator> _entries = new(StringComparer.Ordinal);
    private readonly int _experts;
    private int _microBatchRows = int.MaxValue;

    /// <param name="expertCount">Experts per 3-D expert tensor (the model's expert_count; 0 for a dense model).</param>
    public ImportanceCollector(int expertCount = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(expertCount);
        _experts = expertCount;
    }

    /// <summary>Collect the output head too (llama-imatrix's --process-output).</summary>
    public bool IncludeOutput { get; init; }

    /// <summary>Entries collected so far, by weight name.</summary>
    public int Count => _entries.Count;

    /// <summary>The next products belong to a micro-batch of <paramref name="rows"/> tokens (across all its sequences):
    /// below <see cref="MinimumRows"/>, its plain products are not collected.</summary>
    public void BeginMicroBatch(int rows)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        _microBatchRows = rows;
    }

    public void OnMatMul(string weightName, int expert, ReadOnlySpan<float> activations, int columns)
    {
        if (columns <= 0 || activations.Length % columns != 0)
            throw new ArgumentException($"{activations.Length} activations are not rows of {columns}", nameof(activations));
        var rows = activations.Length / columns;
        if (expert < 0)
        {
            if (!weightName.StartsWith("blk.", StringComparison.Ordinal) && !(IncludeOutput && weightName == OutputWeight)) return;
            if (_microBatchRows < MinimumRows) return;
        }
        else if (expert >= _experts)
        {
            throw new ArgumentOutOfRangeException(nameof(expert), $"{weightName}: expert {expert} of {_experts}");
        }
        if (rows == 0) return;

        var matrices = expert < 0 ? 1 : _experts;
        if (!_entries.TryGetValue(weightName, out var entry))
        {
            entry = new Accumulator(columns, matrices);
            _entries.Add(weightName, entry);
        }
        else if (entry.Columns != columns || entry.Counts.Length != matrices)
        {
            throw new InvalidOperationException($"{weightName}: rows of {columns} for {matrices} matrices, after rows of {entry.Columns} for {entry.Counts.Length}");
        }

        var matrix = Math.Max(expert, 0);
        var sums = entry.Sums.AsSpan(matrix * columns, columns);
        for (var r = 0; r < rows; r++) AddSquares(sums, activations.Slice(r * columns, columns));
        entry.Counts[matrix] += rows;
        if (!AllFinite(sums))
            throw new InvalidDataException($"non-finite activations reached {weightName}{(expert < 0 ? "" : $" (expert {expert})")}: the model overflows on this text");
    }

    /// <summary>The matrix collected so far: raw sums and counts, as llama-imatrix's GGUF file holds them.</summary>
    /// <param name="datasets">What it was computed from (llama-imatrix stores the -f argument as given).</param>
    /// <param name="chunkSize">Tokens per chunk (-c).</param>
    public ImportanceMatrix ToMatrix(IReadOnlyList<string> datasets, int chunkSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkSize, 1);
        var entries = new Dictionary<string, ImportanceMatrix.Entry>(StringComparer.Ordinal);
        long maxCount = 0;
        foreach (var (name, e) in _entries)
        {
            entries[name] = new ImportanceMatrix.Entry((float[])e.Sums.Clone(), (long[])e.Counts.Clone());
            maxCount = Math.Max(maxCount, e.Counts.Max());
        }
        // llama-imatrix's chunk count: the most chunks' worth of rows any matrix has seen (counts only grow, so the
        // running maximum it keeps is the final one).
        var chunks = (int)Math.Min(maxCount / chunkSize, int.MaxValue);
        return new ImportanceMatrix(entries, datasets, chunks, chunkSize, isLegacy: false);
    }

    /// <summary>sums[j] += x[j]·x[j], the product rounded before the sum (as llama-imatrix's loop compiles for x86-64
    /// without FMA); vectors only group independent columns, so each column's arithmetic is the scalar one.</summary>
    internal static void AddSquares(Span<float> sums, ReadOnlySpan<float> x)
    {
        if (x.Length != sums.Length) throw new ArgumentException("row length differs from the sums'", nameof(x));
        ref var s = ref MemoryMarshal.GetReference(sums);
        ref var v = ref MemoryMarshal.GetReference(x);
        var j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; j + Vector256<float>.Count <= x.Length; j += Vector256<float>.Count)
            {
                var xi = Vector256.LoadUnsafe(ref v, (nuint)j);
                var product = xi * xi;
                (Vector256.LoadUnsafe(ref s, (nuint)j) + product).StoreUnsafe(ref s, (nuint)j);
            }
        }
        for (; j < x.Length; j++)
        {
            var xi = Unsafe.Add(ref v, j);
            var product = xi * xi;
            Unsafe.Add(ref s, j) += product;
        }
    }

    private static bool AllFinite(ReadOnlySpan<float> values)
    {
        foreach (var v in values)
        {
            if (!float.IsFinite(v)) return false;
        }
        return true;
    }

    private sealed class Accumulator(int columns, int matrices)
    {
        public int Columns { get; } = columns;
        public float[] Sums { get; } = new float[columns * matrices];
        public long[] Counts { get; } = new long[matrices];
    }
}
