using System.Runtime.InteropServices;

namespace KQuant.Tests.Reference;

// ggml's own fp16 and bf16 row conversions (the software ones libggml-base is built with; bf16 as ggml_quantize_chunk
// writes it, through ggml_fp32_to_bf16_row_ref), as raw 16-bit patterns.
public static unsafe partial class GgmlReference
{
    public static void FloatToHalfBits(ReadOnlySpan<float> source, Span<ushort> destination) =>
        Narrow("ggml_fp32_to_fp16_row", source, destination);

    public static void HalfBitsToFloat(ReadOnlySpan<ushort> source, Span<float> destination) =>
        Widen("ggml_fp16_to_fp32_row", source, destination);

    public static void FloatToBf16Bits(ReadOnlySpan<float> source, Span<ushort> destination) =>
        Narrow("ggml_fp32_to_bf16_row_ref", source, destination);

    public static void Bf16BitsToFloat(ReadOnlySpan<ushort> source, Span<float> destination) =>
        Widen("ggml_bf16_to_fp32_row", source, destination);

    private static void Narrow(string entryPoint, ReadOnlySpan<float> source, Span<ushort> destination)
    {
        var convert = (delegate* unmanaged<float*, ushort*, long, void>)Export(entryPoint);
        fixed (float* s = source)
        fixed (ushort* d = destination)
        {
            convert(s, d, source.Length);
        }
    }

    private static void Widen(string entryPoint, ReadOnlySpan<ushort> source, Span<float> destination)
    {
        var convert = (delegate* unmanaged<ushort*, float*, long, void>)Export(entryPoint);
        fixed (ushort* s = source)
        fixed (float* d = destination)
        {
            convert(s, d, source.Length);
        }
    }

    /// <summary>An exported function of libggml-base (loading an already loaded library returns its handle).</summary>
    private static IntPtr Export(string name) =>
        NativeLibrary.GetExport(NativeLibrary.Load(Path.Combine(TestPaths.ReferenceLibDir, "libggml-base.so")), name);
}
