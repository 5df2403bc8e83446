using System.Text;
using KQuant.Model.Tokenizers;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Model;

/// <summary>KQuant's tokenizers against llama.cpp's llama_tokenize, llama_detokenize and llama_token_to_piece on the
/// same vocabularies: edge cases, invalid UTF-8, and every token's attributes and piece.</summary>
public sealed class TokenizerReferenceTests
{
    public static TheoryData<string> AllVocabs() =>
        new(TokenizerTestVocabs.Shared.Concat(TokenizerTestVocabs.BundleSupported.Select(n => $"bundle/{n}")));

    /// <summary>Texts where tokenizers tend to differ: whitespace of every kind, scripts with marks, emoji sequences,
    /// digits, contractions, punctuation runs, control characters, unpaired surrogates (which become U+FFFD in UTF-8),
    /// codepoints new in Unicode 16, and very long words.</summary>
    public static readonly string[] EdgeCases =
    [
        "", " ", "  ", "   ", "\t", "\n", "\n\n", "\n\n\n", "\r\n", "\t\n", " \t\n ", "\u00A0", "\u3000", "\u2028", "\u0085",
        "\u000B\u000C", "Hello world", " Hello world", "Hello  world", "hello\n\nworld", "end   ", "   Hello", "    Hello\n    Hello",
        "Hello, world!", " (", "\n =", "' era", "🦙", " this is 🦙.cpp", "😶‍🌫️ (multiple emojis concatenated) ✅", "👍🏽👨‍👩‍👧",
        "🇫🇷🇩🇪", "我想在apple工作1314151天～", "日本語のテキスト、カタカナ。", "안녕하세요 세계", "สวัสดีครับ", "مرحبا بالعالم",
        "שלום עולם", "नमस्ते दुनिया", "e\u0301cole, école", "Tiếng Việt có dấu", "нещо на Български", "ὀδυσσεύς",
        "3", "33", "333", "3333", "33333", "3333333", "12345678901234567890", "١٢٣٤ ٥٦", "x²+y³=z½", "Ⅻ 〇 ①②",
        "I'M I'm 'S 'll 'LL we'Ve a'lL 'D you 'Re", "it's   they're  'tis", "!!!???...,,,", "''''''```````\"\"\"\"",
        "------=======", "$+<=>^~|`", "@#%&*()[]{}\\/", "a.b,c;d:e", "\u0000", "\u0001\u001F\u007F", "\u200B\uFEFF\u200D",
        "\uFFFD", "\uD800", "a\uDC00b", "\uDBFF\uDFFF", "\uD83D", "\uDE00\uD83D", "x\uD83D\uDE00\uD83Dy", "\u0897\U0001FA89\U00013460",
        "\U0001D400\U0001D41A math", "\U00010400\U00010428", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "tab\tseparated\tvalues\t", "CamelCaseWordsAndALLCAPS",
        "snake_case_identifier = value_42;", "<0x0A> <s> </s> <unk>", "<|endoftext|>", "<|im_start|>user\nhi<|im_end|>",
        "fn main() {\n    println!(\"hi\");\n}\n", new string('a', 5000), new string('7', 3001), new string(' ', 2000),
        string.Concat(Enumerable.Repeat("abc", 2000)), string.Concat(Enumerable.Repeat("🦙", 500)), new string('\n', 1000),
        string.Concat(Enumerable.Repeat(" \t", 700)) + "x", string.Concat(Enumerable.Repeat("ab1.", 600)),
    ];

    /// <summary>Byte strings that are not valid UTF-8. (Not F5..F7 leads: llama.cpp aborts on the codepoints they give.)</summary>
    public static readonly byte[][] InvalidUtf8 =
    [
        [0xFF], [0xC3], [0xE2, 0x96], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0x80, 0x80, (byte)'a'], [(byte)'a', 0xF0, 0x9F, 0xA6],
        [0xF8, 0x88, 0x80, 0x80, 0x80], [(byte)' ', 0xE2, (byte)' ', 0x96, 0x81], [0xC3, 0xA9, 0xA9, (byte)'\'', (byte)'s'],
        [0xE4, 0xB8, (byte)'1', (byte)'2', (byte)'3', 0xE4], [0xC2, 0xA0, 0xC2],
    ];

    [SkippableFact]
    public void CodepointClassesAreLlamaCppsForEveryCodepoint()
    {
        LlamaReference.Require();
        var differences = new List<string>();
        for (var cp = 0; cp <= CodepointClasses.MaxCodepoint; cp++)
        {
            var llama = LlamaReference.CodepointFlags(cp) & 0x1FF; // categories and whitespace
            var ours = (int)CodepointClasses.Of(cp);
            if (ours != llama) differences.Add($"U+{cp:X4}: llama.cpp 0x{llama:X3}, KQuant 0x{ours:X3}");
        }
        Assert.True(differences.Count == 0, $"{differences.Count} codepoints differ:\n{string.Join("\n", differences.Take(20))}");
    }

    [SkippableTheory]
    [MemberData(nameof(AllVocabs))]
    public void SettingsAttributesAndPiecesMatchForEveryToken(string name)
    {
        var (ours, llama) = TokenizerTestVocabs.LoadBoth(name);
        Assert.Equal(llama.Count, ours.VocabSize);
        Assert.Equal(llama.Bos, ours.Bos ?? -1);
        Assert.Equal(llama.Eos, ours.Eos ?? -1);
        Assert.Equal(llama.AddBos, ours.AddBos);
        Assert.Equal(llama.AddEos, ours.AddEos);
        var differences = new List<string>();
        for (var id = 0; id < ours.VocabSize; id++)
        {
            if ((int)ours.GetAttributes(id) != llama.Attributes(id))
                differences.Add($"{id} '{ours.TokenText(id)}': attributes llama.cpp {llama.Attributes(id)}, KQuant {(int)ours.GetAttributes(id)}");
            if (ours.IsEndOfGeneration(id) != llama.IsEndOfGeneration(id))
                differences.Add($"{id} '{ours.TokenText(id)}': end of generation llama.cpp {llama.IsEndOfGeneration(id)}");
            foreach (var special in (bool[])[true, false])
            {
                if (!ours.TokenPiece(id, special).AsSpan().SequenceEqual(llama.TokenToPiece(id, special)))
                    differences.Add($"{id} '{ours.TokenText(id)}': piece (special {special}) differs");
            }
        }
        Assert.True(differences.Count == 0, $"{name}: {differences.Count} differences:\n{string.Join("\n", differences.Take(20))}");
    }

    [SkippableTheory]
    [MemberData(nameof(AllVocabs))]
    public void EdgeCasesEncodeAndDecodeAsLlamaCpp(string name)
    {
        var (ours, llama) = TokenizerTestVocabs.LoadBoth(name);
        var texts = EdgeCases.Concat(SpecialTokenTexts(ours)).ToArray();
        var failures = new List<string>();
        foreach (var text in texts)
        {
            var utf8 = Encoding.UTF8.GetBytes(text);
            foreach (var (addSpecial, parseSpecial) in FlagCombinations)
            {
                var ids = ours.Encode(text, addSpecial, parseSpecial);
                var expected = llama.Tokenize(utf8, addSpecial, parseSpecial);
                if (!ids.SequenceEqual(expected)) failures.Add(TokenizerComparison.Describe(text, addSpecial, parseSpecial, expected, ids));
                else failures.AddRange(TokenizerComparison.DecodeDifferences(ours, llama, ids, text));
            }
        }
        Assert.True(failures.Count == 0, $"{name}: {failures.Count} failures:\n{string.Join("\n", failures.Take(10))}");
    }

    [SkippableTheory]
    [MemberData(nameof(AllVocabs))]
    public void InvalidUtf8EncodesAsLlamaCpp(string name)
    {
        var (ours, llama) = TokenizerTestVocabs.LoadBoth(name);
        foreach (var bytes in InvalidUtf8)
        {
            foreach (var (addSpecial, parseSpecial) in FlagCombinations)
            {
                Assert.Equal(llama.Tokenize(bytes, addSpecial, parseSpecial), ours.EncodeUtf8(bytes, addSpecial, parseSpecial));
            }
        }
    }

    internal static readonly (bool AddSpecial, bool ParseSpecial)[] FlagCombinations = [(false, false), (true, false), (false, true), (true, true)];

    /// <summary>The vocabulary's special tokens (the longest few of each kind, and BOS/EOS) in sentences, next to
    /// whitespace and to each other.</summary>
    private static IEnumerable<string> SpecialTokenTexts(Tokenizer tokenizer)
    {
        var specials = tokenizer.SpecialTokenMatchOrder
            .GroupBy(id => tokenizer.GetAttributes(id) & (TokenAttributes.Control | TokenAttributes.UserDefined | TokenAttributes.Unknown))
            .SelectMany(g => g.Take(4))
            .Concat(new[] { tokenizer.Bos, tokenizer.Eos }.OfType<int>())
            .Distinct()
            .Select(tokenizer.TokenText)
            .ToArray();
        foreach (var s in specials)
        {
            yield return s;
            yield return $"Hello {s} world";
            yield return $"{s}{s}text{s}";
            yield return $" {s}\n  Hi \t{s}  ";
        }
        if (specials.Length > 1) yield return string.Join(" x ", specials);
    }
}
