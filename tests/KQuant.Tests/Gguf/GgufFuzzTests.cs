using System.Buffers.Binary;
using System.Diagnostics;
using KQuant.Gguf;
using Xunit.Abstractions;

namespace KQuant.Tests.Gguf;

/// <summary>Seeded mutation fuzzing of the reader on real files: every variant must either open (and then all its
/// metadata and tensor data must be readable) or throw <see cref="GgufFormatException"/>; anything else fails with the
/// seed and variant index, which reproduce it.</summary>
public class GgufFuzzTests(ITestOutputHelper output)
{
    // Fixed, so a reported variant index reruns identically (given the same corpus: the sample plus ../shared/vocab).
    private const int Seed = 0x6A6775;

    private static readonly uint[] Interesting32 =
        [0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 31, 32, 33, 36, 39, 43, 64, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x03000000];

    private static readonly ulong[] Interesting64 =
        [0, 1, 2, 3, 4, 5, 8, 13, 0x7F, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1UL << 32, 1UL << 40, 1UL << 62,
         long.MaxValue, 1UL << 63, ulong.MaxValue, 0x7F7F7F7F7F7F7F7F];

    private static readonly byte[] InterestingBytes = [0, 1, 2, 0x7F, 0x80, 0xFF];

    [Fact]
    public void MutatedFilesOpenOrFailWithAFormatException()
    {
        var corpus = new List<Corpus> { new("sample", File.ReadAllBytes(GgufTestFiles.Sample)) };
        corpus.AddRange(GgufTestFiles.SharedVocab().Select(f => new Corpus(Path.GetFileName(f), File.ReadAllBytes(f))));
        // The sample gets most of the variants (all of them when ../shared is absent): it has tensors and parses quickly.
        const int total = 20_400, perVocabFile = 800;
        int[] budget = [.. corpus.Select((_, i) => i == 0 ? total - perVocabFile * (corpus.Count - 1) : perVocabFile)];

        var rng = new Random(Seed);
        var stats = new Stats();
        var failures = new List<string>();
        var clock = Stopwatch.StartNew();
        var variant = 0;
        for (var c = 0; c < corpus.Count; c++)
        {
            for (var n = 0; n < budget[c]; n++, variant++)
            {
                var (image, description) = corpus[c].Mutate(rng, corpus);
                try
                {
                    Check(image, stats);
                }
                catch (Exception e)
                {
                    failures.Add($"seed {Seed} variant {variant} ({corpus[c].Name}: {description}): {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
                }
                finally
                {
                    corpus[c].Restore();
                }
                if (failures.Count >= 10) break;
            }
            output.WriteLine($"{corpus[c].Name}: {clock.Elapsed.TotalSeconds:F1} s");
        }
        output.WriteLine($"{variant} variants in {clock.Elapsed.TotalSeconds:F1} s: {stats.Opened} opened, {stats.Refused} refused");
        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
        Assert.Equal(total, variant);
        // A fuzzer that only ever produced garbage (or never broke anything) would prove little.
        Assert.True(stats.Opened > variant / 20 && stats.Refused > variant / 5, $"{stats.Opened} opened, {stats.Refused} refused");
    }

    private sealed class Stats
    {
        public int Opened;
        public int Refused;
    }

    private static void Check(ReadOnlyMemory<byte> image, Stats stats)
    {
        GgufFile file;
        try
        {
            file = GgufFile.Open(image, "fuzz.gguf");
        }
        catch (GgufFormatException)
        {
            stats.Refused++;
            return;
        }
        using (file)
        {
            stats.Opened++;
            foreach (var entry in file.Metadata)
            {
                _ = entry.Value.ToString();
                if (entry.Value.Type == GgufValueType.Array) Touch(entry.Value.AsArray());
            }
            // What the reader vouched for must hold before any byte is touched (a broken check would otherwise read
            // outside the image, or loop over an absurd size, rather than fail here).
            Assert.Equal(image.Length, file.FileLength);
            Assert.InRange(file.DataOffset, 0, image.Length);
            foreach (var t in file.Tensors)
            {
                Assert.InRange(t.Offset, 0, image.Length - file.DataOffset - t.ByteSize);
                Assert.Same(t, file.FindTensor(t.Name));
                var head = file.GetTensorBytes(t, 0, (int)Math.Min(t.ByteSize, int.MaxValue));
                _ = head[0] ^ head[^1];
                _ = file.GetRows(t, t.RowCount - 1, 1)[^1];
                file.CopyTensorTo(t, Stream.Null);
            }
        }
    }

    private static void Touch(GgufArray array)
    {
        if (array.Count == 0) return;
        _ = array[0].ToString();
        _ = array[^1].ToString();
        if (array.ElementType == GgufValueType.Array)
        {
            foreach (var inner in array.AsArrays()) Touch(inner);
        }
    }

    /// <summary>A corpus file, the fields of its header, and an in-place mutation that <see cref="Restore"/> undoes
    /// (copying a 5 MB file for each of 20,000 variants would dominate the run).</summary>
    private sealed class Corpus
    {
        private readonly byte[] _bytes;
        private readonly List<GgufField> _fields;
        private readonly int _dataOffset;
        private readonly List<(int Offset, byte Original)> _undo = [];
        private static byte[] _spliceBuffer = [];

        public Corpus(string name, byte[] bytes)
        {
            Name = name;
            _bytes = bytes;
            (_fields, _dataOffset) = GgufFieldMap.Walk(bytes);
        }

        public string Name { get; }

        public void Restore()
        {
            for (var i = _undo.Count - 1; i >= 0; i--) _bytes[_undo[i].Offset] = _undo[i].Original;
            _undo.Clear();
        }

        public (ReadOnlyMemory<byte> Image, string Description) Mutate(Random rng, List<Corpus> all)
        {
            var roll = rng.Next(100);
            if (roll < 12) return Truncate(rng.Next(rng.Next(2) == 0 ? _bytes.Length : _dataOffset + 64), "random cut");
            if (roll < 27)
            {
                var f = RandomField(rng);
                return Truncate(f.Offset + rng.Next(-1, f.Size + 1), $"cut near {f.Kind} at {f.Offset}");
            }
            if (roll < 50) return (_bytes, OverwriteField(rng, RandomField(rng)));
            if (roll < 63) return (_bytes, FlipBits(rng, 1 + rng.Next(4)));
            if (roll < 75) return (_bytes, OverwriteBytes(rng, 1 + rng.Next(3)));
            if (roll < 92)
            {
                var first = OverwriteField(rng, RandomField(rng));
                var second = rng.Next(2) == 0 ? OverwriteField(rng, RandomField(rng)) : FlipBits(rng, 1);
                return rng.Next(3) == 0
                    ? Truncate(rng.Next(_bytes.Length), $"{first}; {second}; and")
                    : (_bytes, $"{first}; {second}");
            }
            return Splice(rng, all[rng.Next(all.Count)]);
        }

        private GgufField RandomField(Random rng) =>
            // Favour the fields that steer parsing: counts, lengths, types, shapes and offsets.
            rng.Next(4) == 0 ? _fields[rng.Next(_fields.Count)] : _fields[FavouredIndex(rng)];

        private int FavouredIndex(Random rng)
        {
            for (var tries = 0; tries < 8; tries++)
            {
                var i = rng.Next(_fields.Count);
                if (_fields[i].Kind != GgufFieldKind.Scalar && _fields[i].Kind != GgufFieldKind.Length || rng.Next(8) == 0) return i;
            }
            return rng.Next(_fields.Count);
        }

        private (ReadOnlyMemory<byte>, string) Truncate(int length, string why)
        {
            length = Math.Clamp(length, 0, _bytes.Length);
            return (_bytes.AsMemory(0, length), $"{why} (cut to {length})");
        }

        private string OverwriteField(Random rng, GgufField f)
        {
            Span<byte> value = stackalloc byte[8];
            var original = f.Size switch
            {
                8 => BinaryPrimitives.ReadUInt64LittleEndian(_bytes.AsSpan(f.Offset)),
                4 => BinaryPrimitives.ReadUInt32LittleEndian(_bytes.AsSpan(f.Offset)),
                2 => BinaryPrimitives.ReadUInt16LittleEndian(_bytes.AsSpan(f.Offset)),
                _ => _bytes[f.Offset],
            };
            var next = rng.Next(6) switch
            {
                0 => original + 1,
                1 => original - 1,
                2 => original + (ulong)(rng.Next(1, 64) * (rng.Next(2) == 0 ? 1 : -1)),
                3 => (ulong)_bytes.Length - (ulong)f.Offset + (ulong)rng.Next(-2, 3),
                _ => f.Size == 4 ? Interesting32[rng.Next(Interesting32.Length)]
                    : f.Size == 8 ? Interesting64[rng.Next(Interesting64.Length)]
                    : InterestingBytes[rng.Next(InterestingBytes.Length)],
            };
            BinaryPrimitives.WriteUInt64LittleEndian(value, next);
            for (var i = 0; i < f.Size; i++) Set(f.Offset + i, value[i]);
            return $"{f.Kind} at {f.Offset}: {original} -> {next & (f.Size == 8 ? ulong.MaxValue : (1UL << (8 * f.Size)) - 1)}";
        }

        private string FlipBits(Random rng, int count)
        {
            var at = new List<string>();
            for (var i = 0; i < count; i++)
            {
                var offset = RandomOffset(rng);
                var bit = rng.Next(8);
                Set(offset, (byte)(_bytes[offset] ^ (1 << bit)));
                at.Add($"{offset}.{bit}");
            }
            return "bit flips at " + string.Join(", ", at);
        }

        private string OverwriteBytes(Random rng, int count)
        {
            var at = new List<string>();
            for (var i = 0; i < count; i++)
            {
                var offset = RandomOffset(rng);
                var value = InterestingBytes[rng.Next(InterestingBytes.Length)];
                Set(offset, value);
                at.Add($"{offset}={value:X2}");
            }
            return "bytes " + string.Join(", ", at);
        }

        // Mostly the header, where a change alters the parse; sometimes tensor data, where it must not matter.
        private int RandomOffset(Random rng) => rng.Next(8) == 0 ? rng.Next(_bytes.Length) : rng.Next(Math.Min(_dataOffset + 64, _bytes.Length));

        private (ReadOnlyMemory<byte>, string) Splice(Random rng, Corpus other)
        {
            var cut = RandomField(rng).Offset + rng.Next(0, 2);
            var from = other.RandomField(rng).Offset;
            var length = cut + other._bytes.Length - from;
            // One buffer for all splices: allocating megabytes per variant would dominate the run.
            if (_spliceBuffer.Length < length) _spliceBuffer = new byte[Math.Max(length, 2 * _spliceBuffer.Length)];
            _bytes.AsSpan(0, cut).CopyTo(_spliceBuffer);
            other._bytes.AsSpan(from).CopyTo(_spliceBuffer.AsSpan(cut));
            return (_spliceBuffer.AsMemory(0, length), $"splice: 0..{cut} + {other.Name} {from}..");
        }

        private void Set(int offset, byte value)
        {
            _undo.Add((offset, _bytes[offset]));
            _bytes[offset] = value;
        }
    }
}
