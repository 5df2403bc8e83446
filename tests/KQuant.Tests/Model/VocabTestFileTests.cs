using System.Text;
using KQuant.Model.Tokenizers;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Model;

/// <summary>llama.cpp's own tokenizer tests (test-tokenizer-0): for each ggml-vocab-NAME.gguf of its source bundle,
/// NAME.gguf.inp holds test strings separated by a marker line and NAME.gguf.out the expected ids, one line per string,
/// tokenized without BOS/EOS and without parsing special tokens.</summary>
public sealed class VocabTestFileTests
{
    private const string Separator = "\n__ggml_vocab_test__\n";

    public static TheoryData<string> VocabsWithTestFiles() =>
        new(TokenizerTestVocabs.BundleSupported.Where(n => n is not ("baichuan" or "aquila" or "gpt-neox")));

    [SkippableTheory]
    [MemberData(nameof(VocabsWithTestFiles))]
    public void IdsEqualTheExpectedOnesAndLlamaTokenize(string name)
    {
        var tokenizer = TokenizerTestVocabs.Load($"bundle/{name}");
        var cases = ReadCases(TokenizerTestVocabs.BundleVocab(name));
        Assert.True(cases.Count >= 40, $"only {cases.Count} cases read for {name}");
        var reference = LlamaReference.Available ? LlamaReference.LoadVocab(TokenizerTestVocabs.BundleVocab(name)) : null;

        var failures = new List<string>();
        foreach (var (text, expected) in cases)
        {
            var ours = tokenizer.EncodeUtf8(text, addSpecial: false, parseSpecial: false);
            if (!ours.SequenceEqual(expected)) failures.Add(Describe(text, expected, ours, ".out"));
            if (reference?.Tokenize(text, addSpecial: false, parseSpecial: false) is { } llama && !ours.SequenceEqual(llama))
                failures.Add(Describe(text, llama, ours, "llama_tokenize"));
        }
        Assert.True(failures.Count == 0, $"{name}: {failures.Count} of {cases.Count} differ:\n{string.Join("\n", failures.Take(10))}");
    }

    [SkippableTheory]
    [MemberData(nameof(UnsupportedVocabs))]
    public void UnsupportedTokenizerTypesAreRefusedByName(string name)
    {
        var path = TokenizerTestVocabs.RequirePath($"bundle/{name}");
        var e = Assert.Throws<TokenizerNotSupportedException>(() => TokenizerTestVocabs.Load($"bundle/{name}"));
        Assert.Equal(Tokenizer.ModelKey, e.Key);
        Assert.Contains(path, e.Message);
        Assert.Contains($"'{e.Value}'", e.Message);
        Assert.Contains("llama, gpt2", e.Message);
    }

    public static TheoryData<string> UnsupportedVocabs() => new(TokenizerTestVocabs.BundleUnsupported);

    /// <summary>(UTF-8 text, expected ids) pairs, split as test-tokenizer-0 splits them.</summary>
    internal static List<(byte[] Text, int[] Ids)> ReadCases(string vocabPath)
    {
        var input = File.ReadAllBytes(vocabPath + ".inp");
        var outputs = File.ReadAllLines(vocabPath + ".out");
        var separator = Encoding.UTF8.GetBytes(Separator);
        var texts = new List<byte[]>();
        for (var position = 0; position < input.Length;)
        {
            var next = input.AsSpan(position).IndexOf(separator);
            if (next < 0)
            {
                texts.Add(input[position..]);
                break;
            }
            texts.Add(input[position..(position + next)]);
            position += next + separator.Length;
        }
        Assert.Equal(texts.Count, outputs.Length);
        return texts.Select((t, i) => (t, outputs[i].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray())).ToList();
    }

    private static string Describe(byte[] text, int[] expected, int[] ours, string source) =>
        $"  \"{Encoding.UTF8.GetString(text).ReplaceLineEndings("\\n")}\": {source} [{string.Join(' ', expected)}], KQuant [{string.Join(' ', ours)}]";
}
