using KQuant.Benchmarks;

return args.FirstOrDefault() switch
{
    "perplexity" => PerplexityBenchmark.Run(args[1..]),
    "kernels" => KernelBenchmark.Run(args[1..]),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("""
        usage: KQuant.Benchmarks perplexity [-m MODEL]... [-f TEXT] [-c 512] [--chunks 16] [-t 1] [--repeats 2]
                                            [--llama-cpu haswell|best] [-o bench/results/perplexity.json]
          MODEL: a GGUF path, or debdocs-F16 / debdocs-<TYPE> (the shared debdocs-llama-10m, quantized by KQuant).
          Defaults: debdocs-F16 and debdocs-Q4_K_M on ../shared/text/debdocs-val.txt.
        """);
    return 2;
}
