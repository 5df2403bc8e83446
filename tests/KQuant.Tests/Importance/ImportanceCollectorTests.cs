using KQuant.Gguf;
using KQuant.Importance;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Importance;

/// <summary>The collector's rules (which products count, how rows are added) and the two writers' layouts, without
/// llama.cpp: values worked out by hand here.</summary>
public sealed class ImportanceCollectorTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static float[] Rows(int rows, int columns, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, rows * columns).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();
    }

    [Fact]
    public void SumsSquaresRowByRowInFloatAndCountsRows()
    {
        var collector = new ImportanceCollector();
        collector.BeginMicroBatch(20);
        var a = Rows(20, 37, 1); // 37: a vector part and a scalar tail
        var b = Rows(20, 37, 2);
        collector.OnMatMul("blk.0.attn_q.weight", -1, a, 37);
        collector.OnMatMul("blk.0.attn_q.weight", -1, b, 37);
        var e = collector.ToMatrix(["text"], 20).Entries["blk.0.attn_q.weight"];
        Assert.Equal([40L], e.Counts);
        for (var j = 0; j < 37; j++)
        {
            var expected = 0f;
            foreach (var rows in new[] { a, b })
            {
                for (var r = 0; r < 20; r++)
                {
                    var x = rows[r * 37 + j];
                    var square = x * x;
                    expected += square;
                }
            }
            Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(e.Sums[j]));
        }
    }

    [Fact]
    public void SkipsWhatLlamaImatrixSkips()
    {
        var collector = new ImportanceCollector(expertCount: 4);
        var rows = Rows(16, 8, 3);
        collector.BeginMicroBatch(16);
        collector.OnMatMul("token_embd.weight", -1, rows, 8);   // a tied output: never
        collector.OnMatMul("output.weight", -1, rows, 8);       // only with IncludeOutput
        collector.OnMatMul("blk.1.ffn_down.weight", -1, rows, 8);
        collector.BeginMicroBatch(15);                          // fewer than 16 tokens: plain products skipped ...
        collector.OnMatMul("blk.1.ffn_up.weight", -1, rows.AsSpan(0, 8), 8);
        collector.OnMatMul("blk.1.ffn_down.weight", -1, rows, 8);
        collector.OnMatMul("blk.1.ffn_up_exps.weight", 2, rows.AsSpan(0, 24), 8); // ... expert products never
        var m = collector.ToMatrix([], 16);
        Assert.Equal(["blk.1.ffn_down.weight", "blk.1.ffn_up_exps.weight"], m.Entries.Keys.Order(StringComparer.Ordinal));
        Assert.Equal([16L], m.Entries["blk.1.ffn_down.weight"].Counts);
        Assert.Equal([0L, 0, 3, 0], m.Entries["blk.1.ffn_up_exps.weight"].Counts);
        Assert.Equal(4 * 8, m.Entries["blk.1.ffn_up_exps.weight"].Sums.Length);
        Assert.Equal(1, m.ChunkCount); // 16 rows of the largest count / chunk size 16

        var withOutput = new ImportanceCollector { IncludeOutput = true };
        withOutput.OnMatMul("output.weight", -1, rows, 8);
        withOutput.OnMatMul("token_embd.weight", -1, rows, 8);
        Assert.Equal(["output.weight"], withOutput.ToMatrix([], 512).Entries.Keys);
    }

    [Fact]
    public void NonFiniteActivationsAreAnInputError()
    {
        var collector = new ImportanceCollector();
        var rows = Rows(16, 4, 4);
        rows[5] = float.PositiveInfinity;
        var e = Assert.Throws<InvalidDataException>(() => collector.OnMatMul("blk.0.attn_k.weight", -1, rows, 4));
        Assert.Contains("blk.0.attn_k.weight", e.Message);
    }

    private static ImportanceMatrix Sample()
    {
        var collector = new ImportanceCollector(expertCount: 3);
        collector.BeginMicroBatch(32);
        collector.OnMatMul("blk.0.ffn_gate_exps.weight", 0, Rows(5, 4, 5), 4);
        collector.OnMatMul("blk.0.ffn_gate_exps.weight", 2, Rows(27, 4, 6), 4); // expert 1 sees nothing
        collector.OnMatMul("blk.0.attn_v.weight", -1, Rows(32, 6, 7), 6);
        return collector.ToMatrix(["calibration.txt"], 16);
    }

    [Fact]
    public void GgufHoldsRawSumsAndCountsPerExpertInNameOrder()
    {
        var matrix = Sample();
        var path = Path.Combine(_dir, "m.gguf");
        ImportanceMatrixWriter.WriteGguf(matrix, path);

        using (var file = GgufFile.Open(path))
        {
            Assert.Equal(["general.type", "imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"], file.Metadata.Select(e => e.Key));
            Assert.Equal("imatrix", file.GetString("general.type"));
            Assert.Equal(["blk.0.attn_v.weight.in_sum2", "blk.0.attn_v.weight.counts", "blk.0.ffn_gate_exps.weight.in_sum2", "blk.0.ffn_gate_exps.weight.counts"],
                file.Tensors.Select(t => t.Name));
            Assert.Equal([6L], file.Tensors[0].Shape);
            Assert.Equal([1L], file.Tensors[1].Shape);
            Assert.Equal([4L, 3], file.Tensors[2].Shape);
            Assert.Equal([1L, 3], file.Tensors[3].Shape);
        }
        var read = ImportanceMatrix.Load(path);
        Assert.False(read.IsLegacy);
        Assert.Equal(["calibration.txt"], read.Datasets);
        Assert.Equal(2, read.ChunkCount); // 32 rows / 16
        Assert.Equal(16, read.ChunkSize);
        foreach (var (name, e) in matrix.Entries)
        {
            Assert.Equal(e.Sums, read.Entries[name].Sums);
            Assert.Equal(e.Counts, read.Entries[name].Counts);
        }
        Assert.Equal([5L, 0, 27], read.Entries["blk.0.ffn_gate_exps.weight"].Counts);
        Assert.Throws<OutputRefusedException>(() => ImportanceMatrixWriter.WriteGguf(matrix, path));
        ImportanceMatrixWriter.WriteGguf(matrix, path, overwrite: true);
    }

    [Fact]
    public void DatHoldsMeansTimesCallsAndOnesForExpertsWithoutTokens()
    {
        var matrix = Sample();
        var path = Path.Combine(_dir, "m.dat");
        ImportanceMatrixWriter.WriteLegacy(matrix, path);
        var read = ImportanceMatrix.Load(path);
        Assert.True(read.IsLegacy);
        Assert.Equal(["calibration.txt"], read.Datasets);
        Assert.Equal(2, read.ChunkCount);

        var dense = matrix.Entries["blk.0.attn_v.weight"];
        Assert.Equal([2L], read.Entries["blk.0.attn_v.weight"].Counts); // ncall = ⌈32 / 16⌉
        for (var j = 0; j < 6; j++) Assert.Equal(dense.Sums[j] / 32f * 2, read.Entries["blk.0.attn_v.weight"].Sums[j]);

        var experts = matrix.Entries["blk.0.ffn_gate_exps.weight"];
        var stored = read.Entries["blk.0.ffn_gate_exps.weight"];
        Assert.Equal([2L], stored.Counts); // ⌈27 / 16⌉
        for (var j = 0; j < 4; j++)
        {
            Assert.Equal(experts.Sums[j] / 5f * 2, stored.Sums[j]);
            Assert.Equal(2f, stored.Sums[4 + j]); // no tokens: 1 · ncall
            Assert.Equal(experts.Sums[8 + j] / 27f * 2, stored.Sums[8 + j]);
        }
        // The means llama-quantize takes from it: the file's values / ncall.
        Assert.Equal(experts.Sums[8] / 27f * 2 / 2, read.WeightsFor("blk.0.ffn_gate_exps.weight")![8]);
    }

    [Fact]
    public void DatLeavesOutWeightsThatSawNoTokenGgufKeepsThem()
    {
        var collector = new ImportanceCollector(expertCount: 2);
        collector.OnMatMul("blk.0.ffn_up_exps.weight", 1, Rows(3, 4, 8), 4);
        var matrix = collector.ToMatrix([], 8);
        var empty = new ImportanceMatrix(
            new Dictionary<string, ImportanceMatrix.Entry>(matrix.Entries) { ["blk.0.ffn_down_exps.weight"] = new(new float[8], [0, 0]) },
            [], 0, 8, isLegacy: false);
        var dat = Path.Combine(_dir, "e.dat");
        var gguf = Path.Combine(_dir, "e.gguf");
        ImportanceMatrixWriter.WriteLegacy(empty, dat);
        ImportanceMatrixWriter.WriteGguf(empty, gguf);
        Assert.Equal(["blk.0.ffn_up_exps.weight"], ImportanceMatrix.Load(dat).Entries.Keys);
        Assert.Equal(2, ImportanceMatrix.Load(gguf).Entries.Count);
        Assert.Empty(ImportanceMatrix.Load(gguf).Datasets);
    }
}
