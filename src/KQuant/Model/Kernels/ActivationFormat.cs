using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using KQuant.Gguf;
using KQuant.Quants;
using KQuant.Quants.K;
using KQuant.Quants.Legacy;

namespace KQuant.Model.Kernels;

/// <summary>The form activations take before they meet a weight matrix: ggml's vec_dot_type of the weight type (the CPU
/// type table of ggml-cpu.c in llama.cpp v0.5.0). Integer dot products need 8-bit activations; float weights see the
/// activations rounded to their own precision, as ggml converts them to F16/BF16 before the dot product.</summary>
internal enum ActivationFormat
{
    /// <summary>Plain floats (F32 weights).</summary>
    F32,
    /// <summary>Floats rounded to fp16 precision (F16 weights), kept as floats.</summary>
    F16,
    /// <summary>Floats rounded to bf16 precision (BF16 weights), kept as floats.</summary>
    BF16,
    /// <summary>block_q8_0: 32 signed bytes and an fp16 scale (Q4_0, Q5_0, Q8_0, IQ4_NL).</summary>
    Q8_0,
    /// <summary>block_q8_1: Q8_0 plus the fp16 of scale·Σq (Q4_1, Q5_1, whose offsets multiply that sum).</summary>
    Q8_1,
    /// <summary>block_q8_K: 256 signed bytes, a float scale and sums of each 16 (the K-quants and IQ4_XS).</summary>
    Q8_K,
}

/// <summary>ggml's block_q8_1 (ggml-common.h): scale d and s = d·Σqs as fp16 bits, then 32 signed bytes.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal struct BlockQ81
{
    public const int Size = 36;

    public ushort D;
    public ushort S;
    public Bytes32 Qs;
}

internal static class ActivationFormats
{
    public static ActivationFormat For(GgmlType weightType) => weightType switch
    {
        GgmlType.F32 => ActivationFormat.F32,
        GgmlType.F16 => ActivationFormat.F16,
        GgmlType.BF16 => ActivationFormat.BF16,
        GgmlType.Q4_0 or GgmlType.Q5_0 or GgmlType.Q8_0 or GgmlType.IQ4_NL => ActivationFormat.Q8_0,
        GgmlType.Q4_1 or GgmlType.Q5_1 => ActivationFormat.Q8_1,
        GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.IQ4_XS => ActivationFormat.Q8_K,
        _ => throw new ModelNotSupportedException($"no matrix multiplication for {GgmlTypeTraits.Of(weightType).Name} weights; KQuant runs {string.Join(", ", SupportedWeightTypes.Select(t => GgmlTypeTraits.Of(t).Name))}"),
    };

    /// <summary>Weight types the forward pass multiplies by directly from the file.</summary>
    public static IReadOnlyList<GgmlType> SupportedWeightTypes { get; } =
    [
        GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS,
    ];

    /// <summary>Bytes one activation row of <paramref name="columns"/> values takes in <paramref name="format"/>.</summary>
    public static int RowBytes(ActivationFormat format, int columns) => format switch
    {
        ActivationFormat.F32 or ActivationFormat.F16 or ActivationFormat.BF16 => columns * sizeof(float),
        ActivationFormat.Q8_0 => columns / BlockQ80.Weights * Unsafe.SizeOf<BlockQ80>(),
        ActivationFormat.Q8_1 => columns / BlockQ80.Weights * BlockQ81.Size,
        ActivationFormat.Q8_K => columns / KQuantLayout.SuperBlock * BlockQ8K.Size,
        _ => throw new ArgumentOutOfRangeException(nameof(format)),
    };
}
