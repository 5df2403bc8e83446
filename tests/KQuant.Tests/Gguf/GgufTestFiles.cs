using KQuant.Tests.Reference;

namespace KQuant.Tests.Gguf;

/// <summary>Real GGUF files the tests read: the bundled sample (always present), ../shared and the llama.cpp bundle's
/// vocab files (present when fetched).</summary>
internal static class GgufTestFiles
{
    public static string Sample => Path.Combine(TestPaths.Samples, "debdocs-tiny-F16.gguf");

    public static string BundleModels => Path.Combine(TestPaths.RepoRoot, ".cache", "reference", "src", "llama.cpp", "models");

    /// <summary>ggml-vocab-*.gguf of the llama.cpp source bundle; skips naming the folder when it has not been fetched.</summary>
    public static IReadOnlyList<string> RequireBundleVocab()
    {
        Skip.IfNot(Directory.Exists(BundleModels), $"needs {BundleModels} (the llama.cpp source); run scripts/fetch-reference.sh --source");
        return Directory.GetFiles(BundleModels, "*.gguf").Order(StringComparer.Ordinal).ToArray();
    }

    /// <summary>Every .gguf under ../shared; skips naming the folder when it is absent.</summary>
    public static IReadOnlyList<string> RequireShared()
    {
        var files = TestPaths.SharedGgufFiles().ToArray();
        Skip.If(files.Length == 0, $"needs GGUF files under {TestPaths.Shared} (the shared test data), which is absent here");
        return files;
    }

    public static IEnumerable<string> SharedVocab() =>
        TestPaths.SharedGgufFiles().Where(f => Path.GetFileName(f).StartsWith("ggml-vocab-", StringComparison.Ordinal));
}
