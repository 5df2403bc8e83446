using KQuant.Model.Tokenizers;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Model;

/// <summary>Comparing KQuant's tokenizer output with llama.cpp's, with failure messages that show where they part.</summary>
internal static class TokenizerComparison
{
    private const int Shown = 12;

    public static string Describe(string text, bool addSpecial, bool parseSpecial, int[] expected, int[] actual)
    {
        var first = 0;
        while (first < Math.Min(expected.Length, actual.Length) && expected[first] == actual[first]) first++;
        var from = Math.Max(0, first - 2);
        return $"  \"{Quote(text)}\" (addSpecial {addSpecial}, parseSpecial {parseSpecial}): {expected.Length} vs {actual.Length} ids, "
            + $"first difference at {first}: llama.cpp [{Window(expected, from)}], KQuant [{Window(actual, from)}]";
    }

    /// <summary>How KQuant's decoding of <paramref name="ids"/> differs from llama_detokenize's, for each flag combination.</summary>
    public static IEnumerable<string> DecodeDifferences(Tokenizer ours, LlamaReference.Vocab llama, int[] ids, string text)
    {
        foreach (var (removeSpecial, renderSpecial) in TokenizerReferenceTests.FlagCombinations)
        {
            var expected = llama.Detokenize(ids, removeSpecial, renderSpecial);
            var actual = ours.DecodeBytes(ids, removeSpecial, renderSpecial);
            if (!actual.AsSpan().SequenceEqual(expected))
            {
                yield return $"  decode of \"{Quote(text)}\" (removeSpecial {removeSpecial}, renderSpecial {renderSpecial}): "
                    + $"llama.cpp \"{Quote(System.Text.Encoding.UTF8.GetString(expected))}\", KQuant \"{Quote(System.Text.Encoding.UTF8.GetString(actual))}\"";
            }
        }
    }

    public static string Quote(string text) =>
        (text.Length > 60 ? text[..60] + $"…({text.Length} chars)" : text).Replace("\n", "\\n").Replace("\r", "\\r").Replace("\t", "\\t");

    private static string Window(int[] ids, int from) => string.Join(' ', ids.Skip(from).Take(Shown));
}
