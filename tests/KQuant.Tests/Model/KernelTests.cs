using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KQuant.Gguf;
using KQuant.Model;
using KQuant.Model.Kernels;
using KQuant.Quants;
using KQuant.Quants.K;
using KQuant.Quants.Legacy;
using KQuant.Tests.Quants;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Model;

/// <summary>The matrix kernels against ggml-cpu's own (its AVX2 build): activations quantized to the same bytes, dot
/// products to the same float, and the same products against exact double arithmetic on the dequantized weights.</summary>
public sealed unsafe class KernelTests
{
    public static TheoryData<GgmlType> QuantizedTypes =>
    [
        GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0, GgmlType.IQ4_NL,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_XS,
    ];

    public static TheoryData<string, bool> ActivationCases()
    {
        var data = new TheoryData<string, bool>();
        foreach (var kind in new[] { "gaussian", "outliers", "zeros", "constant", "cosine", "huge" })
        {
            data.Add(kind, true);
            data.Add(kind, false);
        }
        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(ActivationCases))]
    public void ActivationsQuantizeToGgmlCpuBytes(string kind, bool vectorized)
    {
        GgmlReference.RequireCpu();
        var row = TestRows.Make(kind, 1, 768, seed: 11);
        foreach (var (format, type) in new[] { (ActivationFormat.Q8_0, GgmlType.Q8_0), (ActivationFormat.Q8_1, GgmlType.Q8_1), (ActivationFormat.Q8_K, GgmlType.Q8_K) })
        {
            var ours = new byte[ActivationFormats.RowBytes(format, row.Length)];
            ActivationQuantizer.Quantize(format, row, ours, vectorized);
            Assert.Equal(GgmlReference.CpuFromFloat(type, row), ours);
        }
        var rounded = new byte[row.Length * sizeof(float)];
        ActivationQuantizer.Quantize(ActivationFormat.F16, row, rounded, vectorized);
        var halves = MemoryMarshal.Cast<byte, ushort>(GgmlReference.CpuFromFloat(GgmlType.F16, row));
        var expected = new float[row.Length];
        GgmlReference.HalfBitsToFloat(halves, expected);
        Assert.Equal(expected, MemoryMarshal.Cast<byte, float>(rounded).ToArray());
    }

    [SkippableTheory]
    [MemberData(nameof(QuantizedTypes))]
    public void DotProductsMatchGgmlVecDot(GgmlType type)
    {
        GgmlReference.RequireCpu();
        const int columns = 768;
        var format = ActivationFormats.For(type);
        Assert.Equal(GgmlReference.VecDotType(type), ToGgml(format));
        for (var seed = 0; seed < 20; seed++)
        {
            var (weights, dequantized) = QuantizedRow(type, columns, seed);
            var x = TestRows.Make(seed % 3 == 0 ? "outliers" : "gaussian", 1, columns, seed + 100);
            var activations = new byte[ActivationFormats.RowBytes(format, columns)];
            ActivationQuantizer.Quantize(format, x, activations);
            var exact = ExactDot(dequantized, DequantizeActivations(format, activations, columns), out var magnitude);

            float ours;
            fixed (byte* w = weights)
            fixed (byte* a = activations)
            {
                ours = MatMul.DotRow(type, w, columns, a);
            }
            var ggml = GgmlReference.CpuVecDot(type, columns, weights, activations);
            Assert.True(BitConverter.SingleToInt32Bits(ours) == BitConverter.SingleToInt32Bits(ggml), $"{type} seed {seed}: ours {ours}, ggml {ggml}");
            var tolerance = 2e-6 * magnitude;
            // Q8_1 carries d·Σq rounded to fp16, which the offset m of Q4_1/Q5_1 multiplies: allow that rounding.
            var offsetRounding = format == ActivationFormat.Q8_1 ? OffsetRounding(type, weights, activations) : 0;
            Assert.True(Math.Abs(ours - exact) <= tolerance + offsetRounding, $"{type} seed {seed}: ours {ours}, exact {exact}, tolerance {tolerance}");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(QuantizedTypes))]
    public void ScalarAndVectorLanesAgree(GgmlType type)
    {
        Skip.IfNot(IntegerDot.Vectorized, "needs AVX2 and FMA");
        if (ActivationFormats.For(type) != ActivationFormat.Q8_K) return; // the 32-weight lanes have no separate scalar form to compare
        const int columns = 512;
        for (var seed = 0; seed < 10; seed++)
        {
            var (weights, _) = QuantizedRow(type, columns, seed);
            var x = TestRows.Make("student-t3", 1, columns, seed + 7);
            var activations = new byte[ActivationFormats.RowBytes(ActivationFormat.Q8_K, columns)];
            ActivationQuantizer.Quantize(ActivationFormat.Q8_K, x, activations);
            var decoded = new byte[2 * MatMul.DecodedBlockBytes(type)];
            fixed (byte* w = weights)
            fixed (byte* d = decoded)
            fixed (byte* a = activations)
            {
                MatMul.DecodeRow(type, w, columns, d);
                for (var b = 0; b < 2; b++)
                {
                    var block = (BlockQ8K*)a + b;
                    if (type is GgmlType.Q3_K or GgmlType.IQ4_XS)
                    {
                        var sb = (DecodedSignedSuperBlock*)d + b;
                        Assert.Equal(IntegerDot.SignedLanesVector256(sb, (sbyte*)&block->Qs), IntegerDot.SignedLanesScalar(sb, (sbyte*)&block->Qs));
                    }
                    else
                    {
                        var sb = (DecodedSuperBlock*)d + b;
                        Assert.Equal(IntegerDot.UnsignedLanesVector256(sb->Values, sb->Scales, (sbyte*)&block->Qs),
                            IntegerDot.UnsignedLanesScalar(sb->Values, sb->Scales, (sbyte*)&block->Qs));
                    }
                }
            }
        }
    }

    /// <summary>Every kernel llama.cpp may pick for a type (vec_dot, tinyBLAS, repacked gemm and gemv, panel): the
    /// four-token form gives the single-token form's results to the bit.</summary>
    [Theory]
    [MemberData(nameof(QuantizedTypes))]
    public void FourTokenKernelsMatchSingleTokenOnes(GgmlType type)
    {
        const int columns = 512, tokens = 4;
        var (weights, _) = QuantizedRow(type, columns, seed: 3);
        var format = ActivationFormats.For(type);
        var rowBytes = ActivationFormats.RowBytes(format, columns);
        var activations = new byte[tokens * rowBytes];
        for (var t = 0; t < tokens; t++)
            ActivationQuantizer.Quantize(format, TestRows.Make("gaussian", 1, columns, 40 + t), activations.AsSpan(t * rowBytes, rowBytes));
        foreach (var kernel in MatMul.Variants(type))
        {
            var blocks = columns / GgmlTypeTraits.Of(type).BlockSize;
            var decoded = new byte[blocks * MatMul.DecodedBlockBytes(type)];
            var results = new float[4];
            fixed (byte* w = weights)
            fixed (byte* d = decoded)
            fixed (byte* a = activations)
            fixed (float* r = results)
            {
                MatMul.DecodeRow(type, w, columns, d);
                kernel.Dot4(d, a, rowBytes, blocks, r);
                for (var t = 0; t < tokens; t++) Assert.Equal(kernel.Dot(d, a + t * rowBytes, blocks), results[t]);
            }
        }
    }

    /// <summary>The cache-blocked float panel (4×3 tiles, k cut into blocks with the accumulators stored between them)
    /// gives every output the single-output tinyBLAS result to the bit, at token counts that leave one or two tokens
    /// over and row lengths that are one, several or an uneven number of k-blocks.</summary>
    [Theory]
    [InlineData(4, 1, 8)]
    [InlineData(8, 2, 1000)]
    [InlineData(12, 5, 1024)]
    [InlineData(64, 7, 2056)]
    [InlineData(16, 9, 5632)]
    public void BlockedFloatPanelMatchesSingleOutputTinyBlas(int rows, int tokens, int columns)
    {
        var weights = TestRows.Make("gaussian", rows, columns, 7);
        var activations = TestRows.Make("student-t3", tokens, columns, 8);
        const int yStride = 70;
        var output = new float[tokens * yStride];
        var accumulators = new Vector256<float>[FloatDot.AccumulatorVectors(rows)];
        fixed (float* w = weights)
        fixed (float* x = activations)
        fixed (float* y = output)
        fixed (Vector256<float>* acc = accumulators)
        {
            FloatDot.TinyBlasPanel(w, rows, x, tokens, columns, y, yStride, acc);
            for (var t = 0; t < tokens; t++)
            {
                for (var r = 0; r < rows; r++)
                    Assert.Equal(FloatDot.TinyBlas(w + r * columns, x + t * columns, columns), output[t * yStride + r]);
            }
        }
    }

    /// <summary>A random row quantized by KQuant's codec (byte-identical to ggml's) and its dequantized values.</summary>
    internal static (byte[] Bytes, float[] Values) QuantizedRow(GgmlType type, int columns, int seed)
    {
        var source = TestRows.Make(seed % 4 == 1 ? "student-t3" : "gaussian", 1, columns, seed);
        var codec = RowCodecs.Get(type);
        var bytes = new byte[GgmlTypeTraits.Of(type).RowBytes(columns)];
        codec.Quantize(source, bytes, default);
        var values = new float[columns];
        codec.Dequantize(bytes, values);
        return (bytes, values);
    }

    internal static float[] DequantizeActivations(ActivationFormat format, ReadOnlySpan<byte> bytes, int columns)
    {
        var values = new float[columns];
        switch (format)
        {
            case ActivationFormat.Q8_0:
                RowCodecs.Get(GgmlType.Q8_0).Dequantize(bytes, values);
                break;
            case ActivationFormat.Q8_K:
                RowCodecs.Get(GgmlType.Q8_K).Dequantize(bytes, values);
                break;
            case ActivationFormat.Q8_1:
                var blocks = MemoryMarshal.Cast<byte, BlockQ81>(bytes);
                for (var b = 0; b < blocks.Length; b++)
                {
                    var d = (float)BitConverter.UInt16BitsToHalf(blocks[b].D);
                    for (var j = 0; j < 32; j++) values[32 * b + j] = d * (sbyte)blocks[b].Qs[j];
                }
                break;
            default:
                MemoryMarshal.Cast<byte, float>(bytes).CopyTo(values);
                break;
        }
        return values;
    }

    private static double OffsetRounding(GgmlType type, byte[] weights, byte[] activations)
    {
        var sums = MemoryMarshal.Cast<byte, BlockQ81>(activations);
        var blockBytes = GgmlTypeTraits.Of(type).BytesPerBlock;
        double bound = 0;
        for (var b = 0; b < sums.Length; b++)
        {
            // m is the second fp16 of both block_q4_1 and block_q5_1.
            var m = (float)BitConverter.UInt16BitsToHalf(BitConverter.ToUInt16(weights, b * blockBytes + 2));
            bound += Math.Abs(m) * Math.Abs((float)BitConverter.UInt16BitsToHalf(sums[b].S)) / 1024;
        }
        return bound;
    }

    private static double ExactDot(float[] w, float[] x, out double magnitude)
    {
        double sum = 0;
        magnitude = 0;
        for (var i = 0; i < w.Length; i++)
        {
            sum += (double)w[i] * x[i];
            magnitude += Math.Abs((double)w[i] * x[i]);
        }
        return sum;
    }

    private static GgmlType ToGgml(ActivationFormat format) => format switch
    {
        ActivationFormat.Q8_0 => GgmlType.Q8_0,
        ActivationFormat.Q8_1 => GgmlType.Q8_1,
        ActivationFormat.Q8_K => GgmlType.Q8_K,
        ActivationFormat.F16 => GgmlType.F16,
        ActivationFormat.BF16 => GgmlType.BF16,
        _ => GgmlType.F32,
    };
}
