namespace KQuant.Tests.Quants;

/// <summary>Seeded row generators for codec tests: the distributions the codecs issue names.</summary>
public static class TestRows
{
    /// <summary>Every case name <see cref="Make"/> knows.</summary>
    public static readonly string[] Cases =
        ["gaussian", "student-t3", "outliers", "zeros", "constant", "tiny", "subnormal", "huge", "cosine"];

    /// <summary>A seed from a case name and a number that is the same in every run (HashCode.Combine is randomised per
    /// process, so rows seeded by it differ from run to run).</summary>
    public static int Seed(string kind, int number)
    {
        var hash = 2166136261u;
        foreach (var c in kind) hash = (hash ^ c) * 16777619u;
        return (int)((hash ^ (uint)number) * 16777619u & 0x7fffffff);
    }

    /// <summary><paramref name="rows"/> rows of <paramref name="rowLength"/> floats drawn from the named case.</summary>
    public static float[] Make(string kind, int rows, int rowLength, int seed)
    {
        var rng = new Random(seed);
        var data = new float[rows * rowLength];
        for (var i = 0; i < data.Length; i++)
        {
            data[i] = kind switch
            {
                "gaussian" => (float)Gaussian(rng),
                "student-t3" => (float)StudentT(rng, 3),
                "outliers" => (float)(Gaussian(rng) * (rng.NextDouble() < 0.01 ? 100 * (rng.Next(2) * 2 - 1) : 1)),
                "zeros" => 0f,
                "constant" => 0.37f + (i / rowLength) * 0.11f,
                "tiny" => (float)(Gaussian(rng) * 1e-30),
                "subnormal" => (float)(Gaussian(rng) * 1e-40),
                "huge" => (float)(Gaussian(rng) * 1e30),
                // ggml's test-quantize-fns input; the phase kept small, as a float argument near 2³¹ is the same for runs of ~100 i.
                "cosine" => 0.1f + 2 * MathF.Cos(i + seed % 4096),
                _ => throw new ArgumentException($"unknown case {kind}"),
            };
        }
        return data;
    }

    /// <summary>An importance vector like an imatrix's: positive, spread over several orders of magnitude, some zeros.</summary>
    public static float[] Importance(int rowLength, int seed)
    {
        var rng = new Random(seed ^ 0x5eed);
        var w = new float[rowLength];
        for (var i = 0; i < w.Length; i++)
        {
            var g = Gaussian(rng);
            w[i] = rng.NextDouble() < 0.02 ? 0f : (float)Math.Exp(1.5 * g) * 0.01f;
        }
        return w;
    }

    public static double Gaussian(Random rng)
    {
        var u1 = 1.0 - rng.NextDouble();
        var u2 = rng.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    private static double StudentT(Random rng, int nu)
    {
        var chi2 = 0.0;
        for (var k = 0; k < nu; k++) { var g = Gaussian(rng); chi2 += g * g; }
        return Gaussian(rng) / Math.Sqrt(chi2 / nu);
    }
}
