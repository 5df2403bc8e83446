using System.Diagnostics;

namespace KQuant.Tests.Reference;

/// <summary>llama.cpp v0.5.0's command-line tools (llama-imatrix, llama-quantize, llama-perplexity), built from the npm
/// source bundle by scripts/build-reference-tools.sh for the AVX2 ("haswell") instruction set the forward pass
/// reproduces. Tests that need them skip, naming the script, when they are absent (KQUANT_REFERENCE_TOOLS overrides the
/// directory holding them).</summary>
public static class LlamaTools
{
    public static string BinDir =>
        Environment.GetEnvironmentVariable("KQUANT_REFERENCE_TOOLS") is { Length: > 0 } dir
            ? Path.Combine(dir, "bin")
            : Path.Combine(TestPaths.RepoRoot, ".cache", "reference", "build-tools", "bin");

    /// <summary>The path of <paramref name="tool"/>, or skips the test naming the script that builds it.</summary>
    public static string Require(string tool)
    {
        var path = Path.Combine(BinDir, tool);
        Skip.IfNot(File.Exists(path), $"needs {path}; run scripts/build-reference-tools.sh (about 5 minutes on 2 idle cores)");
        return path;
    }

    /// <summary>Runs a tool to completion; throws with its output when it fails.</summary>
    public static string Run(string tool, params string[] arguments)
    {
        var start = new ProcessStartInfo(Require(tool))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in arguments) start.ArgumentList.Add(a);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {tool}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        var log = stdout.Result + stderr.Result;
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{tool} {string.Join(' ', arguments)} exited with {process.ExitCode}:\n{log}");
        return log;
    }
}
