using System.CommandLine;

namespace KQuant.Cli;

/// <summary>Builds the command tree. Commands are thin: they map options onto library calls.</summary>
public static class KQuantApp
{
    public static RootCommand BuildRoot()
    {
        var root = new RootCommand("KQuant: llama.cpp-compatible GGUF quantization, and what it costs in quality.");
        return root;
    }

    public static Task<int> RunAsync(string[] args) => BuildRoot().Parse(args).InvokeAsync();
}
