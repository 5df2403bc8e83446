namespace KQuant.Tests.Reference;

/// <summary>Where tests find the repository, ../shared and the fetched llama.cpp reference. Tests that need a missing
/// file skip with a message naming it (a user's fresh clone has no ../shared).</summary>
public static class TestPaths
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string Shared => Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));

    public static string Samples => Path.Combine(RepoRoot, "samples");

    /// <summary>The bundled text (48 KB of debdocs-val, the sample model's held-out text): fixed, unlike any document here.</summary>
    public static string SampleText => Path.Combine(Samples, "debdocs-val-excerpt.txt");

    /// <summary>Directory of the reference's shared libraries (scripts/fetch-reference.sh puts them there;
    /// KQUANT_REFERENCE_LIB overrides).</summary>
    public static string ReferenceLibDir =>
        Environment.GetEnvironmentVariable("KQUANT_REFERENCE_LIB") is { Length: > 0 } dir
            ? dir
            : Path.Combine(RepoRoot, ".cache", "reference", "bins", "package", "bins", "linux-x64");

    /// <summary>Returns the path of a file under ../shared, or skips the test naming the missing file.</summary>
    public static string RequireShared(string relative)
    {
        var path = Path.Combine(Shared, relative);
        Skip.IfNot(File.Exists(path) || Directory.Exists(path), $"needs {path} (the shared test data), which is absent here");
        return path;
    }

    /// <summary>All .gguf files under ../shared (empty when absent).</summary>
    public static IEnumerable<string> SharedGgufFiles() =>
        Directory.Exists(Shared)
            ? Directory.EnumerateFiles(Shared, "*.gguf", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            : [];

    public static string NewTempDir()
    {
        var dir = Path.Combine(Path.GetTempPath(), "kquant-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "KQuant.slnx"))) return dir.FullName;
        }
        throw new InvalidOperationException($"no KQuant.slnx above {AppContext.BaseDirectory}");
    }
}
