using System.Runtime.InteropServices;

namespace KQuant.Tests.Reference;

// ggml's own fp16 conversions (the software ones libggml-base is built with), to check System.Half against them.
public static unsafe partial class GgmlReference
{
    [LibraryImport(GgmlBase, EntryPoint = "ggml_fp32_to_fp16_row")]
    private static partial void Fp32ToFp16Row(float* src, ushort* dst, long n);

    [LibraryImport(GgmlBase, EntryPoint = "ggml_fp16_to_fp32_row")]
    private static partial void Fp16ToFp32Row(ushort* src, float* dst, long n);

    /// <summary>GGML_FP32_TO_FP16 over a span, as raw fp16 bits.</summary>
    public static void FloatToHalfBits(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        fixed (float* s = source)
        fixed (ushort* d = destination)
        {
            Fp32ToFp16Row(s, d, source.Length);
        }
    }

    /// <summary>GGML_FP16_TO_FP32 over a span of raw fp16 bits.</summary>
    public static void HalfBitsToFloat(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        fixed (ushort* s = source)
        fixed (float* d = destination)
        {
            Fp16ToFp32Row(s, d, source.Length);
        }
    }
}
