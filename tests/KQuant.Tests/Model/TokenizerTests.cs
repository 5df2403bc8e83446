using System.Text;
using KQuant.Gguf;
using KQuant.Model.Tokenizers;
using KQuant.Tests.Gguf;

namespace KQuant.Tests.Model;

/// <summary>Tokenizer behaviour that needs neither ../shared nor llama.cpp: the bundled sample's SentencePiece
/// vocabulary (these tests never skip), and the errors for tokenizers KQuant cannot run.</summary>
public sealed class TokenizerTests
{
    private const string Text = "The quick brown fox jumps over the lazy dog.\n  Indented line\twith a tab, émigré café, 日本語, 🦙!\n\n";

    private static readonly Lazy<(Tokenizer Tokenizer, GgufMetadata Metadata)> Sample = new(() =>
    {
        using var file = GgufFile.Open(GgufTestFiles.Sample);
        return (Tokenizer.FromGguf(file), new GgufMetadata(file.Metadata));
    });

    private static Tokenizer Tokenizer => Sample.Value.Tokenizer;

    [Fact]
    public void SettingsComeFromTheMetadata()
    {
        var metadata = Sample.Value.Metadata;
        Assert.Equal("llama", Tokenizer.Model);
        Assert.Null(Tokenizer.PreTokenizer);
        Assert.Equal(metadata.GetArray(TokenVocabulary.TokensKey)!.Count, Tokenizer.VocabSize);
        Assert.Equal(metadata.GetInt32("tokenizer.ggml.bos_token_id"), Tokenizer.Bos);
        Assert.Equal(metadata.GetInt32("tokenizer.ggml.eos_token_id"), Tokenizer.Eos);
        Assert.Equal(metadata.GetBool("tokenizer.ggml.add_bos_token"), Tokenizer.AddBos);
        Assert.Equal(metadata.GetBool("tokenizer.ggml.add_eos_token"), Tokenizer.AddEos);
        Assert.True(Tokenizer.AddSpacePrefix);
        Assert.Equal(GgufTestFiles.Sample, Tokenizer.SourcePath);
        Assert.Equal("<s>", Tokenizer.TokenText(Tokenizer.Bos!.Value));
        Assert.True(Tokenizer.IsEndOfGeneration(Tokenizer.Eos!.Value));
        Assert.Equal(TokenAttributes.Control, Tokenizer.GetAttributes(Tokenizer.Bos.Value));
    }

    [Fact]
    public void EmptyTextIsJustTheSpecialTokens()
    {
        Assert.Equal([Tokenizer.Bos!.Value], Tokenizer.Encode(""));
        Assert.Empty(Tokenizer.Encode("", addSpecial: false));
        Assert.Equal("", Tokenizer.Decode([]));
    }

    [Fact]
    public void TextRoundTripsThroughTokens()
    {
        var ids = Tokenizer.Encode(Text, addSpecial: false);
        Assert.All(ids, id => Assert.InRange(id, 0, Tokenizer.VocabSize - 1));
        Assert.Equal(Text, Tokenizer.Decode(ids));
        // BOS is dropped on request, and the leading space it protects stays, as llama.cpp's detokenizer has it.
        Assert.Equal(" " + Text, Tokenizer.Decode(Tokenizer.Encode(Text), removeSpecial: true));
        Assert.Equal("<s> " + Text, Tokenizer.Decode(Tokenizer.Encode(Text), renderSpecial: true));
    }

    [Fact]
    public void StringAndUtf8EncodingAgree()
    {
        Assert.Equal(Tokenizer.EncodeUtf8(Encoding.UTF8.GetBytes(Text)), Tokenizer.Encode(Text));
        // An unpaired surrogate is what UTF-8 encoding makes of it: U+FFFD.
        Assert.Equal(Tokenizer.Encode("a\uFFFDb\uFFFD"), Tokenizer.Encode("a\uD800b\uDC00"));
    }

    [Fact]
    public void CharactersWithoutAPieceFallBackToTheirBytes()
    {
        var ids = Tokenizer.Encode("🦙", addSpecial: false);
        var bytes = ids.Where(id => Tokenizer.GetAttributes(id) == TokenAttributes.Byte).SelectMany(id => Tokenizer.TokenPiece(id)).ToArray();
        Assert.Equal(Encoding.UTF8.GetBytes("🦙"), bytes);
        Assert.Equal("🦙", Tokenizer.Decode(ids));
    }

    [Fact]
    public void ControlTokenTextIsATokenOnlyWhenSpecialTokensAreParsed()
    {
        var bos = Tokenizer.Bos!.Value;
        var parsed = Tokenizer.Encode("<s>Hi", addSpecial: false, parseSpecial: true);
        Assert.Equal(bos, parsed[0]);
        Assert.Equal(Tokenizer.Encode("Hi", addSpecial: false), parsed[1..]); // text after a special token gets a space prefix too
        var plain = Tokenizer.Encode("<s>Hi", addSpecial: false, parseSpecial: false);
        Assert.DoesNotContain(bos, plain);
        Assert.Equal("<s>Hi", Tokenizer.Decode(plain));
        // Control tokens are not rendered by default; the space prefix stays, since only the first token loses it.
        Assert.Equal(" Hi", Tokenizer.Decode(parsed));
    }

    [Fact]
    public void PiecesRestoreSpaces()
    {
        var word = Tokenizer.Encode(" the", addSpecial: false).Single(id => Tokenizer.TokenText(id).StartsWith('▁'));
        Assert.Equal((byte)' ', Tokenizer.TokenPiece(word)[0]);
        Assert.Empty(Tokenizer.TokenPiece(Tokenizer.Bos!.Value, renderSpecial: false));
        Assert.Equal("<s>"u8.ToArray(), Tokenizer.TokenPiece(Tokenizer.Bos.Value, renderSpecial: true));
    }

    [Fact]
    public void InvalidTokenIdsAreRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.Decode([Tokenizer.VocabSize]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.TokenText(-1));
    }

    [Fact]
    public void TheSampleTokenizesAMegabyteQuickly()
    {
        var text = string.Concat(Enumerable.Repeat(Text, 1_000_000 / Text.Length));
        Tokenizer.Encode(text[..10_000]);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var ids = Tokenizer.Encode(text);
        Assert.True(watch.Elapsed.TotalSeconds < 2, $"{text.Length:N0} characters took {watch.Elapsed.TotalSeconds:F2} s");
        Assert.Equal(text, Tokenizer.Decode(ids, removeSpecial: true)[1..]);
    }

    [Theory]
    [InlineData("bert")]
    [InlineData("t5")]
    [InlineData("rwkv")]
    [InlineData(null)]
    public void AnUnsupportedModelIsNamedWithTheFileAndTheSupportedOnes(string? model)
    {
        var metadata = SampleMetadataWith(Tokenizer.ModelKey, model);
        var e = Assert.Throws<TokenizerNotSupportedException>(() => Tokenizer.FromGguf(metadata, "/models/x.gguf"));
        Assert.Equal("/models/x.gguf", e.Path);
        Assert.Equal(model, e.Value);
        Assert.Equal(["llama", "gpt2", "gemma4"], e.Supported);
        Assert.Equal($"/models/x.gguf: tokenizer.ggml.model = {(model is null ? "(absent)" : $"'{model}'")} is not supported; supported: llama, gpt2, gemma4", e.Message);
    }

    [Fact]
    public void AnUnsupportedPreTokenizerIsNamedWithTheFileAndTheSupportedOnes()
    {
        var metadata = SampleMetadataWith(Tokenizer.ModelKey, "gpt2");
        metadata.Set(PreTokenizerCatalog.PreKey, GgufValue.FromString("tekken"));
        var e = Assert.Throws<TokenizerNotSupportedException>(() => Tokenizer.FromGguf(metadata, "/models/y.gguf"));
        Assert.Equal(PreTokenizerCatalog.PreKey, e.Key);
        Assert.Equal("tekken", e.Value);
        Assert.StartsWith("/models/y.gguf: tokenizer.ggml.pre = 'tekken' is not supported; supported: ", e.Message);
        Assert.Contains("llama-bpe", e.Supported);
        Assert.Contains("qwen2", e.Supported);
        Assert.Contains("default", e.Supported);
    }

    [Fact]
    public void MalformedTokenizerMetadataIsNamed()
    {
        var noTokens = SampleMetadataWith(TokenVocabulary.TokensKey, null);
        Assert.Contains("/m.gguf: the tokenizer has no tokenizer.ggml.tokens", Assert.Throws<InvalidDataException>(() => Tokenizer.FromGguf(noTokens, "/m.gguf")).Message);

        var fewScores = SampleMetadataWith(TokenVocabulary.ScoresKey, null);
        fewScores.Set(TokenVocabulary.ScoresKey, GgufValue.FromArray<float>([0f, 1f]));
        Assert.Contains("tokenizer.ggml.scores has 2 entries", Assert.Throws<InvalidDataException>(() => Tokenizer.FromGguf(fewScores, "/m.gguf")).Message);

        var noMerges = SampleMetadataWith(Tokenizer.ModelKey, "gpt2");
        Assert.Contains("no tokenizer.ggml.merges", Assert.Throws<InvalidDataException>(() => Tokenizer.FromGguf(noMerges, "/m.gguf")).Message);

        var duplicate = SampleMetadataWith(TokenVocabulary.TokensKey, null);
        var tokens = Sample.Value.Metadata.GetArray(TokenVocabulary.TokensKey)!.AsStrings().ToArray();
        tokens[5] = tokens[4];
        duplicate.Set(TokenVocabulary.TokensKey, GgufValue.FromStrings(tokens));
        Assert.Contains("twice (ids 4 and 5)", Assert.Throws<InvalidDataException>(() => Tokenizer.FromGguf(duplicate, "/m.gguf")).Message);
    }

    /// <summary>The sample's metadata with <paramref name="key"/> set to a string, or removed when null.</summary>
    private static GgufMetadata SampleMetadataWith(string key, string? value)
    {
        var metadata = new GgufMetadata(Sample.Value.Metadata);
        if (value is null) metadata.Remove(key);
        else metadata.Set(key, GgufValue.FromString(value));
        return metadata;
    }
}
