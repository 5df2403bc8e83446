using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace KQuant.Model.Tokenizers;

/// <summary>A pre-tokenizer step given as one of llama.cpp's regexes (C++ std::regex, ECMAScript flavour, plus
/// \p{L}-style categories), run with .NET's regex engine on the same input llama.cpp runs it on:
/// <list type="bullet">
/// <item>A regex with a category runs on the collapsed text (<see cref="SplitText.Collapsed"/>), each \p{X} becoming the
/// stand-in for X plus the ASCII members of X; this is how llama.cpp gives std::regex Unicode categories.</item>
/// <item>Any other regex runs on the codepoints (as UTF-16 here), non-ASCII whitespace read as \v.</item>
/// </list>
/// \s and \d mean ASCII whitespace and digits, as in std::regex; $ means the end of the piece. Only the constructs the
/// supported pre-tokenizers use are translated; anything else is refused when the step is built.</summary>
internal sealed class RegexWordSplitter : IWordSplitter
{
    private static readonly string[] CategoryNames = ["N", "L", "P", "M", "S", "Lu", "Ll", "Lt", "Lm", "Lo"];

    private readonly Regex _regex;
    private readonly bool _collapsed;

    public RegexWordSplitter(string llamaPattern)
    {
        Pattern = llamaPattern;
        _collapsed = CategoryNames.Any(name => llamaPattern.Contains($"\\p{{{name}}}", StringComparison.Ordinal));
        _regex = new Regex(Translate(llamaPattern, _collapsed), RegexOptions.CultureInvariant);
    }

    /// <summary>The regex as llama.cpp writes it.</summary>
    public string Pattern { get; }

    /// <summary>The .NET regex it runs as.</summary>
    internal string TranslatedPattern => _regex.ToString();

    public void Split(SplitText text, List<int> pieces, List<int> output)
    {
        var begin = 0;
        foreach (var length in pieces)
        {
            if (_collapsed) SplitPiece(text.Collapsed.AsSpan(begin, length), null, 0, output);
            else
            {
                var utf16 = text.Utf16;
                var start = utf16.StartOf(begin);
                SplitPiece(utf16.Text.AsSpan(start, utf16.StartOf(begin + length) - start), utf16, start, output);
            }
            begin += length;
        }
    }

    // Matches and the stretches between them become pieces. Offsets in the span are converted to codepoints through
    // utf16, whose offset utf16Start is the span's start (the collapsed text has one character per codepoint).
    private void SplitPiece(ReadOnlySpan<char> span, Utf16Text? utf16, int utf16Start, List<int> output)
    {
        var first = utf16?.CodepointAt(utf16Start) ?? 0;
        int CodepointOffset(int offset) => utf16 is null ? offset : utf16.CodepointAt(utf16Start + offset) - first;

        var done = 0; // codepoints of the piece already emitted
        foreach (var match in _regex.EnumerateMatches(span))
        {
            if (match.Length == 0) continue; // no supported regex matches empty text
            var matchStart = CodepointOffset(match.Index);
            var matchEnd = CodepointOffset(match.Index + match.Length);
            if (matchStart > done) output.Add(matchStart - done);
            output.Add(matchEnd - matchStart);
            done = matchEnd;
        }
        var pieceLength = CodepointOffset(span.Length);
        if (pieceLength > done) output.Add(pieceLength - done);
    }

    /// <summary>llama.cpp's regex dialect to .NET's, for the collapsed text or for codepoints.</summary>
    internal static string Translate(string pattern, bool collapsed)
    {
        var codepoints = pattern.EnumerateRunes().Select(r => r.Value).ToArray();
        var result = new StringBuilder();
        for (var i = 0; i < codepoints.Length; i++)
        {
            var c = codepoints[i];
            switch (c)
            {
                case '\\':
                    i = ReadEscape(codepoints, i, collapsed, out var set);
                    result.Append(set.ToRegex());
                    break;
                case '[':
                    i = ReadClass(codepoints, i, collapsed, out var cls);
                    result.Append(cls.ToRegex());
                    break;
                case '$':
                    result.Append(@"\z");
                    break;
                case '.':
                    throw new NotSupportedException($"'.' in pre-tokenizer regex {pattern}");
                case '(' or ')' or '|' or '?' or '*' or '+' or '{' or '}' or ',' or ':' or '=' or '!' or '^':
                    // Structure: groups (?: (?= (?!, alternation, quantifiers {m,n}; passed through as is.
                    result.Append((char)c);
                    break;
                default:
                    if (collapsed && c >= 0x80) throw new NotSupportedException($"non-ASCII character beside a category in {pattern}");
                    result.Append(CharSet.Single(c).ToRegex());
                    break;
            }
        }
        return result.ToString();
    }

    // Reads the escape at codepoints[i] ('\\'); returns the index of its last codepoint.
    private static int ReadEscape(int[] codepoints, int i, bool collapsed, out CharSet set)
    {
        if (i + 1 >= codepoints.Length) throw new NotSupportedException("a regex ends with '\\'");
        var c = codepoints[i + 1];
        switch (c)
        {
            case 'p':
                var close = Array.IndexOf(codepoints, '}', i + 2);
                var name = close < 0 ? "" : string.Concat(codepoints[(i + 3)..close].Select(cp => (char)cp));
                if (!collapsed || codepoints[i + 2] != '{' || !CategoryNames.Contains(name))
                    throw new NotSupportedException($"\\p{{{name}}} in a pre-tokenizer regex");
                set = CharSet.Category(name);
                return close;
            case 's':
                set = CharSet.Range('\t', '\r').Add(' ');
                return i + 1;
            case 'd':
                set = CharSet.Range('0', '9');
                return i + 1;
            case 'S' or 'D':
                set = (c == 'S' ? CharSet.Range('\t', '\r').Add(' ') : CharSet.Range('0', '9')).Negate();
                return i + 1;
            case 'r' or 'n' or 't' or 'f' or 'v':
                set = CharSet.Single(c switch { 'r' => '\r', 'n' => '\n', 't' => '\t', 'f' => '\f', _ => '\v' });
                return i + 1;
            case >= 'a' and <= 'z' or >= 'A' and <= 'Z' or >= '0' and <= '9':
                throw new NotSupportedException($"\\{(char)c} in a pre-tokenizer regex");
            default:
                set = CharSet.Single(c); // an escaped symbol stands for itself
                return i + 1;
        }
    }

    // Reads the class at codepoints[i] ('['); returns the index of its ']'.
    private static int ReadClass(int[] codepoints, int i, bool collapsed, out CharSet set)
    {
        set = new CharSet();
        var negated = i + 1 < codepoints.Length && codepoints[i + 1] == '^';
        var j = negated ? i + 2 : i + 1;
        for (; j < codepoints.Length && codepoints[j] != ']'; j++)
        {
            int first;
            if (codepoints[j] == '\\')
            {
                j = ReadEscape(codepoints, j, collapsed, out var escaped);
                if (!escaped.IsSingle(out first))
                {
                    set.AddAll(escaped);
                    continue;
                }
            }
            else first = codepoints[j];
            if (collapsed && first >= 0x80) throw new NotSupportedException("a non-ASCII character beside a category");

            if (j + 2 < codepoints.Length && codepoints[j + 1] == '-' && codepoints[j + 2] != ']')
            {
                j += 2;
                var last = codepoints[j];
                if (last == '\\')
                {
                    j = ReadEscape(codepoints, j, collapsed, out var escapedLast);
                    if (!escapedLast.IsSingle(out last)) throw new NotSupportedException("a range ending in a class escape");
                }
                set.AddRange(first, last);
            }
            else set.Add(first);
        }
        if (j >= codepoints.Length) throw new NotSupportedException("an unclosed '[' in a pre-tokenizer regex");
        if (negated) set = set.Negate();
        return j;
    }

    /// <summary>A set of codepoints as inclusive ranges, written as a .NET regex that matches one codepoint of it:
    /// a class of BMP characters, and surrogate pairs for the other planes.</summary>
    private sealed class CharSet
    {
        private readonly List<(int First, int Last)> _ranges = [];
        private bool _negated;

        public static CharSet Single(int c) => new CharSet().Add(c);

        public static CharSet Range(int first, int last) => new CharSet().AddRange(first, last);

        /// <summary>A category in the collapsed text: its stand-in and its ASCII members (llama.cpp's k_ucat_map).</summary>
        public static CharSet Category(string name) => name switch
        {
            "N" => Single(SplitText.CollapsedNumber).AddRange('0', '9'),
            "P" => Single(SplitText.CollapsedPunctuation).AddRange('!', '#').AddRange('%', '*').AddRange(',', '/')
                .AddRange(':', ';').AddRange('?', '@').AddRange('[', ']').Add('_').Add('{').Add('}'),
            "M" => Single(SplitText.CollapsedMark),
            "S" => Single(SplitText.CollapsedSymbol).Add('$').Add('+').AddRange('<', '>').Add('^').Add('`').Add('|').Add('~'),
            _ => Single(SplitText.CollapsedLetter).AddRange('A', 'Z').AddRange('a', 'z'), // L and its subcategories
        };

        public CharSet Add(int c) => AddRange(c, c);

        public CharSet AddRange(int first, int last)
        {
            if (first > last) throw new NotSupportedException($"an empty range U+{first:X4}-U+{last:X4} in a pre-tokenizer regex");
            _ranges.Add((first, last));
            return this;
        }

        public void AddAll(CharSet other)
        {
            if (other._negated) throw new NotSupportedException("a negated escape inside a class");
            _ranges.AddRange(other._ranges);
        }

        public CharSet Negate()
        {
            _negated = !_negated;
            return this;
        }

        public bool IsSingle(out int c)
        {
            c = _ranges.Count == 1 && !_negated && _ranges[0].First == _ranges[0].Last ? _ranges[0].First : -1;
            return c >= 0;
        }

        public string ToRegex()
        {
            if (IsSingle(out var single) && single <= char.MaxValue) return Escape(single);
            var bmp = new StringBuilder();
            var astral = new List<string>();
            foreach (var (first, last) in _ranges)
            {
                if (first <= char.MaxValue) bmp.Append(Escape(first)).Append('-').Append(Escape(Math.Min(last, char.MaxValue)));
                if (last > char.MaxValue) astral.AddRange(SurrogateRanges(Math.Max(first, char.MaxValue + 1), last));
            }
            var bmpClass = $"[{(_negated ? "^" : "")}{bmp}]";
            if (astral.Count == 0) return bmpClass;
            // A negated class would match half of a surrogate pair.
            if (_negated) throw new NotSupportedException("a negated class with characters beyond U+FFFF");
            return $"(?:{(bmp.Length > 0 ? bmpClass + "|" : "")}{string.Join("|", astral)})";
        }

        // Codepoints first..last beyond the BMP as surrogate pairs: one alternative per high surrogate.
        private static IEnumerable<string> SurrogateRanges(int first, int last)
        {
            for (var high = first; high <= last;)
            {
                var blockEnd = Math.Min(last, (high | 0x3FF));
                var a = char.ConvertFromUtf32(high);
                var b = char.ConvertFromUtf32(blockEnd);
                yield return $"{Escape(a[0])}[{Escape(a[1])}-{Escape(b[1])}]";
                high = blockEnd + 1;
            }
        }

        private static string Escape(int c) => "\\u" + c.ToString("X4", CultureInfo.InvariantCulture);
    }
}
