using System.Text.Json;
using KQuant.Cli;
using KQuant.Gguf;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Cli;

public class InspectCommandTests
{
    private static string Sample => Path.Combine(TestPaths.Samples, "debdocs-tiny-F16.gguf");

    [Fact]
    public void TablesListEveryTensorAndTheTotals()
    {
        var r = CliRunner.Run("inspect", Sample, "--tensors");
        Assert.Equal(ExitCodes.Success, r.ExitCode);
        using var gguf = GgufFile.Open(Sample);
        foreach (var t in gguf.Tensors) Assert.Contains(t.Name, r.Out);
        Assert.Contains("2,622,720", r.Out); // parameters of debdocs-tiny (its README)
        Assert.Contains("\"<unk>\", \"<s>\", \"</s>\"", r.Out); // a long array summarized by its first items
        Assert.Contains("2040 more", r.Out);
    }

    [Fact]
    public void JsonNamesEveryTensorWithShapeTypeAndBytes()
    {
        var r = CliRunner.Run("inspect", Sample, "--json");
        Assert.Equal(ExitCodes.Success, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Out);
        using var gguf = GgufFile.Open(Sample);
        var tensors = doc.RootElement.GetProperty("tensors").EnumerateArray().ToList();
        Assert.Equal(gguf.Tensors.Select(t => t.Name), tensors.Select(t => t.GetProperty("name").GetString()));
        var embd = tensors.Single(t => t.GetProperty("name").GetString() == "token_embd.weight");
        Assert.Equal("F16", embd.GetProperty("type").GetString());
        Assert.Equal([256L, 2048L], embd.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()));
        Assert.Equal(256 * 2048 * 2, embd.GetProperty("bytes").GetInt64());
        var tokens = doc.RootElement.GetProperty("metadata").GetProperty("tokenizer.ggml.tokens");
        Assert.Equal(2048, tokens.GetProperty("length").GetInt32());
        Assert.Equal(2_622_720, doc.RootElement.GetProperty("totals").GetProperty("parameters").GetInt64());
    }

    [SkippableFact]
    public void EverySharedModelAndVocabInspects()
    {
        var files = TestPaths.SharedGgufFiles().ToList();
        Skip.If(files.Count == 0, $"needs the GGUF files under {TestPaths.Shared}, which is absent here");
        foreach (var file in files)
        {
            var r = CliRunner.Run("inspect", file, "--json");
            Assert.True(r.ExitCode == ExitCodes.Success, $"{file}: {r.Error}");
            using var doc = JsonDocument.Parse(r.Out);
            using var gguf = GgufFile.Open(file);
            Assert.Equal(gguf.Tensors.Count, doc.RootElement.GetProperty("tensors").GetArrayLength());
        }
    }

    [Fact]
    public void MalformedFileExitsWithOneLineAndNoStackTrace()
    {
        var dir = TestPaths.NewTempDir();
        var bad = Path.Combine(dir, "truncated.gguf");
        File.WriteAllBytes(bad, File.ReadAllBytes(Sample)[..1000]);
        var r = CliRunner.Run("inspect", bad);
        Assert.Equal(ExitCodes.BadInput, r.ExitCode);
        var lines = r.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.Contains(bad, lines[0]);
        Assert.DoesNotContain(" at ", r.Error.Replace("at byte", ""));
    }

    [Fact]
    public void MissingFileExitsWithBadInput()
    {
        var r = CliRunner.Run("inspect", "/nonexistent/model.gguf");
        Assert.Equal(ExitCodes.BadInput, r.ExitCode);
        Assert.Contains("/nonexistent/model.gguf", r.Error);
    }
}
