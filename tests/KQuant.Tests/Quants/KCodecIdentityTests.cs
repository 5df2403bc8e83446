using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using KQuant.Gguf;
using KQuant.Quants;
using KQuant.Quants.K;
using KQuant.Tests.Reference;
using Xunit.Abstractions;

namespace KQuant.Tests.Quants;

/// <summary>
/// Byte identity of the K-quant codecs with ggml_quantize_chunk and to_float of llama.cpp v0.5.0: every TestRows case,
/// with and without importance, 1,000 rows per case over row lengths 256 to 16384, and every 2-D weight of the shared
/// models. One subclass per type so xunit runs the types in parallel.
/// </summary>
public abstract class KCodecIdentityTests(GgmlType type, ITestOutputHelper output)
{
    /// <summary>Row lengths and how many rows of each: 1,000 rows per case, few of the long ones.</summary>
    private static readonly (int Length, int Rows)[] RowPlan =
        [(256, 400), (512, 200), (768, 150), (1024, 100), (2048, 60), (4096, 50), (8192, 25), (16384, 15)];

    public static TheoryData<string, bool> SyntheticCases()
    {
        var data = new TheoryData<string, bool>();
        foreach (var kind in TestRows.Cases)
        {
            data.Add(kind, false);
            data.Add(kind, true);
        }
        return data;
    }

    /// <summary>The shared models' GGUFs, relative to ../shared (tests skip those absent). The tiny model runs both
    /// files both ways; the 10M model's F16 and F32 hold the same weights, so to keep the suite short its F16 file runs
    /// without importance and its F32 file with it.</summary>
    public static TheoryData<string, bool> ModelFiles() => new()
    {
        { "models/debdocs-tiny/debdocs-tiny-F16.gguf", false },
        { "models/debdocs-tiny/debdocs-tiny-F16.gguf", true },
        { "models/debdocs-tiny/debdocs-tiny-F32.gguf", false },
        { "models/debdocs-tiny/debdocs-tiny-F32.gguf", true },
        { "models/debdocs/debdocs-llama-10m-F16.gguf", false },
        { "models/debdocs/debdocs-llama-10m-F32.gguf", true },
    };

    [SkippableTheory]
    [MemberData(nameof(SyntheticCases))]
    public void SyntheticRowsMatchGgml(string kind, bool withImportance)
    {
        GgmlReference.Require();
        var rows = 0;
        foreach (var (length, count) in RowPlan)
        {
            var seed = HashCode.Combine(kind, length) & 0x7fffffff;
            var data = TestRows.Make(kind, count, length, seed);
            var importance = withImportance ? TestRows.Importance(length, seed) : [];
            rows += CodecComparison.AssertMatchesGgml(type, kind, data, length, importance);
        }
        Assert.Equal(1000, rows);
    }

    [SkippableTheory]
    [MemberData(nameof(ModelFiles))]
    public void ModelTensorsMatchGgml(string file, bool withImportance)
    {
        GgmlReference.Require();
        var tensors = Models.GetOrAdd(TestPaths.RequireShared(file), path => new Lazy<ModelRows.Tensor[]>(() => ModelRows.Read2D(path).ToArray())).Value;
        var checkedRows = 0;
        foreach (var tensor in tensors.Where(t => t.RowLength % KQuantLayout.SuperBlock == 0))
        {
            var importance = withImportance ? TestRows.Importance(tensor.RowLength, tensor.Name.Length) : [];
            checkedRows += CodecComparison.AssertMatchesGgml(type, $"{file}:{tensor.Name}", tensor.Data, tensor.RowLength, importance);
        }
        Assert.True(checkedRows > 0, $"{file} has no 2-D tensor whose rows are a multiple of 256");
        output.WriteLine($"{GgmlTypeTraits.Of(type).Name}: {checkedRows} rows of {file} identical");
    }

    /// <summary>Random bytes (fp16 scales of every kind, NaN and Inf included) dequantize to the same bits.</summary>
    [SkippableFact]
    public void RandomBlocksDequantizeLikeGgml()
    {
        GgmlReference.Require();
        var traits = GgmlTypeTraits.Of(type);
        var rng = new Random(1234 + (int)type);
        const int rowLength = 4096;
        var bytes = new byte[traits.RowBytes(rowLength) * 64];
        rng.NextBytes(bytes);
        CodecComparison.AssertDequantizeMatches(type, $"{traits.Name} random bytes", bytes, rowLength, rowLength * 64);
    }

    [Fact]
    public void BlockStructHasGgmlSize()
    {
        var expected = GgmlTypeTraits.Of(type).BytesPerBlock;
        var actual = type switch
        {
            GgmlType.Q2_K => Unsafe.SizeOf<BlockQ2K>(),
            GgmlType.Q3_K => Unsafe.SizeOf<BlockQ3K>(),
            GgmlType.Q4_K => Unsafe.SizeOf<BlockQ4K>(),
            GgmlType.Q5_K => Unsafe.SizeOf<BlockQ5K>(),
            GgmlType.Q6_K => Unsafe.SizeOf<BlockQ6K>(),
            GgmlType.Q8_K => Unsafe.SizeOf<BlockQ8K>(),
            _ => throw new ArgumentOutOfRangeException(nameof(type)),
        };
        Assert.Equal(expected, actual);
        Assert.Equal(type, RowCodecs.Get(type).Type);
    }

    private static readonly ConcurrentDictionary<string, Lazy<ModelRows.Tensor[]>> Models = new();
}

public sealed class Q2KIdentityTests(ITestOutputHelper output) : KCodecIdentityTests(GgmlType.Q2_K, output);

public sealed class Q3KIdentityTests(ITestOutputHelper output) : KCodecIdentityTests(GgmlType.Q3_K, output);

public sealed class Q4KIdentityTests(ITestOutputHelper output) : KCodecIdentityTests(GgmlType.Q4_K, output);

public sealed class Q5KIdentityTests(ITestOutputHelper output) : KCodecIdentityTests(GgmlType.Q5_K, output);

public sealed class Q6KIdentityTests(ITestOutputHelper output) : KCodecIdentityTests(GgmlType.Q6_K, output);

public sealed class Q8KIdentityTests(ITestOutputHelper output) : KCodecIdentityTests(GgmlType.Q8_K, output);
