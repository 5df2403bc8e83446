using System.Runtime.Intrinsics;
using KQuant.Gguf;
using KQuant.Quants.Float;

namespace KQuant.Model.Kernels;

/// <summary>Y = X·Wᵀ for a batch of activation rows X (one per token) and a weight matrix W in its stored type.
/// Threads take panels of consecutive weight rows; each panel is decoded once into per-thread scratch (small enough
/// to stay in L1/L2) and then multiplied with every token, so unpacking a row is paid once per batch.</summary>
internal static unsafe class MatMul
{
    /// <summary>Bytes of decoded quantized weights one panel aims at (a quarter of a 1 MB L2).</summary>
    private const int PanelBytes = 256 * 1024;

    /// <summary>Bytes of converted weights one float panel aims at: half of a 1 MB L2, so the panel converted once
    /// stays there while every token meets it.</summary>
    private const int FloatPanelBytes = 512 * 1024;

    /// <summary>Writes y[t·<paramref name="yStride"/> + r] = Σ_k W[r, k]·x[t, k] for every token t and weight row r.</summary>
    public static void Multiply(WeightMatrix w, ActivationBatch x, float* y, nint yStride, Parallelism parallel)
    {
        if (x.Columns != w.Columns)
            throw new InvalidOperationException($"{w.Name}: {x.Columns} activations per row for a matrix of {w.Columns} columns");
        if (x.Rows == 0) return;
        var activations = x.Get(w.ActivationFormat, parallel);
        var activationStride = ActivationFormats.RowBytes(w.ActivationFormat, w.Columns);
        var tokens = x.Rows;
        var plan = Plan(w, tokens);
        var panelRows = PanelRows(w, plan.Main, parallel.Threads);
        parallel.For((w.Rows + panelRows - 1) / panelRows, panel =>
        {
            var r0 = panel * panelRows;
            var r1 = Math.Min(w.Rows, r0 + panelRows);
            if (plan.Main.IsFloat) FloatPanel(w, (float*)activations, tokens, y, yStride, r0, r1);
            else QuantizedPanel(w, plan, activations, activationStride, tokens, y, yStride, r0, r1);
        });
    }

    /// <summary>The kernel for the first <see cref="Split"/> tokens of a batch and the one for the rest: llama.cpp's
    /// repacked Q4_K kernel takes tokens four at a time and the leftover ones one by one, adding in another order.</summary>
    private readonly record struct KernelPlan(Kernel Main, Kernel Tail, int Split);

    /// <summary>Which of llama.cpp's code paths (and so which order of additions) a product of this matrix and this many
    /// tokens takes on its AVX2 build.</summary>
    private static KernelPlan Plan(WeightMatrix w, int tokens)
    {
        if (w.Repacked && w.Type == GgmlType.Q4_K)
            return new KernelPlan(Kernel.Of<Q4KRepackedKernel>(), Kernel.Of<Q4KRepackedOneTokenKernel>(), tokens & ~3);
        var kernel = w.Type switch
        {
            GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 => Kernel.Float,
            GgmlType.Q4_0 => w.Repacked ? Kernel.Of<Q40RepackedKernel>() : Kernel.Of<Q40Kernel>(),
            GgmlType.IQ4_NL => w.Repacked ? Kernel.Of<IQ4NLRepackedKernel>() : tokens >= 2 ? Kernel.Of<IQ4NLTinyBlasKernel>() : Kernel.Of<IQ4NLKernel>(),
            GgmlType.IQ4_XS => w.Rows % 8 == 0 && tokens >= 8 ? Kernel.Of<IQ4XSPanelKernel>() : Kernel.Of<IQ4XSKernel>(),
            _ => QuantizedKernel(w.Type),
        };
        return new KernelPlan(kernel, kernel, tokens);
    }

    /// <summary>Many rows per panel, as every panel streams the whole activation batch through the cache once, but
    /// few enough for the decoded panel to stay in L2; float panels a multiple of four rows (tinyBLAS tiles); fewer
    /// rows when that would leave threads without panels.</summary>
    private static int PanelRows(WeightMatrix w, Kernel kernel, int threads)
    {
        var step = kernel.IsFloat ? 4 : 1;
        var decodedRowBytes = kernel.IsFloat
            ? w.Columns * sizeof(float)
            : (int)(w.Columns / (long)kernel.BlockWeights * kernel.DecodedBlockBytes);
        var rows = Math.Clamp((kernel.IsFloat ? FloatPanelBytes : PanelBytes) / Math.Max(1, decodedRowBytes), step, 64) / step * step;
        while (threads > 1 && rows > step && (w.Rows + rows - 1) / rows < 4 * threads) rows -= step;
        return rows;
    }

    /// <summary>The entry points of one weight kernel; <see cref="Float"/> stands for the float types.</summary>
    internal readonly struct Kernel
    {
        public delegate*<byte*, int, byte*, void> Decode { get; init; }
        public delegate*<byte*, byte*, int, float> Dot { get; init; }
        public delegate*<byte*, byte*, nint, int, float*, void> Dot4 { get; init; }
        public int BlockWeights { get; init; }
        public int DecodedBlockBytes { get; init; }
        public bool IsFloat => Dot == null;

        public static Kernel Float => default;

        public static Kernel Of<TKernel>() where TKernel : IWeightKernel => new()
        {
            Decode = &DecodeBlocks<TKernel>,
            Dot = &DotBlocks<TKernel>,
            Dot4 = &Dot4Blocks<TKernel>,
            BlockWeights = TKernel.BlockWeights,
            DecodedBlockBytes = TKernel.DecodedBlockBytes,
        };
    }

    /// <summary>The vec_dot kernel of each quantized type (the one llama.cpp uses when it neither repacks the matrix
    /// nor takes a batched path).</summary>
    private static readonly Dictionary<GgmlType, Kernel> VecDotKernels = new()
    {
        [GgmlType.Q4_0] = Kernel.Of<Q40Kernel>(),
        [GgmlType.Q4_1] = Kernel.Of<Q41Kernel>(),
        [GgmlType.Q5_0] = Kernel.Of<Q50Kernel>(),
        [GgmlType.Q5_1] = Kernel.Of<Q51Kernel>(),
        [GgmlType.Q8_0] = Kernel.Of<Q80Kernel>(),
        [GgmlType.IQ4_NL] = Kernel.Of<IQ4NLKernel>(),
        [GgmlType.Q2_K] = Kernel.Of<Q2KKernel>(),
        [GgmlType.Q3_K] = Kernel.Of<Q3KKernel>(),
        [GgmlType.Q4_K] = Kernel.Of<Q4KKernel>(),
        [GgmlType.Q5_K] = Kernel.Of<Q5KKernel>(),
        [GgmlType.Q6_K] = Kernel.Of<Q6KKernel>(),
        [GgmlType.IQ4_XS] = Kernel.Of<IQ4XSKernel>(),
    };

    /// <summary>Types llama.cpp's AVX2 CPU backend repacks into 8-row interleaved blocks (ggml_repack_get_optimal_repack_type
    /// of repack.cpp), which it then multiplies with other kernels.</summary>
    internal static bool IsRepackedType(GgmlType type) => type is GgmlType.Q4_0 or GgmlType.Q4_K or GgmlType.IQ4_NL;

    private static Kernel QuantizedKernel(GgmlType type) =>
        VecDotKernels.TryGetValue(type, out var kernel) ? kernel : throw new ArgumentOutOfRangeException(nameof(type), $"{type} has no integer kernel");

    /// <summary>Bytes one stored block of a quantized type takes once decoded.</summary>
    internal static int DecodedBlockBytes(GgmlType type) => QuantizedKernel(type).DecodedBlockBytes;

    /// <summary>Decodes a quantized row into <paramref name="destination"/> (<see cref="DecodedBlockBytes"/> per block).</summary>
    internal static void DecodeRow(GgmlType type, byte* weights, int columns, byte* destination)
    {
        var kernel = QuantizedKernel(type);
        kernel.Decode(weights, columns / kernel.BlockWeights, destination);
    }

    /// <summary>One quantized weight row times one activation row in the type's activation format, with the type's
    /// vec_dot kernel (tests hold it against ggml's).</summary>
    internal static float DotRow(GgmlType type, byte* weights, int columns, byte* activations)
    {
        var kernel = QuantizedKernel(type);
        var blocks = columns / kernel.BlockWeights;
        var decoded = Scratch.Get((nuint)(blocks * kernel.DecodedBlockBytes));
        kernel.Decode(weights, blocks, decoded);
        return kernel.Dot(decoded, activations, blocks);
    }

    /// <summary>Every kernel llama.cpp may use for <paramref name="type"/> (vec_dot, tinyBLAS, repacked, panel), for tests.</summary>
    internal static Kernel[] Variants(GgmlType type) => type switch
    {
        GgmlType.Q4_0 => [Kernel.Of<Q40Kernel>(), Kernel.Of<Q40RepackedKernel>()],
        GgmlType.IQ4_NL => [Kernel.Of<IQ4NLKernel>(), Kernel.Of<IQ4NLTinyBlasKernel>(), Kernel.Of<IQ4NLRepackedKernel>()],
        GgmlType.Q4_K => [Kernel.Of<Q4KKernel>(), Kernel.Of<Q4KRepackedKernel>(), Kernel.Of<Q4KRepackedOneTokenKernel>()],
        GgmlType.IQ4_XS => [Kernel.Of<IQ4XSKernel>(), Kernel.Of<IQ4XSPanelKernel>()],
        _ => [QuantizedKernel(type)],
    };

    private static void DecodeBlocks<TKernel>(byte* source, int blocks, byte* destination) where TKernel : IWeightKernel =>
        TKernel.Decode(source, blocks, destination);

    private static float DotBlocks<TKernel>(byte* decoded, byte* activations, int blocks) where TKernel : IWeightKernel =>
        TKernel.Dot(decoded, activations, blocks);

    private static void Dot4Blocks<TKernel>(byte* decoded, byte* activations, nint stride, int blocks, float* results)
        where TKernel : IWeightKernel => TKernel.Dot4(decoded, activations, stride, blocks, results);

    private static void QuantizedPanel(WeightMatrix w, KernelPlan plan, byte* activations, nint activationStride, int tokens,
        float* y, nint yStride, int r0, int r1)
    {
        var blocks = w.Columns / plan.Main.BlockWeights;
        var decodedRowBytes = (nint)blocks * plan.Main.DecodedBlockBytes;
        var rows = r1 - r0;
        var decoded = Scratch.Get((nuint)(rows * decodedRowBytes));
        for (var r = 0; r < rows; r++) plan.Main.Decode(w.Data + (r0 + r) * w.RowBytes, blocks, decoded + r * decodedRowBytes);
        var results = stackalloc float[4];
        var t = 0;
        // Groups of four tokens within the main kernel's share, then the rest one at a time.
        for (; t + 4 <= plan.Split; t += 4)
        {
            var a = activations + t * activationStride;
            var yt = y + t * yStride + r0;
            for (var r = 0; r < rows; r++)
            {
                plan.Main.Dot4(decoded + r * decodedRowBytes, a, activationStride, blocks, results);
                yt[r] = results[0];
                yt[yStride + r] = results[1];
                yt[2 * yStride + r] = results[2];
                yt[3 * yStride + r] = results[3];
            }
        }
        for (; t < tokens; t++)
        {
            var dot = t < plan.Split ? plan.Main.Dot : plan.Tail.Dot;
            var a = activations + t * activationStride;
            var yt = y + t * yStride + r0;
            for (var r = 0; r < rows; r++) yt[r] = dot(decoded + r * decodedRowBytes, a, blocks);
        }
    }

    private static void FloatPanel(WeightMatrix w, float* x, int tokens, float* y, nint yStride, int r0, int r1)
    {
        var n = w.Columns;
        var rows = r1 - r0;
        float* panel;
        if (w.Type == GgmlType.F32)
        {
            panel = (float*)(w.Data + r0 * w.RowBytes);
        }
        else
        {
            panel = (float*)Scratch.Get((nuint)(rows * n * sizeof(float)));
            for (var r = 0; r < rows; r++)
            {
                var source = new ReadOnlySpan<ushort>(w.Data + (r0 + r) * w.RowBytes, n);
                var destination = new Span<float>(panel + r * n, n);
                if (w.Type == GgmlType.F16) HalfFloatRows.ToFloat<Fp16>(source, destination);
                else HalfFloatRows.ToFloat<Bf16>(source, destination);
            }
        }
        // llama.cpp's mul_mat_id (experts) always takes vec_dot.
        if (w.Expert < 0 && FloatDot.UsesTinyBlas(n, w.Rows, tokens))
        {
            var accumulators = stackalloc Vector256<float>[FloatDot.AccumulatorVectors(rows)];
            FloatDot.TinyBlasPanel(panel, rows, x, tokens, n, y + r0, yStride, accumulators);
            return;
        }
        for (var t = 0; t < tokens; t++)
        {
            for (var r = 0; r < rows; r++)
            {
                var wr = panel + r * n;
                var xt = x + t * n;
                y[t * yStride + r0 + r] = w.Type switch
                {
                    GgmlType.F32 => FloatDot.VecDotF32(wr, xt, n),
                    GgmlType.F16 => FloatDot.VecDotF16(wr, xt, n),
                    _ => FloatDot.VecDotBF16(wr, xt, n),
                };
            }
        }
    }
}
