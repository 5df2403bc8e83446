using System.Reflection;
using System.Runtime.InteropServices;
using KQuant.Gguf;

namespace KQuant.Tests.Reference;

/// <summary>P/Invoke into libggml-base.so of llama.cpp v0.5.0 (npm @node-llama-cpp/linux-x64@3.22.1): the byte-for-byte oracle
/// for the codecs. Tests call <see cref="Require"/> first; it skips when the library has not been fetched.</summary>
public static unsafe partial class GgmlReference
{
    // Library names for [LibraryImport]; Resolve maps them to the fetched files. LlamaReference uses these too.
    internal const string GgmlBase = "ggml-base";
    internal const string Llama = "llama";
    internal const string Ggml = "ggml";
    /// <summary>The AVX2 build of the CPU backend (its kernels and activation quantizers are exported).</summary>
    internal const string GgmlCpu = "ggml-cpu-haswell";

    // The assembly's only DllImport resolver (a second SetDllImportResolver call would throw).
    static GgmlReference()
    {
        NativeLibrary.SetDllImportResolver(typeof(GgmlReference).Assembly, Resolve);
    }

    /// <summary>Installs the resolver (by running the static constructor) before another class's first P/Invoke.</summary>
    internal static void EnsureResolver()
    {
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        var file = name switch
        {
            GgmlBase => "libggml-base.so",
            Ggml => "libggml.v0.5.0.so",
            Llama => "libllama.v0.5.0.so",
            GgmlCpu => "libggml-cpu-haswell.so",
            _ => null,
        };
        return file is null ? IntPtr.Zero : NativeLibrary.Load(Path.Combine(TestPaths.ReferenceLibDir, file));
    }

    public static bool Available => File.Exists(Path.Combine(TestPaths.ReferenceLibDir, "libggml-base.so"));

    /// <summary>Skips the calling test when the reference has not been fetched (run scripts/fetch-reference.sh).</summary>
    public static void Require() =>
        Skip.IfNot(Available, $"needs the llama.cpp reference in {TestPaths.ReferenceLibDir}; run scripts/fetch-reference.sh");

    [LibraryImport(GgmlBase, EntryPoint = "ggml_quantize_init")]
    private static partial void QuantizeInit(int type);

    [LibraryImport(GgmlBase, EntryPoint = "ggml_quantize_chunk")]
    private static partial nuint QuantizeChunk(int type, float* src, void* dst, long start, long nrows, long nPerRow, float* imatrix);

    [LibraryImport(GgmlBase, EntryPoint = "ggml_get_type_traits")]
    private static partial TypeTraits* GetTypeTraits(int type);

    [LibraryImport(GgmlBase, EntryPoint = "quantize_row_q8_K_ref")]
    private static partial void QuantizeRowQ8KRef(float* src, void* dst, long k);

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
        public delegate* unmanaged<float*, void*, long, void> FromFloatRef;
    }

    /// <summary>ggml_quantize_chunk over <paramref name="nrows"/> rows of <paramref name="nPerRow"/> floats.
    /// Q8_K is not handled by ggml_quantize_chunk; it goes through quantize_row_q8_K_ref, as ggml does for activations.</summary>
    public static byte[] Quantize(GgmlType type, ReadOnlySpan<float> src, int nPerRow, ReadOnlySpan<float> importance)
    {
        var traits = GgmlTypeTraits.Of(type);
        var nrows = src.Length / nPerRow;
        var dst = new byte[traits.RowBytes(nPerRow) * nrows];
        fixed (float* s = src)
        fixed (float* w = importance)
        fixed (byte* d = dst)
        {
            if (type == GgmlType.Q8_K)
            {
                QuantizeRowQ8KRef(s, d, src.Length);
            }
            else
            {
                QuantizeInit((int)type);
                var written = QuantizeChunk((int)type, s, d, 0, nrows, nPerRow, importance.IsEmpty ? null : w);
                if ((long)written != dst.Length) throw new InvalidOperationException($"ggml wrote {written} bytes, expected {dst.Length}");
            }
        }
        return dst;
    }

    /// <summary>(block size, bytes per block) as ggml reports them.</summary>
    public static (int BlockSize, int BytesPerBlock) TypeSize(GgmlType type)
    {
        var traits = GetTypeTraits((int)type);
        return ((int)traits->BlockSize, (int)traits->TypeSize);
    }

    [LibraryImport(GgmlBase, EntryPoint = "dequantize_row_q8_K")]
    private static partial void DequantizeRowQ8K(void* src, float* dst, long k);

    /// <summary>ggml's to_float for the type (dequantize_row_*). Q8_K has no to_float in ggml's type table; its
    /// exported dequantize_row_q8_K is called instead. F32 has none either: its rows are the floats themselves.</summary>
    public static float[] Dequantize(GgmlType type, ReadOnlySpan<byte> src, int count)
    {
        var dst = new float[count];
        var traits = GetTypeTraits((int)type);
        fixed (byte* s = src)
        fixed (float* d = dst)
        {
            if (type == GgmlType.Q8_K) DequantizeRowQ8K(s, d, count);
            else if (type == GgmlType.F32) new ReadOnlySpan<float>(s, count).CopyTo(dst);
            else if (traits->ToFloat == null) throw new NotSupportedException($"ggml has no to_float for {type}");
            else traits->ToFloat(s, d, count);
        }
        return dst;
    }
}
