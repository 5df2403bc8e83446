using KQuant.Gguf;

namespace KQuant.Model.Tokenizers;

/// <summary>tokenizer.ggml.model = "llama": SentencePiece's BPE as llama.cpp runs it (llm_tokenizer_spm). Spaces become
/// '▁' (U+2581) and the text gets a leading one; then, starting from single characters, the adjacent pair whose
/// concatenation is the vocabulary piece with the highest score is merged, leftmost first on ties, until no pair forms a
/// piece. A character left without a piece is written as byte tokens "&lt;0xXX&gt;".</summary>
internal sealed class SentencePieceTokenizer : Tokenizer
{
    public const string ModelName = "llama";

    private static readonly byte[] SpaceMark = "▁"u8.ToArray();

    // Defaults of llama.cpp for "llama" vocabularies: <unk> 0, <s> 1, </s> 2, BOS added, a space prefix.
    private static readonly TypeDefaults Defaults = new(Bos: 1, Eos: 2, Unknown: 0, AddBos: true, AddSpacePrefix: true, CleanSpaces: false);

    private readonly int[] _byteTokens; // per byte value, its fallback token or -1

    private SentencePieceTokenizer(TokenizerSettings settings)
        : base(settings)
    {
        _byteTokens = new int[256];
        Span<byte> single = stackalloc byte[1];
        for (var b = 0; b < 256; b++)
        {
            // "<0xXX>", or else the byte itself as a one-byte piece
            single[0] = (byte)b;
            _byteTokens[b] = Vocabulary.TryGetId(System.Text.Encoding.ASCII.GetBytes($"<0x{b:X2}>"), out var id) ? id
                : Vocabulary.TryGetId(single, out id) ? id : -1;
        }
    }

    public static SentencePieceTokenizer Load(IGgufMetadataSource metadata, string path) =>
        new(ReadSettings(metadata, path, ModelName, preTokenizer: null, Defaults));

    private protected override void EncodeText(ReadOnlySpan<byte> text, bool atStartOrAfterSpecial, List<int> output)
    {
        var escaped = EscapeSpaces(text, AddSpacePrefix && atStartOrAfterSpecial);
        var symbols = new SymbolChain();
        symbols.Reset(escaped);
        if (symbols.Count == 0) return;

        var queue = new PriorityQueue<Pair, (float Score, int Left)>(symbols.Count, HighestScoreFirst.Instance);
        void Consider(int left, int right)
        {
            if (left < 0 || right < 0) return;
            ref var l = ref symbols[left];
            var length = l.Length + symbols[right].Length;
            if (Vocabulary.TryGetId(escaped.AsSpan(l.Start, length), out var id))
                queue.Enqueue(new Pair(left, right, length), (Vocabulary.Score(id), left));
        }

        for (var i = 1; i < symbols.Count; i++) Consider(i - 1, i);
        while (queue.TryDequeue(out var pair, out _))
        {
            ref var left = ref symbols[pair.Left];
            var rightLength = symbols[pair.Right].Length;
            // Skip pairs one of whose symbols has been merged since they were queued.
            if (left.Length == 0 || rightLength == 0 || left.Length + rightLength != pair.Length) continue;
            symbols.Merge(pair.Left, pair.Right);
            Consider(left.Prev, pair.Left);
            Consider(pair.Left, left.Next);
        }

        for (var i = 0; i >= 0; i = symbols[i].Next)
        {
            var piece = escaped.AsSpan(symbols[i].Start, symbols[i].Length);
            if (Vocabulary.TryGetId(piece, out var id)) output.Add(id);
            else foreach (var b in piece) output.Add(ByteToken(b));
        }
    }

    private protected override byte[] NormalTokenPiece(ReadOnlySpan<byte> text) => UnescapeSpaces(text);

    private int ByteToken(byte value) =>
        _byteTokens[value] >= 0 ? _byteTokens[value]
            : throw new InvalidOperationException($"{SourcePath}: the vocabulary has no token for byte 0x{value:X2} (\"<0x{value:X2}>\")");

    private static byte[] EscapeSpaces(ReadOnlySpan<byte> text, bool addPrefix)
    {
        var escaped = new byte[(addPrefix ? SpaceMark.Length : 0) + text.Length + text.Count((byte)' ') * (SpaceMark.Length - 1)];
        var at = 0;
        if (addPrefix) at += Write(SpaceMark, escaped, at);
        foreach (var b in text)
        {
            if (b == ' ') at += Write(SpaceMark, escaped, at);
            else escaped[at++] = b;
        }
        return escaped;
    }

    internal static byte[] UnescapeSpaces(ReadOnlySpan<byte> text)
    {
        var result = new List<byte>(text.Length);
        for (var i = 0; i < text.Length;)
        {
            if (text[i..].StartsWith(SpaceMark))
            {
                result.Add((byte)' ');
                i += SpaceMark.Length;
            }
            else result.Add(text[i++]);
        }
        return result.ToArray();
    }

    private static int Write(ReadOnlySpan<byte> source, Span<byte> destination, int at)
    {
        source.CopyTo(destination[at..]);
        return source.Length;
    }

    /// <summary>A queued candidate: symbols <see cref="Left"/> and <see cref="Right"/>, which together were
    /// <see cref="Length"/> bytes long when queued.</summary>
    private readonly record struct Pair(int Left, int Right, int Length);

    private sealed class HighestScoreFirst : IComparer<(float Score, int Left)>
    {
        public static readonly HighestScoreFirst Instance = new();

        public int Compare((float Score, int Left) x, (float Score, int Left) y) =>
            x.Score > y.Score ? -1 : x.Score < y.Score ? 1 : x.Left.CompareTo(y.Left);
    }
}
