using System.Text;

namespace KQuant.Model.Tokenizers;

/// <summary>One step of a pre-tokenizer: refines a split of the text into pieces (lengths in codepoints, covering the
/// text in order) by splitting each piece further, the way one regex of llama.cpp's unicode_regex_split does: every
/// match becomes a piece and so does every stretch between matches.</summary>
internal interface IWordSplitter
{
    void Split(SplitText text, List<int> pieces, List<int> output);
}

/// <summary>The text a pre-tokenizer splits, as codepoints with their classes, and the two forms its regexes run on,
/// built on first use.</summary>
internal sealed class SplitText
{
    // Stand-ins for non-ASCII codepoints in the collapsed text, one per category group llama.cpp collapses to (its
    // unicode_regex_split uses the same byte values). Regexes written with \p{..} match them instead of the categories.
    public const char CollapsedNumber = '\u00D1';
    public const char CollapsedLetter = '\u00D2';
    public const char CollapsedPunctuation = '\u00D3';
    public const char CollapsedMark = '\u00D4';
    public const char CollapsedSymbol = '\u00D5';
    public const char CollapsedOther = '\u00D0';
    public const char CollapsedWhitespace = '\v';

    private readonly List<int> _codepoints;
    private readonly CodepointClass[] _classes;
    private string? _collapsed;
    private Utf16Text? _utf16;

    public SplitText(List<int> codepoints)
    {
        _codepoints = codepoints;
        _classes = new CodepointClass[codepoints.Count];
        for (var i = 0; i < _classes.Length; i++) _classes[i] = CodepointClasses.Of(codepoints[i]);
    }

    public int Length => _codepoints.Count;

    public int Codepoint(int index) => _codepoints[index];

    public CodepointClass Class(int index) => _classes[index];

    /// <summary>One character per codepoint: ASCII as is, whitespace as \v, anything else as the stand-in of its
    /// category group.</summary>
    public string Collapsed => _collapsed ??= BuildCollapsed();

    /// <summary>The text as UTF-16, with non-ASCII whitespace as \v (so an ASCII \s matches it, as in llama.cpp's
    /// wregex path), and where each codepoint starts in it.</summary>
    public Utf16Text Utf16 => _utf16 ??= BuildUtf16();

    private string BuildCollapsed()
    {
        var chars = new char[Length];
        for (var i = 0; i < chars.Length; i++)
        {
            var cp = _codepoints[i];
            var cls = _classes[i];
            chars[i] = cp < 0x80 ? (char)cp
                : (cls & CodepointClass.Whitespace) != 0 ? CollapsedWhitespace
                : (cls & CodepointClass.CategoryMask) switch
                {
                    CodepointClass.Number => CollapsedNumber,
                    CodepointClass.Letter => CollapsedLetter,
                    CodepointClass.Punctuation => CollapsedPunctuation,
                    CodepointClass.Mark => CollapsedMark,
                    CodepointClass.Symbol => CollapsedSymbol,
                    _ => CollapsedOther,
                };
        }
        return new string(chars);
    }

    private Utf16Text BuildUtf16()
    {
        var text = new StringBuilder(Length);
        var starts = new int[Length + 1];
        for (var i = 0; i < Length; i++)
        {
            starts[i] = text.Length;
            var cp = _codepoints[i];
            if (cp > 0x7F && (_classes[i] & CodepointClass.Whitespace) != 0) text.Append(CollapsedWhitespace);
            else if (cp <= char.MaxValue) text.Append((char)cp); // lone surrogates too: one char per codepoint
            else text.Append(char.ConvertFromUtf32(cp));
        }
        starts[Length] = text.Length;
        return new Utf16Text(text.ToString(), starts);
    }
}

/// <summary>UTF-16 text and the offset at which each codepoint starts (plus the total length at the end).</summary>
internal sealed class Utf16Text(string text, int[] codepointStarts)
{
    private int[]? _codepointAt;

    public string Text => text;

    public int StartOf(int codepoint) => codepointStarts[codepoint];

    /// <summary>The codepoint index at UTF-16 offset <paramref name="offset"/>, which must be a codepoint boundary.</summary>
    public int CodepointAt(int offset)
    {
        if (text.Length == codepointStarts.Length - 1) return offset; // no surrogate pairs: the offsets coincide
        if (_codepointAt is null)
        {
            var map = new int[text.Length + 1];
            for (var i = 0; i < codepointStarts.Length; i++) map[codepointStarts[i]] = i;
            _codepointAt = map;
        }
        return _codepointAt[offset];
    }
}
