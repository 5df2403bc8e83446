namespace KQuant.Model.Tokenizers;

/// <summary>A piece of the text being encoded: either raw text (bytes <see cref="Start"/> to Start + Length, still to be
/// tokenized) or a special token found in the text.</summary>
internal readonly record struct TextFragment(int Start, int Length, int Token)
{
    public const int RawText = -1;

    public bool IsRawText => Token == RawText;
}

/// <summary>Cuts special tokens out of text before the tokenizer proper sees it, as llama.cpp's tokenizer_st_partition
/// does: tokens are tried one after another, longest text first, and each is cut out of every raw fragment left by the
/// previous ones, at every non-overlapping occurrence from left to right. User-defined tokens are always cut out;
/// control and unknown tokens only when special tokens are parsed. A token marked <see cref="TokenAttributes.LeftStrip"/>
/// or <see cref="TokenAttributes.RightStrip"/> swallows the whitespace next to it.</summary>
internal static class SpecialTokenSplitter
{
    public static List<TextFragment> Split(ReadOnlySpan<byte> text, TokenVocabulary vocabulary, int[] matchOrder, bool parseSpecial)
    {
        var fragments = new List<TextFragment>();
        if (text.IsEmpty) return fragments;
        fragments.Add(new TextFragment(0, text.Length, TextFragment.RawText));

        var next = new List<TextFragment>();
        foreach (var id in matchOrder)
        {
            var attributes = vocabulary.Attributes(id);
            if (!parseSpecial && (attributes & (TokenAttributes.Control | TokenAttributes.Unknown)) != 0) continue;
            var token = vocabulary.Text(id);
            next.Clear();
            foreach (var fragment in fragments)
            {
                if (fragment.IsRawText && fragment.Length >= token.Length) CutOut(text, fragment, id, token, attributes, next);
                else next.Add(fragment);
            }
            (fragments, next) = (next, fragments);
        }
        return fragments;
    }

    private static void CutOut(ReadOnlySpan<byte> text, TextFragment fragment, int id, ReadOnlySpan<byte> token, TokenAttributes attributes, List<TextFragment> output)
    {
        var start = fragment.Start;
        var end = fragment.Start + fragment.Length;
        while (true)
        {
            var found = text[start..end].IndexOf(token);
            if (found < 0) break;
            var match = start + found;
            var leftEnd = match;
            if ((attributes & TokenAttributes.LeftStrip) != 0)
            {
                while (leftEnd > start && IsCSpace(text[leftEnd - 1])) leftEnd--;
            }
            if (leftEnd > start) output.Add(new TextFragment(start, leftEnd - start, TextFragment.RawText));
            output.Add(new TextFragment(0, 0, id));
            start = match + token.Length;
            if ((attributes & TokenAttributes.RightStrip) != 0)
            {
                while (start < end && IsCSpace(text[start])) start++;
            }
        }
        if (start < end) output.Add(new TextFragment(start, end - start, TextFragment.RawText));
    }

    /// <summary>C's isspace in the "C" locale, which llama.cpp uses for stripping.</summary>
    private static bool IsCSpace(byte b) => b is (byte)' ' or >= (byte)'\t' and <= (byte)'\r';
}
