using System.Runtime.InteropServices;
using KQuant.Gguf;

namespace KQuant.Tests.Reference;

// The CPU backend's own kernels (libggml-cpu-haswell.so, the AVX2 build): the activation quantizers ggml uses before an
// integer dot product, and the dot products themselves, to hold the forward pass's kernels against.
public static unsafe partial class GgmlReference
{
    private static readonly Lock CpuInitLock = new();
    private static bool _cpuInitialized;

    public static bool CpuAvailable => File.Exists(Path.Combine(TestPaths.ReferenceLibDir, "libggml-cpu-haswell.so"));

    /// <summary>Skips the calling test when the reference's CPU backend is absent or this CPU cannot run its AVX2 build.</summary>
    public static void RequireCpu()
    {
        Skip.IfNot(CpuAvailable, $"needs libggml-cpu-haswell.so of the llama.cpp reference in {TestPaths.ReferenceLibDir}; run scripts/fetch-reference.sh");
        Skip.IfNot(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported,
            "the reference's AVX2 CPU backend needs AVX2 and FMA");
        lock (CpuInitLock)
        {
            if (_cpuInitialized) return;
            CpuInit();
            _cpuInitialized = true;
        }
    }

    // struct ggml_type_traits_cpu (ggml-cpu.h of v0.5.0).
    [StructLayout(LayoutKind.Sequential)]
    private struct TypeTraitsCpu
    {
        public delegate* unmanaged<float*, void*, long, void> FromFloat;
        public delegate* unmanaged<int, float*, nuint, void*, nuint, void*, nuint, int, void> VecDot;
        public int VecDotType;
        public long NRows;
    }

    [LibraryImport(GgmlCpu, EntryPoint = "ggml_cpu_init")]
    private static partial void CpuInit();

    [LibraryImport(GgmlCpu, EntryPoint = "ggml_get_type_traits_cpu")]
    private static partial TypeTraitsCpu* GetTypeTraitsCpu(int type);

    /// <summary>The type ggml converts activations to before a dot product with <paramref name="weightType"/> weights.</summary>
    public static GgmlType VecDotType(GgmlType weightType) => (GgmlType)GetTypeTraitsCpu((int)weightType)->VecDotType;

    /// <summary>ggml-cpu's from_float for <paramref name="type"/> (e.g. quantize_row_q8_0 of arch/x86/quants.c) on one row.</summary>
    public static byte[] CpuFromFloat(GgmlType type, ReadOnlySpan<float> row)
    {
        var traits = GetTypeTraitsCpu((int)type);
        var bytes = new byte[GgmlTypeTraits.Of(type).RowBytes(row.Length)];
        fixed (float* x = row)
        fixed (byte* y = bytes)
        {
            traits->FromFloat(x, y, row.Length);
        }
        return bytes;
    }

    /// <summary>ggml-cpu's vec_dot for <paramref name="weightType"/>: one weight row with one row already in its
    /// vec_dot_type, <paramref name="n"/> values long.</summary>
    public static float CpuVecDot(GgmlType weightType, int n, ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations)
    {
        var traits = GetTypeTraitsCpu((int)weightType);
        float result;
        fixed (byte* x = weights)
        fixed (byte* y = activations)
        {
            traits->VecDot(n, &result, 0, x, 0, y, 0, 1);
        }
        return result;
    }
}
