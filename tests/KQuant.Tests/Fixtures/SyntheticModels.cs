using KQuant.Testing;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Fixtures;

/// <summary>Synthetic models for tests, made once per process in the temp folder (see <see cref="SyntheticLlamaWriter"/>).</summary>
public static class SyntheticModels
{
    private static readonly Lock Gate = new();

    public static string Get(SyntheticLlama spec)
    {
        var dir = Path.Combine(Path.GetTempPath(), "kquant-tests", "synthetic");
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, spec.FileName);
        lock (Gate)
        {
            if (!File.Exists(path)) SyntheticLlamaWriter.Write(spec, Path.Combine(TestPaths.Samples, "debdocs-tiny-F16.gguf"), path);
        }
        return path;
    }

    /// <summary>A synthetic imatrix for <paramref name="modelPath"/> in a new temp folder, and the weights llama-quantize derives from it.</summary>
    public static (string Path, Dictionary<string, float[]> Weights) Imatrix(string modelPath, bool legacy, int seed = 7)
    {
        var path = Path.Combine(TestPaths.NewTempDir(), legacy ? "imatrix.dat" : "imatrix.gguf");
        return (path, SyntheticLlamaWriter.WriteImatrix(modelPath, path, legacy, seed));
    }
}
