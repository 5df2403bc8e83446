using System.Runtime.InteropServices;

namespace KQuant.Tests.Reference;

// ggml's bf16 conversions (ggml_fp32_to_bf16_row_ref is what ggml_quantize_chunk uses for BF16 files).
public static unsafe partial class GgmlReference
{
    [LibraryImport(GgmlBase, EntryPoint = "ggml_fp32_to_bf16_row_ref")]
    private static partial void Fp32ToBf16RowRef(float* src, ushort* dst, long n);

    [LibraryImport(GgmlBase, EntryPoint = "ggml_bf16_to_fp32_row")]
    private static partial void Bf16ToFp32Row(ushort* src, float* dst, long n);

    /// <summary>ggml_fp32_to_bf16_row_ref over a span, as raw bf16 bits.</summary>
    public static void FloatToBf16Bits(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        fixed (float* s = source)
        fixed (ushort* d = destination)
        {
            Fp32ToBf16RowRef(s, d, source.Length);
        }
    }

    /// <summary>ggml_bf16_to_fp32_row over a span of raw bf16 bits.</summary>
    public static void Bf16BitsToFloat(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        fixed (ushort* s = source)
        fixed (float* d = destination)
        {
            Bf16ToFp32Row(s, d, source.Length);
        }
    }
}
