namespace KQuant.Model.Tokenizers;

/// <summary>A pre-tokenizer regex written as a scanner, for the regexes of the common pre-tokenizers, which llama.cpp
/// also hand-codes (unicode_regex_split_custom_*): faster than a regex, and tied to llama.cpp's codepoint classes rather
/// than to a regex engine's. Each piece is scanned from its start; every match, or a single unmatched codepoint, is
/// a new piece.</summary>
internal abstract class ScanningWordSplitter : IWordSplitter
{
    public void Split(SplitText text, List<int> pieces, List<int> output)
    {
        var begin = 0;
        foreach (var length in pieces)
        {
            var piece = new Piece(text, begin, begin + length);
            for (var position = begin; position < piece.End;)
            {
                var end = MatchEnd(piece, position);
                output.Add(end - position);
                position = end;
            }
            begin += length;
        }
    }

    /// <summary>Where the match at <paramref name="position"/> ends (at least one codepoint further).</summary>
    protected abstract int MatchEnd(in Piece piece, int position);

    /// <summary>\s*[\r\n]+ (when <paramref name="breakAtLineEnds"/>), then \s+(?!\S): whitespace up to the last line break
    /// in the run; else the run but its last codepoint when something follows it; else one codepoint.</summary>
    protected static int WhitespaceEnd(in Piece piece, int position, bool breakAtLineEnds)
    {
        var end = piece.RunOf(position, CodepointClass.Whitespace);
        if (breakAtLineEnds)
        {
            for (var i = end - 1; i >= position; i--)
            {
                if (piece.IsLineBreak(i)) return i + 1;
            }
        }
        var count = end - position;
        if (count > 1 && piece.Contains(end)) return end - 1;
        return count > 0 ? end : position + 1;
    }

    /// <summary>The piece being scanned. Positions outside it read as no codepoint (-1, <see cref="CodepointClass.None"/>),
    /// so a match never runs past its end.</summary>
    protected readonly struct Piece(SplitText text, int begin, int end)
    {
        public int End => end;

        public bool Contains(int position) => position >= begin && position < end;

        public int Codepoint(int position) => Contains(position) ? text.Codepoint(position) : -1;

        public CodepointClass Class(int position) => Contains(position) ? text.Class(position) : CodepointClass.None;

        /// <summary>The end of the run from <paramref name="position"/> of codepoints in any of <paramref name="classes"/>.</summary>
        public int RunOf(int position, CodepointClass classes)
        {
            while ((Class(position) & classes) != 0) position++;
            return position;
        }

        /// <summary>The end of the run from <paramref name="position"/> of codepoints in none of <paramref name="classes"/>
        /// (\s, \p{L}, \p{N}, ...): [^\s\p{L}\p{N}]+ and the like.</summary>
        public int RunOfNone(int position, CodepointClass classes)
        {
            while (Class(position) is var c && c != CodepointClass.None && (c & classes) == 0) position++;
            return position;
        }

        public bool IsLineBreak(int position) => Codepoint(position) is '\r' or '\n';

        /// <summary>'s|'t|'re|'ve|'m|'ll|'d at <paramref name="position"/>: where it ends, or -1.</summary>
        public int ContractionEnd(int position, bool ignoreCase)
        {
            if (Codepoint(position) != '\'' || !Contains(position + 1)) return -1;
            var first = Letter(position + 1, ignoreCase);
            if (first is 's' or 't' or 'm' or 'd') return position + 2;
            if (!Contains(position + 2)) return -1;
            var second = Letter(position + 2, ignoreCase);
            return (first, second) is ('r', 'e') or ('v', 'e') or ('l', 'l') ? position + 3 : -1;
        }

        private int Letter(int position, bool ignoreCase) =>
            ignoreCase ? CodepointClasses.ToLowerAscii(Codepoint(position)) : Codepoint(position);
    }
}

/// <summary>GPT-2's pre-tokenizer regex, used by "gpt-2", "mpt", "starcoder", "falcon" and others:
/// <c>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)</c>.</summary>
internal sealed class Gpt2WordSplitter : ScanningWordSplitter
{
    public static readonly Gpt2WordSplitter Instance = new();

    protected override int MatchEnd(in Piece piece, int position)
    {
        if (piece.ContractionEnd(position, ignoreCase: false) is var contraction and >= 0) return contraction;

        // An optional space, then a run of letters, of digits, or of anything else that is not whitespace.
        var body = piece.Codepoint(position) == ' ' ? position + 1 : position;
        var cls = piece.Class(body);
        if ((cls & CodepointClass.Letter) != 0) return piece.RunOf(body, CodepointClass.Letter);
        if ((cls & CodepointClass.Number) != 0) return piece.RunOf(body, CodepointClass.Number);
        const CodepointClass wordLike = CodepointClass.Whitespace | CodepointClass.Letter | CodepointClass.Number;
        if (cls != CodepointClass.None && (cls & wordLike) == 0) return piece.RunOfNone(body, wordLike);

        return WhitespaceEnd(piece, position, breakAtLineEnds: false);
    }
}

/// <summary>The Llama 3 family of pre-tokenizer regexes:
/// <c>(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+</c>
/// ("llama-bpe", "dbrx", ...), with single digits for Qwen 2 (<c>\p{N}</c>), and marks joining letters for Qwen 3.5
/// (<c>[\p{L}\p{M}]+</c>, and <c>[^\s\p{L}\p{M}\p{N}]+</c>). The contractions ignore ASCII case only, as in llama.cpp.</summary>
internal sealed class Llama3WordSplitter(int maxDigits, bool marksJoinLetters) : ScanningWordSplitter
{
    public static readonly Llama3WordSplitter Llama3 = new(maxDigits: 3, marksJoinLetters: false);
    public static readonly Llama3WordSplitter Qwen2 = new(maxDigits: 1, marksJoinLetters: false);
    public static readonly Llama3WordSplitter Qwen35 = new(maxDigits: 1, marksJoinLetters: true);

    private readonly CodepointClass _letters = marksJoinLetters ? CodepointClass.Letter | CodepointClass.Mark : CodepointClass.Letter;

    protected override int MatchEnd(in Piece piece, int position)
    {
        if (piece.ContractionEnd(position, ignoreCase: true) is var contraction and >= 0) return contraction;

        // [^\r\n\p{L}\p{N}]?\p{L}+: one optional codepoint that is not a line break or digit, then letters.
        var cls = piece.Class(position);
        if (!piece.IsLineBreak(position) && (cls & CodepointClass.Number) == 0
            && ((cls & _letters) != 0 || (piece.Class(position + 1) & _letters) != 0))
        {
            return piece.RunOf(position + 1, _letters);
        }

        if ((cls & CodepointClass.Number) != 0) return Math.Min(piece.RunOf(position, CodepointClass.Number), position + maxDigits);

        // ' '?[^\s\p{L}\p{N}]+[\r\n]*
        var body = piece.Codepoint(position) == ' ' ? position + 1 : position;
        var wordLike = CodepointClass.Whitespace | _letters | CodepointClass.Number;
        if ((piece.Class(body) & wordLike) == 0)
        {
            var end = piece.RunOfNone(body, wordLike);
            while (piece.IsLineBreak(end)) end++;
            return end;
        }

        return WhitespaceEnd(piece, position, breakAtLineEnds: true);
    }
}
