using System.Text;
using KQuant.Gguf;
using KQuant.Model.Tokenizers;
using KQuant.Tests.Gguf;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Model;

/// <summary>Vocabularies made for a purpose, written as GGUF files that both llama.cpp and KQuant load: every
/// tokenizer.ggml.pre value KQuant accepts (on a small GPT-2 subset, without BOS/EOS ids, so the per-name defaults
/// show), and a SentencePiece vocabulary whose pieces cross word boundaries.</summary>
public sealed class SyntheticVocabTests : IDisposable
{
    private const int KeptGpt2Tokens = 3000;

    private readonly string _dir = TestPaths.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string> PreTokenizerNames() => new(PreTokenizerCatalog.Names.Append(""));

    [SkippableTheory]
    [MemberData(nameof(PreTokenizerNames))]
    public void EveryPreTokenizerNameBehavesAsInLlamaCpp(string pre)
    {
        LlamaReference.Require();
        var path = Path.Combine(_dir, $"gpt2-subset-{(pre.Length == 0 ? "none" : pre)}.gguf");
        using (var gpt2 = GgufFile.Open(TokenizerTestVocabs.RequirePath("gpt-2"))) WriteGpt2Subset(gpt2, pre, path);
        var ours = LoadTokenizer(path);
        var llama = LlamaReference.LoadVocab(path);

        Assert.Equal(pre.Length == 0 ? "default" : pre, ours.PreTokenizer);
        Assert.Equal(llama.Bos, ours.Bos ?? -1);
        Assert.Equal(llama.Eos, ours.Eos ?? -1);
        Assert.Equal(llama.AddBos, ours.AddBos);
        CompareOn(ours, llama, TokenizerReferenceTests.EdgeCases.Concat(SampleLines()));
    }

    [SkippableFact]
    public void PiecesAcrossWordsAreMergedOverTheWholeTextAsInLlamaCpp()
    {
        LlamaReference.Require();
        var path = Path.Combine(_dir, "spm-inner-spaces.gguf");
        using (var spm = GgufFile.Open(TokenizerTestVocabs.RequirePath("llama-spm")))
        {
            // Replace the last pieces with ones that hold '▁' after other characters, scored to win their merges.
            var metadata = new GgufMetadata(spm.Metadata);
            var tokens = spm.GetArray(TokenVocabulary.TokensKey)!.AsStrings().ToArray();
            var scores = spm.GetArray(TokenVocabulary.ScoresKey)!.AsSpan<float>().ToArray();
            string[] inner = ["e▁t", "s▁a", "▁of▁the", ".▁The", "d▁", ",▁and▁", "n▁th", "y▁▁"];
            for (var i = 0; i < inner.Length; i++)
            {
                tokens[^(i + 1)] = inner[i];
                scores[^(i + 1)] = 0;
            }
            metadata.Set(TokenVocabulary.TokensKey, GgufValue.FromStrings(tokens));
            metadata.Set(TokenVocabulary.ScoresKey, GgufValue.FromArray<float>(scores));
            Write(metadata, path);
        }
        var ours = LoadTokenizer(path);
        Assert.False(((SentencePieceTokenizer)ours).MergesWordByWord);
        CompareOn(ours, LlamaReference.LoadVocab(path), TokenizerReferenceTests.EdgeCases.Concat(SampleLines()));
    }

    [Fact]
    public void TheSampleIsMergedWordByWord()
    {
        using var file = GgufFile.Open(GgufTestFiles.Sample);
        Assert.True(((SentencePieceTokenizer)Tokenizer.FromGguf(file)).MergesWordByWord);
    }

    /// <summary>The first tokens of GPT-2, its end-of-text token, and the merges among them; no BOS/EOS ids.</summary>
    private static void WriteGpt2Subset(GgufFile gpt2, string pre, string path)
    {
        var tokens = gpt2.GetArray(TokenVocabulary.TokensKey)!.AsStrings();
        var kept = tokens.Take(KeptGpt2Tokens).Append("<|endoftext|>").ToArray();
        var keptSet = kept.ToHashSet(StringComparer.Ordinal);
        var merges = gpt2.GetArray(BpeMergeTable.MergesKey)!.AsStrings()
            .Where(m => m.Split(' ') is [var l, var r] && keptSet.Contains(l) && keptSet.Contains(r) && keptSet.Contains(l + r));
        var types = Enumerable.Repeat(1, kept.Length - 1).Append(3).ToArray();

        var metadata = new GgufMetadata();
        foreach (var entry in gpt2.Metadata.Where(e => !e.Key.StartsWith("tokenizer.", StringComparison.Ordinal))) metadata.Add(entry.Key, entry.Value);
        metadata.Add(Tokenizer.ModelKey, GgufValue.FromString("gpt2"));
        if (pre.Length > 0) metadata.Add(PreTokenizerCatalog.PreKey, GgufValue.FromString(pre));
        metadata.Add(TokenVocabulary.TokensKey, GgufValue.FromStrings(kept));
        metadata.Add(TokenVocabulary.TokenTypesKey, GgufValue.FromArray<int>(types));
        metadata.Add(BpeMergeTable.MergesKey, GgufValue.FromStrings(merges));
        Write(metadata, path);
    }

    private static void Write(GgufMetadata metadata, string path)
    {
        using var writer = new GgufWriter(path, metadata, []);
        writer.Commit();
    }

    private static Tokenizer LoadTokenizer(string path)
    {
        using var file = GgufFile.Open(path);
        return Tokenizer.FromGguf(file);
    }

    /// <summary>Lines of the shared texts, when present.</summary>
    private static IEnumerable<string> SampleLines()
    {
        foreach (var name in SharedTextTests.Texts)
        {
            var path = Path.Combine(TestPaths.Shared, "text", name);
            if (!File.Exists(path)) continue;
            var lines = File.ReadLines(path).Where(l => l.Length > 0).Take(400).ToArray();
            for (var i = 0; i + 4 <= lines.Length; i += 20) yield return string.Join("\n", lines[i..(i + 4)]);
        }
    }

    private static void CompareOn(Tokenizer ours, LlamaReference.Vocab llama, IEnumerable<string> texts)
    {
        var failures = new List<string>();
        var compared = 0;
        foreach (var text in texts)
        {
            foreach (var (addSpecial, parseSpecial) in TokenizerReferenceTests.FlagCombinations)
            {
                var ids = ours.Encode(text, addSpecial, parseSpecial);
                var expected = llama.Tokenize(Encoding.UTF8.GetBytes(text), addSpecial, parseSpecial);
                compared++;
                if (!ids.SequenceEqual(expected)) failures.Add(TokenizerComparison.Describe(text, addSpecial, parseSpecial, expected, ids));
                else failures.AddRange(TokenizerComparison.DecodeDifferences(ours, llama, ids, text));
            }
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of {compared} differ:\n{string.Join("\n", failures.Take(10))}");
    }
}
