using System.Runtime.InteropServices;
using System.Text;
using KQuant.Gguf;

namespace KQuant.Importance;

/// <summary>The two file formats of an importance matrix.</summary>
public enum ImportanceMatrixFormat
{
    /// <summary>llama.cpp's GGUF imatrix: raw sums and counts (llama-imatrix's default).</summary>
    Gguf,

    /// <summary>The legacy .dat file: per-column means scaled by a call count (--output-format dat).</summary>
    Dat,
}

/// <summary>Writes an <see cref="ImportanceMatrix"/> holding raw sums and counts (as <see cref="ImportanceCollector"/>
/// makes) in either of llama-imatrix's formats, laid out as its save_imatrix / save_imatrix_legacy write them (llama.cpp
/// v0.5.0), so the same values give the same bytes. Output goes to a temporary file beside the target, renamed onto it
/// when complete.</summary>
public static class ImportanceMatrixWriter
{
    public const string TypeKey = "general.type";

    public static void Write(ImportanceMatrix matrix, string path, ImportanceMatrixFormat format, bool overwrite = false)
    {
        switch (format)
        {
            case ImportanceMatrixFormat.Gguf: WriteGguf(matrix, path, overwrite); break;
            case ImportanceMatrixFormat.Dat: WriteLegacy(matrix, path, overwrite); break;
            default: throw new ArgumentOutOfRangeException(nameof(format), format, null);
        }
    }

    /// <summary>GGUF v3: <c>general.type</c> = "imatrix", <c>imatrix.datasets</c> (strings), <c>imatrix.chunk_count</c>
    /// and <c>imatrix.chunk_size</c> (u32); then per weight, in ordinal name order, <c>NAME.in_sum2</c> (F32,
    /// [columns, experts]) and <c>NAME.counts</c> (F32, [1, experts]), trailing dimensions of 1 dropped as ggml does.
    /// Experts that saw no token are written with zero sums and counts (readers treat them as missing).</summary>
    public static void WriteGguf(ImportanceMatrix matrix, string path, bool overwrite = false)
    {
        CheckRaw(matrix);
        var metadata = new GgufMetadata();
        metadata.Add(TypeKey, GgufValue.FromString("imatrix"));
        metadata.Add(ImportanceMatrix.DatasetsKey, GgufValue.FromStrings(matrix.Datasets));
        metadata.Add(ImportanceMatrix.ChunkCountKey, GgufValue.FromUInt32(checked((uint)matrix.ChunkCount)));
        metadata.Add(ImportanceMatrix.ChunkSizeKey, GgufValue.FromUInt32(checked((uint)matrix.ChunkSize)));

        var names = SortedNames(matrix);
        var tensors = new List<GgufTensorInfo>(2 * names.Count);
        foreach (var name in names)
        {
            var e = matrix.Entries[name];
            long experts = e.Counts.Length;
            long columns = e.Sums.Length / experts;
            tensors.Add(new GgufTensorInfo($"{name}.in_sum2", GgmlType.F32, experts == 1 ? [columns] : [columns, experts]));
            tensors.Add(new GgufTensorInfo($"{name}.counts", GgmlType.F32, experts == 1 ? [1] : [1, experts]));
        }

        using var writer = new GgufWriter(path, metadata, tensors, overwrite: overwrite);
        foreach (var name in names)
        {
            var e = matrix.Entries[name];
            writer.WriteTensorData(MemoryMarshal.AsBytes(e.Sums.AsSpan()));
            var counts = e.Counts.Select(c => (float)c).ToArray();
            writer.WriteTensorData(MemoryMarshal.AsBytes(counts.AsSpan()));
        }
        writer.Commit();
    }

    /// <summary>The legacy layout: int32 entry count; per entry (ordinal name order) int32 name length, the name, int32
    /// ncall, int32 value count, the values; then int32 chunk count, int32 dataset name length, the dataset name (the
    /// last of <see cref="ImportanceMatrix.Datasets"/>). ncall = ⌈largest count / chunk size⌉ and each value is
    /// (sum / count) · ncall in float, as llama-imatrix stores them; an expert that saw no token gets 1 · ncall; a weight
    /// none of whose matrices saw a token is left out.</summary>
    public static void WriteLegacy(ImportanceMatrix matrix, string path, bool overwrite = false)
    {
        CheckRaw(matrix);
        var names = SortedNames(matrix).Where(n => matrix.Entries[n].Counts.Any(c => c != 0)).ToList();
        var target = Path.GetFullPath(path);
        if (!overwrite && File.Exists(target)) throw new OutputRefusedException($"{target} exists; use --overwrite to replace it");
        var temporary = Path.Combine(Path.GetDirectoryName(target)!, $".{Path.GetFileName(target)}.tmp-{Guid.NewGuid():N}");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                // BinaryWriter writes little-endian, as the format is (llama.cpp writes native order on x86/ARM).
                using var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
                writer.Write(names.Count);
                foreach (var name in names)
                {
                    var e = matrix.Entries[name];
                    var bytes = Encoding.UTF8.GetBytes(name);
                    writer.Write(bytes.Length);
                    writer.Write(bytes);
                    var ncall = checked((int)((e.Counts.Max() + matrix.ChunkSize - 1) / matrix.ChunkSize));
                    writer.Write(ncall);
                    writer.Write(e.Sums.Length);
                    var columns = e.Sums.Length / e.Counts.Length;
                    var values = new float[e.Sums.Length];
                    for (var i = 0; i < values.Length; i++)
                    {
                        var count = (float)e.Counts[i / columns];
                        var value = e.Sums[i];
                        if (count == 0)
                        {
                            value = 1;
                            count = 1;
                        }
                        values[i] = value / count * ncall;
                    }
                    writer.Write(MemoryMarshal.AsBytes(values.AsSpan()));
                }
                writer.Write(matrix.ChunkCount);
                var dataset = Encoding.UTF8.GetBytes(matrix.Datasets.Count > 0 ? matrix.Datasets[^1] : "");
                writer.Write(dataset.Length);
                writer.Write(dataset);
                writer.Flush();
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, target, overwrite);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }

    private static List<string> SortedNames(ImportanceMatrix matrix) => matrix.Entries.Keys.Order(StringComparer.Ordinal).ToList();

    private static void CheckRaw(ImportanceMatrix matrix)
    {
        ArgumentNullException.ThrowIfNull(matrix);
        if (matrix.IsLegacy) throw new ArgumentException("a legacy matrix holds scaled means, not the raw sums and counts these formats are written from", nameof(matrix));
        if (matrix.ChunkSize < 1) throw new ArgumentException("the chunk size must be known (at least 1)", nameof(matrix));
        foreach (var (name, e) in matrix.Entries)
        {
            if (e.Counts.Length == 0 || e.Sums.Length == 0 || e.Sums.Length % e.Counts.Length != 0)
                throw new ArgumentException($"{name}: {e.Sums.Length} sums are not whole rows for {e.Counts.Length} counts", nameof(matrix));
        }
    }
}
