using System.Diagnostics;
using KQuant.Gguf;
using KQuant.Model;
using KQuant.Model.Kernels;
using KQuant.Quants;

namespace KQuant.Benchmarks;

/// <summary><c>kernels [ROWSxCOLUMNS] [-t THREADS] [-n TOKENS] [TYPE...]</c>: throughput of the matrix product per weight type (by
/// default a 768 × 256 matrix times 512 tokens, llama.cpp's code path for each), in multiply-adds per second of process
/// CPU time. Large shapes (2048x2048, 5632x2048) show whether the activations stay in cache.</summary>
internal static unsafe class KernelBenchmark
{
    public static int Run(string[] args)
    {
        int rows = 768, columns = 256, threads = 1, tokens = 512;
        var rest = new List<string>();
        for (var i = 0; i < args.Length; i++)
        {
            var shape = args[i].Split('x');
            if (args[i] == "-t") threads = int.Parse(args[++i]);
            else if (args[i] == "-n") tokens = int.Parse(args[++i]);
            else if (shape.Length == 2 && int.TryParse(shape[0], out var r) && int.TryParse(shape[1], out var c)) (rows, columns) = (r, c);
            else rest.Add(args[i]);
        }
        Console.WriteLine($"{rows} x {columns} matrix, {tokens} tokens, {threads} thread(s)");
        var types = rest.Count > 0 ? rest.Select(Enum.Parse<GgmlType>).ToArray() : (GgmlType[])[
            GgmlType.F32, GgmlType.F16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_XS];
        var rng = new Random(1);
        var weights = new float[rows * columns];
        for (var i = 0; i < weights.Length; i++) weights[i] = (float)(rng.NextDouble() - 0.5);
        var activations = new float[tokens * columns];
        for (var i = 0; i < activations.Length; i++) activations[i] = (float)(rng.NextDouble() - 0.5);
        var output = new float[tokens * rows];
        var parallel = new Parallelism(threads);
        foreach (var type in types)
        {
            var bytes = new byte[GgmlTypeTraits.Of(type).RowBytes(columns) * rows];
            RowQuantizer.Quantize(type, weights, bytes, columns, default, 1);
            fixed (byte* data = bytes)
            fixed (float* x = activations)
            fixed (float* y = output)
            {
                var matrix = WeightMatrix.ForBenchmark(type, rows, columns, data);
                using var batch = new ActivationBatch();
                // Products repeated to about 2·10⁹ multiply-adds per timing, so that few tokens still measure.
                var products = (int)Math.Max(1, 2e9 / ((double)rows * columns * tokens));
                var best = double.MaxValue;
                for (var repeat = 0; repeat < 5; repeat++)
                {
                    var cpu = Process.GetCurrentProcess().TotalProcessorTime;
                    for (var p = 0; p < products; p++)
                    {
                        batch.Reset(x, tokens, columns);
                        MatMul.Multiply(matrix, batch, y, rows, parallel);
                    }
                    best = Math.Min(best, (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalSeconds / products);
                }
                Console.WriteLine($"{GgmlTypeTraits.Of(type).Name,-7} {(double)rows * columns * tokens / best / 1e9,6:F2} GMAC/s  ({best * 1000:F2} ms CPU per product)");
                GC.KeepAlive(matrix);
            }
        }
        return 0;
    }
}
