using KQuant.Conversion;
using KQuant.Gguf;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Conversion;

/// <summary>The shared Hugging Face folders convert to exactly the tensors (names, types, shapes, bytes) of their
/// reference GGUF files, which other tools made from the same weights; the metadata differs only where
/// convert_hf_to_gguf.py's output differs from those tools', for the reasons given below, none of which changes what
/// llama.cpp does with the file; and llama.cpp loads every converted file.</summary>
public sealed class ConvertReferenceTests : IDisposable
{
    // Written by convert_hf_to_gguf.py into every file; the reference writers did not write them.
    private static readonly string[] ConverterGeneralKeys = ["general.quantization_version", "general.size_label", "general.type"];

    // head_dim (config.json's, or transformers' default hidden_size / heads): equal to llama.cpp's own default, n_embd / n_head.
    private static readonly string[] HeadLengthKeys = ["llama.attention.key_length", "llama.attention.value_length"];

    // Absent from a folder with tokenizer.model but no tokenizer.json / add_prefix_space: the converter then writes no
    // unknown-token id (it reads special ids from tokenizer.json's added tokens and config.json's *_token_id) and no
    // add_space_prefix (it reads that from tokenizer_config.json). llama.cpp's SentencePiece defaults are unk 0 and add a
    // space prefix, the values the reference files state: tokenization is the same (tested below).
    private static readonly string[] SentencePieceDefaults = ["tokenizer.ggml.add_space_prefix", "tokenizer.ggml.unknown_token_id"];

    private readonly string _dir = TestPaths.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public sealed record Case(string Folder, string Reference, ConvertOutputType Type, string? VocabFrom, string[] Missing, string[] Added)
    {
        public override string ToString() => $"{Reference} ({Type})";
    }

    public static TheoryData<Case> Cases => new()
    {
        // general.alignment: the reference states the default (32) explicitly; gguf-py writes it only when not 32.
        new("models/stories260K-hf", "models/stories260K-F32.gguf", ConvertOutputType.F32, "models/stories260K-F32.gguf",
            ["general.alignment"], [.. ConverterGeneralKeys, .. HeadLengthKeys]),
        new("models/debdocs/hf", "models/debdocs/debdocs-llama-10m-F32.gguf", ConvertOutputType.F32, null,
            SentencePieceDefaults, [.. ConverterGeneralKeys, .. HeadLengthKeys]),
        new("models/debdocs/hf", "models/debdocs/debdocs-llama-10m-F16.gguf", ConvertOutputType.F16, null,
            SentencePieceDefaults, [.. ConverterGeneralKeys, .. HeadLengthKeys]),
        // debdocs-tiny's files came from gguf-py (so they have the general keys) with a hand-written description.
        new("models/debdocs-tiny/hf", "models/debdocs-tiny/debdocs-tiny-F32.gguf", ConvertOutputType.F32, null,
            ["general.description", .. SentencePieceDefaults], HeadLengthKeys),
        new("models/debdocs-tiny/hf", "models/debdocs-tiny/debdocs-tiny-F16.gguf", ConvertOutputType.F16, null,
            ["general.description", .. SentencePieceDefaults], HeadLengthKeys),
    };

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void ConvertsToTheReferenceTensorsAndLoadsInLlama(Case c)
    {
        var reference = TestPaths.RequireShared(c.Reference);
        var converted = Convert(c.Folder, c.Type, c.VocabFrom);
        GgufComparison.AssertSameTensors(reference, converted);

        var (changed, missing, added) = GgufComparison.MetadataDifferences(reference, converted);
        // general.name: the converter names a model after config.json's _name_or_path or, as here, the folder ("hf" → "Hf").
        Assert.Equal(["general.name"], changed);
        Assert.Equal(c.Missing.Order(StringComparer.Ordinal), missing);
        Assert.Equal(c.Added.Order(StringComparer.Ordinal), added);
        using (var file = GgufFile.Open(converted))
        {
            var headSize = file.GetUInt32("llama.embedding_length")!.Value / file.GetUInt32("llama.attention.head_count")!.Value;
            Assert.Equal(headSize, file.GetUInt32("llama.attention.key_length"));
            Assert.Equal(headSize, file.GetUInt32("llama.attention.value_length"));
            Assert.Equal((uint)HuggingFaceModelSource.FileTypeOf(c.Type), file.GetUInt32("general.file_type"));
        }

        LlamaReference.Require();
        using var expected = GgufFile.Open(reference);
        Assert.Equal((ulong)expected.Tensors.Sum(t => t.ElementCount), LlamaReference.Load(converted).ParameterCount);
    }

    /// <summary>The tokenizer metadata of the debdocs conversions lacks two keys the references state (see
    /// <see cref="SentencePieceDefaults"/>); llama.cpp must tokenize the shared texts identically with both.</summary>
    [SkippableTheory]
    [InlineData("models/debdocs/hf", "models/debdocs/debdocs-llama-10m-F32.gguf")]
    [InlineData("models/debdocs-tiny/hf", "models/debdocs-tiny/debdocs-tiny-F32.gguf")]
    public void TokenizesLikeTheReference(string folder, string reference)
    {
        var referencePath = TestPaths.RequireShared(reference);
        var texts = TokenizerSamples();
        LlamaReference.Require();
        var converted = Convert(folder, ConvertOutputType.F16, null);
        var expected = LlamaReference.Tokenize(referencePath, texts);
        var actual = LlamaReference.Tokenize(converted, texts);
        for (var i = 0; i < texts.Count; i++)
        {
            Assert.True(expected[i].SequenceEqual(actual[i]), $"text {i} ({texts[i][..Math.Min(40, texts[i].Length)]}…): {actual[i].Length} tokens, expected {expected[i].Length}");
        }
        Assert.True(expected.Sum(t => t.Length) > 100_000, "the samples should exercise the tokenizer at length");
    }

    /// <summary>The shared texts in pieces of a few KB, plus edge cases: leading and repeated spaces, newlines, bytes
    /// outside the vocabulary (byte fallback), text that looks like special tokens.</summary>
    internal static List<string> TokenizerSamples()
    {
        var texts = new List<string> { "", " ", "  leading spaces", "Hello world", "tabs\tand\nnewlines\n\n", "<s> not a control token </s>", "emoji 🦙🚀 and ünïcödé, 中文, кириллица" };
        foreach (var name in new[] { "text/debdocs-val.txt", "text/tinystories-valid-excerpt.txt", "text/wiki.test.raw" })
        {
            var path = TestPaths.RequireShared(name);
            var text = File.ReadAllText(path);
            for (var start = 0; start < Math.Min(text.Length, 200_000); start += 4096) texts.Add(text.Substring(start, Math.Min(4096, text.Length - start)));
        }
        return texts;
    }

    private string Convert(string folder, ConvertOutputType type, string? vocabFrom)
    {
        var path = Path.Combine(_dir, $"{Path.GetFileName(Path.GetDirectoryName(folder + "/"))}-{type}-{Guid.NewGuid():N}.gguf");
        ModelConverter.Run(new ConvertRequest(TestPaths.RequireShared(folder))
        {
            OutputPath = path,
            OutputType = type,
            VocabularyFrom = vocabFrom is null ? null : TestPaths.RequireShared(vocabFrom),
        });
        return path;
    }
}
