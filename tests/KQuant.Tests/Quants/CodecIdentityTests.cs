using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using KQuant.Gguf;
using KQuant.Quants;
using KQuant.Quants.IQ;
using KQuant.Quants.K;
using KQuant.Quants.Legacy;
using KQuant.Tests.Reference;
using Xunit.Abstractions;

namespace KQuant.Tests.Quants;

/// <summary>
/// Byte identity of every codec with ggml_quantize_chunk and to_float of llama.cpp v0.5.0: every TestRows case with and
/// without importance, 1,000 rows per case over row lengths from one block to 16384, on each code path a codec lets us
/// pick; every 2-D weight of the shared models; random block bytes. One subclass per type so xunit runs types in parallel.
/// </summary>
public abstract class CodecIdentityTests(GgmlType type, ITestOutputHelper output)
{
    private readonly GgmlTypeTraits _traits = GgmlTypeTraits.Of(type);

    /// <summary>(row length, rows) per case: 1,000 rows, lengths multiples of the block size, few of the long ones.</summary>
    private (int Length, int Rows)[] RowPlan =>
        _traits.BlockSize == 256
            ? [(256, 400), (512, 200), (768, 150), (1024, 100), (2048, 60), (4096, 50), (8192, 25), (16384, 15)]
            : [(32, 400), (64, 250), (96, 150), (256, 120), (4096, 60), (16384, 20)];

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

    /// <summary>The shared models' GGUFs, relative to ../shared (tests skip those absent). The small models run both files
    /// both ways; the 10M model's F16 and F32 hold the same weights, so to keep the suite short its F16 file runs without
    /// importance and its F32 file with it.</summary>
    public static TheoryData<string, bool> ModelFiles() => new()
    {
        { "models/stories260K-F16.gguf", false },
        { "models/stories260K-F16.gguf", true },
        { "models/stories260K-F32.gguf", false },
        { "models/stories260K-F32.gguf", true },
        { "models/debdocs-tiny/debdocs-tiny-F16.gguf", false },
        { "models/debdocs-tiny/debdocs-tiny-F16.gguf", true },
        { "models/debdocs-tiny/debdocs-tiny-F32.gguf", false },
        { "models/debdocs-tiny/debdocs-tiny-F32.gguf", true },
        { "models/debdocs/debdocs-llama-10m-F16.gguf", false },
        { "models/debdocs/debdocs-llama-10m-F32.gguf", true },
    };

    public static TheoryData<bool> PathCases()
    {
        var data = new TheoryData<bool>();
        foreach (var vectorized in CodecVariants.Paths) data.Add(vectorized);
        return data;
    }

    /// <summary>Each code path this machine has (scalar, AVX2) against one ggml run of the same rows.</summary>
    [SkippableTheory]
    [MemberData(nameof(SyntheticCases))]
    public void SyntheticRowsMatchGgml(string kind, bool withImportance)
    {
        GgmlReference.Require();
        var codecs = CodecVariants.Paths.Select(vectorized => CodecVariants.Create(type, vectorized)).Distinct().ToArray();
        var rows = 0;
        foreach (var (length, count) in RowPlan)
        {
            var seed = HashCode.Combine(kind, length) & 0x7fffffff;
            var data = TestRows.Make(kind, count, length, seed);
            var importance = withImportance ? TestRows.Importance(length, seed) : [];
            rows += CodecComparison.AssertMatchesGgml(type, kind, data, length, importance, codecs);
        }
        Assert.Equal(1000, rows);
    }

    [SkippableTheory]
    [MemberData(nameof(ModelFiles))]
    public void ModelTensorsMatchGgml(string file, bool withImportance)
    {
        GgmlReference.Require();
        var tensors = Models.GetOrAdd(TestPaths.RequireShared(file), path => new Lazy<ModelRows.Tensor[]>(() => ModelRows.Read2D(path).ToArray())).Value;
        var fitting = tensors.Where(t => t.RowLength % _traits.BlockSize == 0).ToArray();
        Skip.If(fitting.Length == 0, $"{file} has no 2-D tensor whose rows are a multiple of {_traits.BlockSize}");
        var checkedRows = 0;
        foreach (var tensor in fitting)
        {
            var importance = withImportance ? TestRows.Importance(tensor.RowLength, tensor.Name.Length) : [];
            checkedRows += CodecComparison.AssertMatchesGgml(type, $"{file}:{tensor.Name}", tensor.Data, tensor.RowLength, importance);
        }
        output.WriteLine($"{_traits.Name}: {checkedRows} rows in {fitting.Length} tensors of {file} identical");
    }

    /// <summary>Random bytes (fp16 scales of every kind, NaN and Inf included) dequantize to the same bits.</summary>
    [SkippableTheory]
    [MemberData(nameof(PathCases))]
    public void RandomBlocksDequantizeLikeGgml(bool vectorized)
    {
        GgmlReference.Require();
        const int rowLength = 4096;
        var bytes = new byte[_traits.RowBytes(rowLength) * 64];
        new Random(1234 + (int)type).NextBytes(bytes);
        CodecComparison.AssertDequantizeMatches(type, $"{_traits.Name} random bytes [{CodecVariants.Create(type, vectorized)}]", bytes,
            rowLength, rowLength * 64, CodecVariants.Create(type, vectorized));
    }

    [Fact]
    public void BlockStructHasGgmlSize()
    {
        var actual = type switch
        {
            GgmlType.F32 => sizeof(float),
            GgmlType.F16 or GgmlType.BF16 => sizeof(ushort),
            GgmlType.Q4_0 => Unsafe.SizeOf<BlockQ40>(),
            GgmlType.Q4_1 => Unsafe.SizeOf<BlockQ41>(),
            GgmlType.Q5_0 => Unsafe.SizeOf<BlockQ50>(),
            GgmlType.Q5_1 => Unsafe.SizeOf<BlockQ51>(),
            GgmlType.Q8_0 => Unsafe.SizeOf<BlockQ80>(),
            GgmlType.IQ4_NL => Unsafe.SizeOf<BlockIQ4NL>(),
            GgmlType.IQ4_XS => Unsafe.SizeOf<BlockIQ4XS>(),
            GgmlType.Q2_K => Unsafe.SizeOf<BlockQ2K>(),
            GgmlType.Q3_K => Unsafe.SizeOf<BlockQ3K>(),
            GgmlType.Q4_K => Unsafe.SizeOf<BlockQ4K>(),
            GgmlType.Q5_K => Unsafe.SizeOf<BlockQ5K>(),
            GgmlType.Q6_K => Unsafe.SizeOf<BlockQ6K>(),
            GgmlType.Q8_K => Unsafe.SizeOf<BlockQ8K>(),
            _ => throw new ArgumentOutOfRangeException(nameof(type)),
        };
        Assert.Equal(_traits.BytesPerBlock, actual);
        Assert.Equal(type, RowCodecs.Get(type).Type);
    }

    private static readonly ConcurrentDictionary<string, Lazy<ModelRows.Tensor[]>> Models = new();
}

public sealed class F32IdentityTests(ITestOutputHelper output) : CodecIdentityTests(GgmlType.F32, output);

public sealed class F16IdentityTests(ITestOutputHelper output) : CodecIdentityTests(GgmlType.F16, output);

public sealed class BF16IdentityTests(ITestOutputHelper output) : CodecIdentityTests(GgmlType.BF16, output);

public sealed class Q40IdentityTests(ITestOutputHelper output) : CodecIdentityTests(GgmlType.Q4_0, output);

public sealed class Q41IdentityTests(ITestOutputHelper output) : CodecIdentityTests(GgmlType.Q4_1, output);

public sealed class Q50IdentityTests(ITestOutputHelper output) : CodecIdentityTests(GgmlType.Q5_0, output);

public sealed class Q51IdentityTests(ITestOutputHelper output) : CodecIdentityTests(GgmlType.Q5_1, output);

public sealed class Q80IdentityTests(ITestOutputHelper output) : CodecIdentityTests(GgmlType.Q8_0, output);

public sealed class IQ4NLIdentityTests(ITestOutputHelper output) : CodecIdentityTests(GgmlType.IQ4_NL, output);

public sealed class IQ4XSIdentityTests(ITestOutputHelper output) : CodecIdentityTests(GgmlType.IQ4_XS, output);

public sealed class Q2KIdentityTests(ITestOutputHelper output) : CodecIdentityTests(GgmlType.Q2_K, output);

public sealed class Q3KIdentityTests(ITestOutputHelper output) : CodecIdentityTests(GgmlType.Q3_K, output);

public sealed class Q4KIdentityTests(ITestOutputHelper output) : CodecIdentityTests(GgmlType.Q4_K, output);

public sealed class Q5KIdentityTests(ITestOutputHelper output) : CodecIdentityTests(GgmlType.Q5_K, output);

public sealed class Q6KIdentityTests(ITestOutputHelper output) : CodecIdentityTests(GgmlType.Q6_K, output);

public sealed class Q8KIdentityTests(ITestOutputHelper output) : CodecIdentityTests(GgmlType.Q8_K, output);
