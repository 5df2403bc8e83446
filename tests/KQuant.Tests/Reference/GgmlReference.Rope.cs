using System.Runtime.InteropServices;
using KQuant.Gguf;

namespace KQuant.Tests.Reference;

// ggml_rope_ext computed by the CPU backend (libggml-cpu-haswell.so) on a one-node graph: the oracle for the forward
// pass's RoPE, including YaRN's angle mix and magnitude factor.
public static unsafe partial class GgmlReference
{
    /// <summary>struct ggml_init_params (ggml.h).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct InitParams
    {
        public nuint MemSize;
        public IntPtr MemBuffer;
        public byte NoAlloc;
    }

    /// <summary>The parameters of ggml_rope_ext after its tensors.</summary>
    public sealed record RopeParameters(int Dimensions, int Mode, int OriginalContext, float FreqBase, float FreqScale,
        float ExtFactor, float AttnFactor, float BetaFast, float BetaSlow);

    /// <summary>ggml_rope_ext on <paramref name="x"/>, rows of <paramref name="heads"/> heads of
    /// <paramref name="headDimension"/> values, one row per entry of <paramref name="positions"/>; frequency factors
    /// (ggml's third tensor) when <paramref name="frequencyFactors"/> is not empty.</summary>
    public static float[] CpuRope(ReadOnlySpan<float> x, int heads, int headDimension, ReadOnlySpan<int> positions,
        RopeParameters p, ReadOnlySpan<float> frequencyFactors = default)
    {
        RequireCpu();
        var rows = positions.Length;
        if (x.Length != rows * heads * headDimension) throw new ArgumentException("x is not positions × heads × headDimension", nameof(x));
        var bytes = (nuint)(3 * x.Length * sizeof(float) + (positions.Length + frequencyFactors.Length) * 4 + (16 << 20));
        var context = Init(new InitParams { MemSize = bytes, MemBuffer = IntPtr.Zero, NoAlloc = 0 });
        if (context == IntPtr.Zero) throw new InvalidOperationException("ggml_init failed");
        try
        {
            var a = NewTensor3d(context, (int)GgmlType.F32, headDimension, heads, rows);
            var b = NewTensor1d(context, (int)GgmlType.I32, rows);
            x.CopyTo(new Span<float>((void*)TensorDataCpu(a), x.Length));
            positions.CopyTo(new Span<int>((void*)TensorDataCpu(b), rows));
            var c = IntPtr.Zero;
            if (!frequencyFactors.IsEmpty)
            {
                c = NewTensor1d(context, (int)GgmlType.F32, frequencyFactors.Length);
                frequencyFactors.CopyTo(new Span<float>((void*)TensorDataCpu(c), frequencyFactors.Length));
            }
            var y = RopeExt(context, a, b, c, p.Dimensions, p.Mode, p.OriginalContext, p.FreqBase, p.FreqScale,
                p.ExtFactor, p.AttnFactor, p.BetaFast, p.BetaSlow);
            var graph = NewGraph(context);
            BuildForwardExpand(graph, y);
            var status = GraphComputeWithContext(context, graph, 1);
            if (status != 0) throw new InvalidOperationException($"ggml_graph_compute_with_ctx returned {status}");
            return new ReadOnlySpan<float>((void*)TensorDataCpu(y), x.Length).ToArray();
        }
        finally
        {
            Free(context);
        }
    }

    [LibraryImport(GgmlBase, EntryPoint = "ggml_init")]
    private static partial IntPtr Init(InitParams parameters);

    [LibraryImport(GgmlBase, EntryPoint = "ggml_free")]
    private static partial void Free(IntPtr context);

    [LibraryImport(GgmlBase, EntryPoint = "ggml_new_tensor_1d")]
    private static partial IntPtr NewTensor1d(IntPtr context, int type, long ne0);

    [LibraryImport(GgmlBase, EntryPoint = "ggml_new_tensor_3d")]
    private static partial IntPtr NewTensor3d(IntPtr context, int type, long ne0, long ne1, long ne2);

    [LibraryImport(GgmlBase, EntryPoint = "ggml_get_data")]
    private static partial IntPtr TensorDataCpu(IntPtr tensor);

    [LibraryImport(GgmlBase, EntryPoint = "ggml_rope_ext")]
    private static partial IntPtr RopeExt(IntPtr context, IntPtr a, IntPtr b, IntPtr c, int dimensions, int mode,
        int originalContext, float freqBase, float freqScale, float extFactor, float attnFactor, float betaFast, float betaSlow);

    [LibraryImport(GgmlBase, EntryPoint = "ggml_new_graph")]
    private static partial IntPtr NewGraph(IntPtr context);

    [LibraryImport(GgmlBase, EntryPoint = "ggml_build_forward_expand")]
    private static partial void BuildForwardExpand(IntPtr graph, IntPtr tensor);

    [LibraryImport(GgmlCpu, EntryPoint = "ggml_graph_compute_with_ctx")]
    private static partial int GraphComputeWithContext(IntPtr context, IntPtr graph, int threads);
}
