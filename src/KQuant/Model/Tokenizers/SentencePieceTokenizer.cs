using System.Runtime.InteropServices;
using KQuant.Gguf;

namespace KQuant.Model.Tokenizers;

/// <summary>tokenizer.ggml.model = "llama": SentencePiece's BPE as llama.cpp runs it (llm_tokenizer_spm). Spaces become
/// '▁' (U+2581) and the text gets a leading one; then, starting from single characters, the adjacent pair whose
/// concatenation is the vocabulary piece with the highest score is merged, leftmost first on ties, until no pair forms a
/// piece. A character left without a piece is written as byte tokens "&lt;0xXX&gt;".</summary>
/// <remarks>llama.cpp merges the whole text as one sequence. When no piece has a '▁' after anything but '▁' (true of
/// SentencePiece vocabularies split on whitespace), no merge can cross the start of a run of '▁', so the text is merged
/// word by word instead, with the same result, and a word seen before is not merged again.</remarks>
internal sealed class SentencePieceTokenizer : Tokenizer
{
    public const string ModelName = "llama";

    // Defaults of llama.cpp for "llama" vocabularies: <s> 1, </s> 2, BOS added, a space prefix.
    private static readonly TypeDefaults Defaults = new(Bos: 1, Eos: 2, AddBos: true, AddSpacePrefix: true, CleanSpaces: false);

    private readonly int[] _byteTokens; // per byte value, its fallback token or -1
    private readonly bool _mergesStayInWords;

    private SentencePieceTokenizer(TokenizerSettings settings)
        : base(settings)
    {
        _byteTokens = new int[256];
        for (var b = 0; b < 256; b++)
        {
            // "<0xXX>", or else the byte itself as a one-byte piece
            _byteTokens[b] = Vocabulary.FindByteToken((byte)b) is var id and >= 0 ? id
                : Vocabulary.TryGetId([(byte)b], out id) ? id : -1;
        }
        _mergesStayInWords = Enumerable.Range(0, Vocabulary.Count).All(id => SpaceMarks.OnlyLead(Vocabulary.Text(id)));
    }

    /// <summary>Whether text is merged word by word (see the remarks) rather than as one sequence.</summary>
    internal bool MergesWordByWord => _mergesStayInWords;

    public static SentencePieceTokenizer Load(IGgufMetadataSource metadata, string path) =>
        new(ReadSettings(metadata, path, ModelName, preTokenizer: null, Defaults));

    private protected override void EncodeText(ReadOnlySpan<byte> text, bool atStartOrAfterSpecial, List<int> output)
    {
        var escaped = SpaceMarks.Escape(text, AddSpacePrefix && atStartOrAfterSpecial);
        var session = new MergeSession(this, escaped);
        if (!_mergesStayInWords)
        {
            session.MergeAll(output);
            return;
        }
        var symbols = session.Symbols;
        var wordStart = 0;
        for (var i = 1; i <= symbols.Count; i++)
        {
            if (i < symbols.Count && !(IsSpaceMark(escaped, symbols[i]) && !IsSpaceMark(escaped, symbols[i - 1]))) continue;
            session.MergeWord(wordStart, i, output);
            wordStart = i;
        }
    }

    private protected override byte[] NormalTokenPiece(ReadOnlySpan<byte> text) => SpaceMarks.Unescape(text);

    private int ByteToken(byte value) =>
        _byteTokens[value] >= 0 ? _byteTokens[value]
            : throw new InvalidOperationException($"{SourcePath}: the vocabulary has no token for byte 0x{value:X2} (\"<0x{value:X2}>\")");

    private static bool IsSpaceMark(byte[] text, in SymbolChain.Symbol symbol) => text.AsSpan(symbol.Start, symbol.Length).SequenceEqual(SpaceMarks.Mark);

    /// <summary>The merging of one escaped text: its symbols, the queue, and the tokens of words already merged.</summary>
    private sealed class MergeSession
    {
        private readonly SentencePieceTokenizer _tokenizer;
        private readonly byte[] _text;
        private readonly MinHeap<Candidate, HighestScoreFirst> _queue = new();
        private readonly Dictionary<byte[], int[]> _wordTokens = new(Utf8KeyComparer.Instance);
        private readonly List<int> _wordOutput = [];

        public MergeSession(SentencePieceTokenizer tokenizer, byte[] text)
        {
            _tokenizer = tokenizer;
            _text = text;
            Symbols.Reset(text);
        }

        public SymbolChain Symbols { get; } = new();

        public void MergeAll(List<int> output)
        {
            if (Symbols.Count > 0) Merge(0, Symbols.Count, output);
        }

        /// <summary>Merges symbols <paramref name="first"/> to <paramref name="end"/> (exclusive) on their own.</summary>
        public void MergeWord(int first, int end, List<int> output)
        {
            var bytes = _text.AsSpan(Symbols[first].Start, Symbols[end - 1].Start + Symbols[end - 1].Length - Symbols[first].Start);
            var lookup = _wordTokens.GetAlternateLookup<ReadOnlySpan<byte>>();
            if (lookup.TryGetValue(bytes, out var known))
            {
                output.AddRange(known);
                return;
            }
            _wordOutput.Clear();
            Merge(first, end, _wordOutput);
            lookup[bytes] = _wordOutput.ToArray();
            output.AddRange(CollectionsMarshal.AsSpan(_wordOutput));
        }

        private void Merge(int first, int end, List<int> output)
        {
            Symbols[first].Prev = -1;
            Symbols[end - 1].Next = -1;
            _queue.Clear();
            for (var i = first + 1; i < end; i++) Consider(i - 1, i);
            while (_queue.TryPop(out var candidate))
            {
                ref var left = ref Symbols[candidate.Left];
                var rightLength = Symbols[candidate.Right].Length;
                // Skip pairs one of whose symbols has been merged since they were queued.
                if (left.Length == 0 || rightLength == 0 || left.Length + rightLength != candidate.Length) continue;
                Symbols.Merge(candidate.Left, candidate.Right);
                Consider(left.Prev, candidate.Left);
                Consider(candidate.Left, left.Next);
            }
            for (var i = first; i >= 0; i = Symbols[i].Next)
            {
                var piece = _text.AsSpan(Symbols[i].Start, Symbols[i].Length);
                if (_tokenizer.Vocabulary.TryGetId(piece, out var id)) output.Add(id);
                else foreach (var b in piece) output.Add(_tokenizer.ByteToken(b));
            }
        }

        private void Consider(int left, int right)
        {
            if (left < 0 || right < 0) return;
            var start = Symbols[left].Start;
            var length = Symbols[left].Length + Symbols[right].Length;
            if (_tokenizer.Vocabulary.TryGetId(_text.AsSpan(start, length), out var id))
                _queue.Push(new Candidate(_tokenizer.Vocabulary.Score(id), left, right, length));
        }
    }

    /// <summary>A queued pair of symbols <see cref="Left"/> and <see cref="Right"/>, together <see cref="Length"/> bytes
    /// long when queued, that would form a piece of <see cref="Score"/>.</summary>
    private readonly record struct Candidate(float Score, int Left, int Right, int Length);

    private readonly struct HighestScoreFirst : IComparer<Candidate>
    {
        public int Compare(Candidate x, Candidate y) =>
            x.Score > y.Score ? -1 : x.Score < y.Score ? 1 : x.Left.CompareTo(y.Left);
    }
}
