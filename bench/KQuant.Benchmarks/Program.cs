using KQuant.Benchmarks;

// Benchmarks by name; each takes its own options.
var benchmarks = new Dictionary<string, Func<string[], int>>(StringComparer.OrdinalIgnoreCase)
{
    ["quantize-codecs"] = QuantizeCodecsBenchmark.Run,
    ["quantize-vs-llama"] = QuantizeVsLlamaBenchmark.Run,
    ["row-parallel"] = RowParallelBenchmark.Run,
    ["rounding"] = RoundingBenchmark.Run,
    ["rounding-kld"] = RoundingKldBenchmark.Run,
    ["rounding-time"] = RoundingTimeBenchmark.Run,
    ["rounding-ceiling"] = RoundingCeilingBenchmark.Run,
    ["perplexity"] = PerplexityBenchmark.Run,
    ["perplexity-vs-llama"] = PerplexityVsLlamaBenchmark.Run,
    ["kernels"] = KernelBenchmark.Run,
};

if (args.Length == 0 || !benchmarks.TryGetValue(args[0], out var benchmark))
{
    Console.Error.WriteLine($"usage: KQuant.Benchmarks <{string.Join('|', benchmarks.Keys)}> [options]");
    return 2;
}
return benchmark(args[1..]);
