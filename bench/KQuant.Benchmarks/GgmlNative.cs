using System.Reflection;
using System.Runtime.InteropServices;
using KQuant.Gguf;

namespace KQuant.Benchmarks;

/// <summary>The few entry points of llama.cpp v0.5.0's libggml-base.so the benchmarks time ours against (fetched by
/// scripts/fetch-reference.sh into .cache/reference; KQUANT_REFERENCE_LIB overrides the directory).</summary>
internal static unsafe partial class GgmlNative
{
    private const string GgmlBase = "ggml-base";

    static GgmlNative() => NativeLibrary.SetDllImportResolver(typeof(GgmlNative).Assembly, Resolve);

    public static string LibraryDirectory =>
        Environment.GetEnvironmentVariable("KQUANT_REFERENCE_LIB") is { Length: > 0 } dir
            ? dir
            : Path.Combine(RepoRoot(), ".cache", "reference", "bins", "package", "bins", "linux-x64");

    public static bool Available => File.Exists(Path.Combine(LibraryDirectory, "libggml-base.so"));

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path) =>
        name == GgmlBase ? NativeLibrary.Load(Path.Combine(LibraryDirectory, "libggml-base.so")) : IntPtr.Zero;

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "KQuant.slnx"))) return dir.FullName;
        }
        return Directory.GetCurrentDirectory();
    }

    [LibraryImport(GgmlBase, EntryPoint = "ggml_quantize_init")]
    private static partial void QuantizeInit(int type);

    [LibraryImport(GgmlBase, EntryPoint = "ggml_quantize_chunk")]
    private static partial nuint QuantizeChunk(int type, float* src, void* dst, long start, long nrows, long nPerRow, float* imatrix);

    [LibraryImport(GgmlBase, EntryPoint = "quantize_row_q8_K_ref")]
    private static partial void QuantizeRowQ8KRef(float* src, void* dst, long k);

    [LibraryImport(GgmlBase, EntryPoint = "dequantize_row_q8_K")]
    private static partial void DequantizeRowQ8K(void* src, float* dst, long k);

    [LibraryImport(GgmlBase, EntryPoint = "ggml_get_type_traits")]
    private static partial TypeTraits* GetTypeTraits(int type);

    // Leading fields of struct ggml_type_traits (ggml.h of v0.5.0).
    [StructLayout(LayoutKind.Sequential)]
    private struct TypeTraits
    {
        public IntPtr TypeName;
        public long BlockSize;
        public long BlockSizeInterleave;
        public nuint TypeSize;
        public byte IsQuantized;
        public delegate* unmanaged<void*, float*, long, void> ToFloat;
    }

    /// <summary>Prepares ggml's lookup tables for the type (a no-op for most), outside the timed region.</summary>
    public static void Prepare(GgmlType type) => QuantizeInit((int)type);

    /// <summary>ggml_quantize_chunk on one thread (quantize_row_q8_K_ref for Q8_K, which the chunk API does not take).</summary>
    public static void Quantize(GgmlType type, ReadOnlySpan<float> source, Span<byte> destination, int rowLength, ReadOnlySpan<float> importance)
    {
        fixed (float* s = source)
        fixed (float* w = importance)
        fixed (byte* d = destination)
        {
            if (type == GgmlType.Q8_K) QuantizeRowQ8KRef(s, d, source.Length);
            else QuantizeChunk((int)type, s, d, 0, source.Length / rowLength, rowLength, importance.IsEmpty ? null : w);
        }
    }

    /// <summary>ggml's to_float (dequantize_row_*; dequantize_row_q8_K for Q8_K, which has no to_float entry; F32 has none
    /// either, its rows being the floats themselves, so that is a copy).</summary>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> source, Span<float> destination)
    {
        fixed (byte* s = source)
        fixed (float* d = destination)
        {
            if (type == GgmlType.Q8_K) DequantizeRowQ8K(s, d, destination.Length);
            else if (type == GgmlType.F32) Buffer.MemoryCopy(s, d, (long)destination.Length * sizeof(float), source.Length);
            else GetTypeTraits((int)type)->ToFloat(s, d, destination.Length);
        }
    }
}
