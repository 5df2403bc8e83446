using KQuant.Planning;
using KQuant.Quantization;
using KQuant.Recipes;
using KQuant.Tests.Cli;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Planning;

public class MemoryPlannerTests
{
    private static string Sample => Path.Combine(TestPaths.Samples, "debdocs-tiny-F16.gguf");

    private static QuantRecipe Recipe(string name) => QuantRecipe.TryParse(name, out var r) ? r : throw new ArgumentException(name);

    [Fact]
    public void FileSizesAreExactAndKvCacheFollowsTheShape()
    {
        var footprints = MemoryPlanner.Plan(Sample, [Recipe("Q4_K_M"), Recipe("Q8_0")], contextLength: 1000);
        var dir = TestPaths.NewTempDir();
        foreach (var f in footprints)
        {
            var output = Path.Combine(dir, f.Recipe.Name + ".gguf");
            ModelQuantizer.Run(new QuantizeRequest(Sample, output, f.Recipe));
            Assert.Equal(new FileInfo(output).Length, f.FileBytes);
            // debdocs-tiny: 2 layers, 2 KV heads of 64 for K and for V, F16 cache.
            Assert.Equal(2L * 2 * 1000 * (2 * 64 + 2 * 64), f.KvCacheBytes);
        }
    }

    [Fact]
    public void BestIsTheMostBitsThatFitBothBudgets()
    {
        var footprints = MemoryPlanner.Plan(Sample, [Recipe("Q2_K"), Recipe("Q4_K_M"), Recipe("Q8_0")], contextLength: 256);
        var q4 = footprints.Single(f => f.Recipe.Name == "Q4_K_M");
        Assert.Equal("Q8_0", MemoryPlanner.Best(footprints, null, null)!.Recipe.Name);
        Assert.Equal("Q4_K_M", MemoryPlanner.Best(footprints, q4.TotalBytes, null)!.Recipe.Name);
        Assert.Equal("Q2_K", MemoryPlanner.Best(footprints, null, q4.FileBytes - 1)!.Recipe.Name);
        Assert.Null(MemoryPlanner.Best(footprints, 1000, null));
    }

    [Theory]
    [InlineData("8G", 8L << 30)]
    [InlineData("7.5GiB", 15L << 29)]
    [InlineData("500m", 500L << 20)]
    [InlineData("1200", 1200L)]
    public void SizesParse(string text, long bytes) => Assert.Equal(bytes, MemoryPlanner.ParseSize(text));

    [Fact]
    public void CommandRecommendsAndFailsWhenNothingFits()
    {
        var ok = CliRunner.Run("plan", Sample, "--memory", "1G", "-c", "256");
        Assert.Equal(0, ok.ExitCode);
        Assert.Contains("best fit: F32", ok.Out);
        var none = CliRunner.Run("plan", Sample, "--memory", "1M");
        Assert.Equal(1, none.ExitCode);
        Assert.Contains("no recipe fits", none.Out);
        Assert.Equal(2, CliRunner.Run("plan", Sample, "--memory", "lots").ExitCode);
    }
}
