using System.Diagnostics;
using System.Text;
using KQuant.Model.Tokenizers;
using KQuant.Tests.Reference;
using Xunit.Abstractions;

namespace KQuant.Tests.Model;

/// <summary>KQuant's tokenizers against llama_tokenize on the perplexity and calibration texts of ../shared: whole
/// files, and random slices that start and end anywhere (mid-word, between the halves of a surrogate pair, inside a
/// UTF-8 sequence).</summary>
public sealed class SharedTextTests(ITestOutputHelper output)
{
    private const int SlicesPerText = 60;

    public static readonly string[] Texts = ["tinystories-valid-excerpt.txt", "debdocs-val.txt", "calibration-groups-merged.txt", "wiki.test.raw"];

    public static TheoryData<string, string> SharedVocabsAndTexts()
    {
        var data = new TheoryData<string, string>();
        foreach (var vocab in TokenizerTestVocabs.Shared)
        {
            foreach (var text in Texts) data.Add(vocab, text);
        }
        return data;
    }

    public static TheoryData<string> SliceVocabs() =>
        new(TokenizerTestVocabs.Shared.Concat(TokenizerTestVocabs.BundleSupported.Select(n => $"bundle/{n}")));

    public static TheoryData<string> SentencePieceVocabs() => new(TokenizerTestVocabs.SharedSentencePiece);

    [SkippableTheory]
    [Trait("Category", "Long")]
    [MemberData(nameof(SharedVocabsAndTexts))]
    public void WholeFilesEncodeAsLlamaCpp(string vocab, string textFile)
    {
        var (ours, llama) = TokenizerTestVocabs.LoadBoth(vocab);
        var text = ReadText(textFile);
        var watch = Stopwatch.StartNew();
        var ids = ours.EncodeUtf8(text, addSpecial: true, parseSpecial: false);
        var elapsed = watch.Elapsed;
        watch.Restart();
        var expected = llama.Tokenize(text, addSpecial: true, parseSpecial: false);
        output.WriteLine($"{vocab}, {textFile}: {text.Length:N0} bytes, {ids.Length:N0} tokens in {elapsed.TotalMilliseconds:F0} ms "
            + $"(llama.cpp {watch.Elapsed.TotalMilliseconds:F0} ms)");
        Assert.True(ids.SequenceEqual(expected), TokenizerComparison.Describe(textFile, true, false, expected, ids));
    }

    [SkippableTheory]
    [MemberData(nameof(SliceVocabs))]
    public void RandomSlicesEncodeAsLlamaCpp(string vocab)
    {
        var (ours, llama) = TokenizerTestVocabs.LoadBoth(vocab);
        var random = new Random(vocab.GetHashCode(StringComparison.Ordinal) & 0x7FFF);
        var failures = new List<string>();
        var compared = 0;
        foreach (var textFile in Texts)
        {
            var bytes = ReadText(textFile);
            var text = Encoding.UTF8.GetString(bytes);
            // Offsets of UTF-8 continuation bytes: every other byte slice starts at one, inside a character.
            var insideCharacters = Enumerable.Range(0, bytes.Length).Where(i => (bytes[i] & 0xC0) == 0x80).ToArray();
            for (var i = 0; i < SlicesPerText; i++)
            {
                var (addSpecial, parseSpecial) = TokenizerReferenceTests.FlagCombinations[random.Next(4)];
                // A slice of the string, which may split a surrogate pair ...
                var start = random.Next(text.Length);
                var slice = text.Substring(start, Math.Min(random.Next(1, 2000), text.Length - start));
                var ids = ours.Encode(slice, addSpecial, parseSpecial);
                var expected = llama.Tokenize(Encoding.UTF8.GetBytes(slice), addSpecial, parseSpecial);
                if (!ids.SequenceEqual(expected)) failures.Add(TokenizerComparison.Describe(slice, addSpecial, parseSpecial, expected, ids));
                // ... and a slice of the UTF-8 bytes, which may start or end inside a character.
                var byteStart = i % 2 == 1 && insideCharacters.Length > 0 ? insideCharacters[random.Next(insideCharacters.Length)] : random.Next(bytes.Length);
                var byteSlice = bytes.AsSpan(byteStart, Math.Min(random.Next(1, 2000), bytes.Length - byteStart));
                var byteIds = ours.EncodeUtf8(byteSlice, addSpecial, parseSpecial);
                var byteExpected = llama.Tokenize(byteSlice, addSpecial, parseSpecial);
                if (!byteIds.SequenceEqual(byteExpected))
                    failures.Add(TokenizerComparison.Describe($"bytes {byteStart}.. of {textFile}", addSpecial, parseSpecial, byteExpected, byteIds));
                compared += 2;
            }
        }
        output.WriteLine($"{vocab}: {compared} slices compared");
        Assert.True(failures.Count == 0, $"{vocab}: {failures.Count} of {compared} slices differ:\n{string.Join("\n", failures.Take(10))}");
    }

    /// <summary>Decoding what was encoded gives the text back, as llama.cpp's detokenizer does: the leading space the
    /// SentencePiece tokenizer adds is dropped again.</summary>
    [SkippableTheory]
    [MemberData(nameof(SentencePieceVocabs))]
    public void SentencePieceTextsRoundTrip(string vocab)
    {
        var tokenizer = TokenizerTestVocabs.Load(vocab);
        var reference = LlamaReference.Available ? LlamaReference.LoadVocab(TokenizerTestVocabs.RequirePath(vocab)) : null;
        foreach (var textFile in Texts)
        {
            var text = Encoding.UTF8.GetString(ReadText(textFile));
            var ids = tokenizer.Encode(text, addSpecial: false);
            Assert.True(text == tokenizer.Decode(ids), $"{vocab}: {textFile} does not round-trip");
            if (reference is not null) Assert.Equal(reference.Detokenize(ids, removeSpecial: false, unparseSpecial: false), tokenizer.DecodeBytes(ids));
            // With BOS, removing it keeps the leading space, as in llama.cpp.
            Assert.Equal(" " + text, tokenizer.Decode(tokenizer.Encode(text, addSpecial: true), removeSpecial: true));
        }
    }

    /// <summary>Perplexity tokenizes a whole file at once: 480 KB must take well under a second, and 1.3 MB scale
    /// linearly (no quadratic merging).</summary>
    [SkippableTheory]
    [InlineData("debdocs")]
    [InlineData("llama-spm")]
    [InlineData("gpt-2")]
    [InlineData("bundle/llama-bpe")]
    public void LongTextsTokenizeQuickly(string vocab)
    {
        var tokenizer = TokenizerTestVocabs.Load(vocab);
        foreach (var (textFile, limit) in new[] { ("debdocs-val.txt", 1.0), ("wiki.test.raw", 3.0) })
        {
            var text = ReadText(textFile);
            tokenizer.EncodeUtf8(text.AsSpan(0, 10_000)); // warm up the JIT
            var best = TimeSpan.MaxValue;
            for (var run = 0; run < 2; run++)
            {
                var watch = Stopwatch.StartNew();
                tokenizer.EncodeUtf8(text);
                best = watch.Elapsed < best ? watch.Elapsed : best;
            }
            output.WriteLine($"{vocab}, {textFile} ({text.Length:N0} bytes): {best.TotalMilliseconds:F0} ms");
            Assert.True(best.TotalSeconds < limit, $"{vocab}: {textFile} took {best.TotalSeconds:F2} s (limit {limit} s)");
        }
    }

    private static byte[] ReadText(string name) => File.ReadAllBytes(TestPaths.RequireShared(Path.Combine("text", name)));
}
