using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using KQuant.Gguf;

namespace KQuant.Importance;

/// <summary>Sums of squared activations per input column of each weight matrix, and how many tokens went into them
/// (one count per expert for mixture-of-experts tensors). Read from llama.cpp's GGUF imatrix files or the legacy .dat format.</summary>
public sealed class ImportanceMatrix
{
    public const string DatasetsKey = "imatrix.datasets";
    public const string ChunkCountKey = "imatrix.chunk_count";
    public const string ChunkSizeKey = "imatrix.chunk_size";

    /// <summary>One weight matrix: Sums has columns × experts values; Counts one value per expert.</summary>
    public sealed record Entry(float[] Sums, long[] Counts);

    public ImportanceMatrix(IReadOnlyDictionary<string, Entry> entries, IReadOnlyList<string> datasets, int chunkCount, int chunkSize, bool isLegacy)
    {
        Entries = entries;
        Datasets = datasets;
        ChunkCount = chunkCount;
        ChunkSize = chunkSize;
        IsLegacy = isLegacy;
    }

    /// <summary>Keyed by weight name, e.g. "blk.0.ffn_down.weight".</summary>
    public IReadOnlyDictionary<string, Entry> Entries { get; }
    public IReadOnlyList<string> Datasets { get; }
    public int ChunkCount { get; }
    public int ChunkSize { get; }
    public bool IsLegacy { get; }

    /// <summary>The per-column weights the quantizer uses for <paramref name="name"/>: mean squared activation (sums / count,
    /// per expert; 1 where an expert saw no tokens), as llama-quantize computes them. Null when the matrix has no entry.</summary>
    public float[]? WeightsFor(string name)
    {
        if (!Entries.TryGetValue(name, out var e)) return null;
        var result = new float[e.Sums.Length];
        if (IsLegacy)
        {
            // Legacy files store (sum / count) × ncall; dividing by ncall gives the mean.
            var calls = e.Counts.Length == 0 ? 0 : e.Counts[0];
            for (var i = 0; i < result.Length; i++) result[i] = calls > 0 ? e.Sums[i] / calls : e.Sums[i];
            return result;
        }
        var columns = e.Sums.Length / e.Counts.Length;
        for (var expert = 0; expert < e.Counts.Length; expert++)
        {
            var count = (float)e.Counts[expert];
            for (var i = 0; i < columns; i++)
            {
                var at = expert * columns + i;
                result[at] = count > 0 ? e.Sums[at] / count : 1;
            }
        }
        return result;
    }

    /// <summary>Loads either format, telling them apart by the GGUF magic.</summary>
    public static ImportanceMatrix Load(string path)
    {
        Span<byte> magic = stackalloc byte[4];
        using (var probe = File.OpenRead(path))
        {
            if (probe.ReadAtLeast(magic, 4, throwOnEndOfStream: false) < 4)
                throw new InvalidDataException($"{path}: too short to be an importance matrix");
        }
        return magic.SequenceEqual("GGUF"u8) ? LoadGguf(path) : LoadLegacy(path);
    }

    private static ImportanceMatrix LoadGguf(string path)
    {
        using var file = GgufFile.Open(path);
        var sums = new Dictionary<string, GgufTensorInfo>(StringComparer.Ordinal);
        var counts = new Dictionary<string, GgufTensorInfo>(StringComparer.Ordinal);
        foreach (var t in file.Tensors)
        {
            if (t.Name.EndsWith(".in_sum2", StringComparison.Ordinal)) sums[t.Name[..^".in_sum2".Length]] = t;
            else if (t.Name.EndsWith(".counts", StringComparison.Ordinal)) counts[t.Name[..^".counts".Length]] = t;
        }
        if (sums.Count == 0 && counts.Count == 0) throw new InvalidDataException($"{path}: a GGUF file, but it holds no importance matrix entries (.in_sum2/.counts tensors)");
        if (!file.TryGetValue(DatasetsKey, out _) || !file.TryGetValue(ChunkCountKey, out _) || !file.TryGetValue(ChunkSizeKey, out _))
            throw new InvalidDataException($"{path}: imatrix metadata missing (expected {DatasetsKey}, {ChunkCountKey} and {ChunkSizeKey})");

        var entries = new Dictionary<string, Entry>(StringComparer.Ordinal);
        foreach (var name in sums.Keys.Union(counts.Keys).Order(StringComparer.Ordinal))
        {
            if (!sums.TryGetValue(name, out var s) || !counts.TryGetValue(name, out var c))
                throw new InvalidDataException($"{path}: {name} has {(s is null ? "counts but no sums" : "sums but no counts")}");
            if (s.Type != GgmlType.F32 || c.Type != GgmlType.F32)
                throw new InvalidDataException($"{path}: sums and counts of {name} must be F32 (found {s.Traits.Name}, {c.Traits.Name})");
            if (c.ElementCount == 0 || s.ElementCount % c.ElementCount != 0)
                throw new InvalidDataException($"{path}: {name} has {s.ElementCount} sums, not a multiple of its {c.ElementCount} counts");
            var sumValues = ReadFloats(file, s);
            var countValues = ReadFloats(file, c).Select(v => (long)Math.Round(v, MidpointRounding.AwayFromZero)).ToArray();
            entries[name] = new Entry(sumValues, countValues);
        }
        var datasets = file.TryGetValue(DatasetsKey, out var d) && d.Type == GgufValueType.Array && d.AsArray().ElementType == GgufValueType.String
            ? d.AsArray().AsStrings().ToList()
            : [];
        return new ImportanceMatrix(entries, datasets, (int)GetUInt(file, ChunkCountKey), (int)GetUInt(file, ChunkSizeKey), isLegacy: false);
    }

    private static uint GetUInt(GgufFile file, string key) => file.TryGetValue(key, out var v) ? v.AsUInt32() : 0;

    private static float[] ReadFloats(GgufFile file, GgufTensorInfo t)
    {
        var values = new float[t.ElementCount];
        file.GetTensorBytes(t, 0, checked((int)t.ByteSize)).CopyTo(MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    // Legacy: int32 entries; per entry int32 name length, name, int32 ncall, int32 nval, float[nval];
    // then optionally int32 chunk count, int32 dataset name length, dataset name.
    private static ImportanceMatrix LoadLegacy(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var at = 0;
        int ReadInt(string what)
        {
            if (at + 4 > bytes.Length) throw new InvalidDataException($"{path}: truncated at byte {at}, expected {what} (not a GGUF file, so read as a legacy .dat imatrix)");
            var v = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(at));
            at += 4;
            return v;
        }
        ReadOnlySpan<byte> ReadBytes(int n, string what)
        {
            if (n < 0 || n > bytes.Length - at) throw new InvalidDataException($"{path}: at byte {at}, {what} of {n} bytes runs past the end of the file");
            var span = bytes.AsSpan(at, n);
            at += n;
            return span;
        }

        var count = ReadInt("the entry count");
        if (count < 1) throw new InvalidDataException($"{path}: no entries (count {count}); not an importance matrix");
        var entries = new Dictionary<string, Entry>(StringComparer.Ordinal);
        for (var i = 0; i < count; i++)
        {
            var name = Encoding.UTF8.GetString(ReadBytes(ReadInt($"the name length of entry {i}"), $"the name of entry {i}"));
            var calls = ReadInt($"the call count of {name}");
            var values = ReadInt($"the value count of {name}");
            if (values < 1) throw new InvalidDataException($"{path}: entry {name} has {values} values");
            var sums = MemoryMarshal.Cast<byte, float>(ReadBytes(checked(values * 4), $"the values of {name}")).ToArray();
            entries[name] = new Entry(sums, [calls]);
        }
        var datasets = new List<string>();
        var chunks = 0;
        if (at + 4 <= bytes.Length)
        {
            chunks = ReadInt("the chunk count");
            if (at + 4 <= bytes.Length)
            {
                var length = ReadInt("the dataset name length");
                if (length > 0 && length <= bytes.Length - at) datasets.Add(Encoding.UTF8.GetString(bytes, at, length));
            }
        }
        return new ImportanceMatrix(entries, datasets, chunks, chunkSize: 0, isLegacy: true);
    }
}
