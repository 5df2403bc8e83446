using System.Text.Json;
using KQuant.Conversion;
using KQuant.Gguf;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Conversion;

/// <summary>A byte-level BPE tokenizer.json (built here from llama.cpp's GPT-2 vocabulary test file) converts to the
/// same tokenizer metadata, and llama.cpp tokenizes with it exactly as with the original file.</summary>
public sealed class BpeTokenizerTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [SkippableFact]
    public void Gpt2TokenizerJsonConvertsToLlamaCppsGpt2Vocabulary()
    {
        var vocabPath = TestPaths.RequireShared("vocab/ggml-vocab-gpt-2.gguf");
        using var vocab = GgufFile.Open(vocabPath);
        var tokens = vocab.GetArray("tokenizer.ggml.tokens")!.AsStrings();
        var types = vocab.GetArray("tokenizer.ggml.token_type")!.AsSpan<int>().ToArray();
        var merges = vocab.GetArray("tokenizer.ggml.merges")!.AsStrings();

        var folder = Path.Combine(_dir, "gpt2-qwen2");
        const int dim = 64;
        HfFolderBuilder.Write(folder, HfFolderBuilder.Config("Qwen2ForCausalLM", 1, dim, 2, 2, 128, tokens.Count),
            HfFolderBuilder.LlamaTensors(1, dim, 2, 2, 128, tokens.Count, SafetensorsDtype.F16, seed: 3, biases: true));
        WriteTokenizerJson(folder, tokens, types, merges);

        var output = Path.Combine(_dir, "gpt2-qwen2-F16.gguf");
        ModelConverter.Run(new ConvertRequest(folder) { OutputPath = output });
        using (var converted = GgufFile.Open(output))
        {
            foreach (var key in new[] { "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                         "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id" })
            {
                Assert.True(converted.TryGetValue(key, out var actual), $"{key} is missing");
                Assert.True(GgufComparison.SameValue(vocab.Metadata.Single(m => m.Key == key).Value, actual), $"{key} differs: {actual}");
            }
            Assert.Equal((uint)KQuant.Recipes.LlamaFileType.MostlyF16, converted.GetUInt32("general.file_type"));
        }

        LlamaReference.Require();
        var texts = ConvertReferenceTests.TokenizerSamples();
        var expected = LlamaReference.Tokenize(vocabPath, texts);
        var actualTokens = LlamaReference.Tokenize(output, texts);
        for (var i = 0; i < texts.Count; i++) Assert.True(expected[i].SequenceEqual(actualTokens[i]), $"text {i} tokenizes differently");
        Assert.StartsWith("qwen2", LlamaReference.Load(output).Description);
    }

    [Fact]
    public void PreTokenizersAreRecognizedByTheirSplitRegex()
    {
        static JsonElement Json(string text) => JsonDocument.Parse(text).RootElement;
        Assert.Equal("gpt-2", BpePreTokenizers.Identify(Json("""{"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}}"""), "t.json"));
        const string llama3 = """{"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated"}, {"type": "ByteLevel", "use_regex": false}]}}""";
        Assert.Equal("llama-bpe", BpePreTokenizers.Identify(Json(llama3), "t.json"));
        Assert.Equal("qwen2", BpePreTokenizers.Identify(Json(llama3.Replace("\\\\p{N}{1,3}", "\\\\p{N}")), "t.json"));
        var e = Assert.Throws<InvalidDataException>(() => BpePreTokenizers.Identify(Json(llama3.Replace("{1,3}", "{1,4}")), "t.json"));
        Assert.Contains("t.json: the pre-tokenizer regex", e.Message);
        Assert.Contains("--vocab-from", e.Message);
    }

    /// <summary>tokenizer.json as Hugging Face's tokenizers library writes a GPT-2 tokenizer: the byte-level vocabulary
    /// (GGUF keeps the same byte-to-unicode strings), the merges, and the control tokens as added special tokens.</summary>
    private static void WriteTokenizerJson(string folder, IReadOnlyList<string> tokens, int[] types, IReadOnlyList<string> merges)
    {
        var added = Enumerable.Range(0, tokens.Count).Where(i => types[i] == 3)
            .Select(i => new { id = i, content = tokens[i], single_word = false, lstrip = false, rstrip = false, normalized = false, special = true }).ToList();
        var json = new
        {
            version = "1.0",
            added_tokens = added,
            normalizer = (object?)null,
            pre_tokenizer = new { type = "ByteLevel", add_prefix_space = false, trim_offsets = true, use_regex = true },
            model = new
            {
                type = "BPE",
                dropout = (object?)null,
                unk_token = (object?)null,
                vocab = Enumerable.Range(0, tokens.Count).Where(i => types[i] != 3).ToDictionary(i => tokens[i], i => i),
                merges,
            },
        };
        File.WriteAllText(Path.Combine(folder, "tokenizer.json"), JsonSerializer.Serialize(json));
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), """{"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "tokenizer_class": "GPT2Tokenizer"}""");
    }
}
