using System.Collections.Concurrent;
using KQuant.Gguf;
using KQuant.Model.Tokenizers;
using KQuant.Tests.Gguf;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Model;

/// <summary>The vocabularies the tokenizer tests use, by short name: the bundled sample, the models and vocab files of
/// ../shared, and the llama.cpp bundle's ggml-vocab-*.gguf (as "bundle/NAME"). Tokenizers are built once per test run.</summary>
internal static class TokenizerTestVocabs
{
    /// <summary>The SentencePiece ("llama") vocabularies of real models and of ../shared/vocab.</summary>
    public static readonly string[] SharedSentencePiece = ["debdocs-tiny", "stories260K", "debdocs", "llama-spm", "phi-3"];

    /// <summary>Every vocabulary compared on the shared texts.</summary>
    public static readonly string[] Shared = [.. SharedSentencePiece, "gpt-2"];

    /// <summary>Bundle vocabularies KQuant supports, by tokenizer.ggml.pre: those with .inp/.out test files, and those
    /// without (aquila and gpt-neox have no tokenizer.ggml.pre, so they run the "default" pre-tokenizer).</summary>
    public static readonly string[] BundleSupported =
    [
        "llama-spm", "phi-3", "baichuan", "gpt-2", "llama-bpe", "qwen2", "qwen35", "mpt", "starcoder", "refact",
        "command-r", "falcon", "deepseek-llm", "deepseek-coder", "aquila", "gpt-neox",
    ];

    /// <summary>Bundle vocabularies of tokenizer types KQuant does not run.</summary>
    public static readonly string[] BundleUnsupported = ["bert-bge", "nomic-bert-moe", "gemma-4"];

    private static readonly ConcurrentDictionary<string, Lazy<Tokenizer>> Tokenizers = new(StringComparer.Ordinal);

    /// <summary>The file of a vocabulary name; skips the test, naming the file, when it is absent.</summary>
    public static string RequirePath(string name)
    {
        var path = name switch
        {
            "debdocs-tiny" => GgufTestFiles.Sample,
            "stories260K" => Path.Combine(TestPaths.Shared, "models", "stories260K-F16.gguf"),
            "debdocs" => Path.Combine(TestPaths.Shared, "models", "debdocs", "debdocs-llama-10m-F16.gguf"),
            _ when name.StartsWith("bundle/", StringComparison.Ordinal) => BundleVocab(name["bundle/".Length..]),
            _ => Path.Combine(TestPaths.Shared, "vocab", $"ggml-vocab-{name}.gguf"),
        };
        Skip.IfNot(File.Exists(path), $"needs {path}, which is absent here (../shared, or the llama.cpp source: scripts/fetch-reference.sh --source)");
        return path;
    }

    public static string BundleVocab(string name) => Path.Combine(GgufTestFiles.BundleModels, $"ggml-vocab-{name}.gguf");

    /// <summary>KQuant's tokenizer for a vocabulary name (skips when the file is absent).</summary>
    public static Tokenizer Load(string name)
    {
        var path = RequirePath(name);
        return Tokenizers.GetOrAdd(path, p => new Lazy<Tokenizer>(() =>
        {
            using var file = GgufFile.Open(p);
            return Tokenizer.FromGguf(file);
        })).Value;
    }

    /// <summary>KQuant's and llama.cpp's tokenizers for a vocabulary name (skips when either is missing).</summary>
    public static (Tokenizer Ours, LlamaReference.Vocab Reference) LoadBoth(string name)
    {
        var ours = Load(name);
        LlamaReference.Require();
        return (ours, LlamaReference.LoadVocab(RequirePath(name)));
    }
}
