using System.Runtime.InteropServices;
using KQuant.Gguf;

namespace KQuant.Model.Tokenizers;

/// <summary>tokenizer.ggml.model = "gpt2": byte-level BPE as llama.cpp runs it (llm_tokenizer_bpe). The pre-tokenizer
/// named by tokenizer.ggml.pre splits the text into words; each word's UTF-8 bytes are written in GPT-2's byte-level
/// alphabet, and, starting from single characters, the adjacent pair with the lowest merge rank is merged, leftmost
/// first on ties, until no pair has a merge. A symbol that is not a token falls back to its single-byte tokens, where
/// there are any. tokenizer.ggml.model = "gemma4" is the SentencePiece-style variant (see
/// <see cref="PreTokenizerDefinition.ByteLevel"/>).</summary>
internal sealed class BytePairTokenizer : Tokenizer
{
    public const string ModelName = "gpt2";
    public const string Gemma4ModelName = "gemma4";

    private readonly PreTokenizerDefinition _preTokenizer;
    private readonly BpeMergeTable _merges;
    private readonly int[] _byteSymbolIds; // per byte, the merge-table id of its byte-level character, or -1
    private readonly int[] _byteTokens;    // per byte, its "<0xXX>" token or -1 (for UTF-8 merging)

    private BytePairTokenizer(TokenizerSettings settings, PreTokenizerDefinition preTokenizer, BpeMergeTable merges)
        : base(settings)
    {
        _preTokenizer = preTokenizer;
        _merges = merges;
        _byteSymbolIds = Enumerable.Range(0, 256)
            .Select(b => merges.TryGetStringId(ByteLevelAlphabet.Utf8Of((byte)b), out var id) ? id : -1)
            .ToArray();
        _byteTokens = Enumerable.Range(0, 256).Select(b => Vocabulary.FindByteToken((byte)b)).ToArray();
    }

    /// <summary>A "gpt2" tokenizer, or with <paramref name="model"/> "gemma4", Gemma 4's.</summary>
    public static BytePairTokenizer Load(IGgufMetadataSource metadata, string path, string model)
    {
        var gemma4 = model == Gemma4ModelName;
        var name = gemma4 ? PreTokenizerCatalog.Gemma4Name : metadata.GetString(PreTokenizerCatalog.PreKey);
        if (string.IsNullOrEmpty(name)) name = PreTokenizerCatalog.DefaultName;
        var preTokenizer = PreTokenizerCatalog.Find(name)
            ?? throw new TokenizerNotSupportedException(path, PreTokenizerCatalog.PreKey, name, PreTokenizerCatalog.Names);
        // llama.cpp's defaults: for "gpt2" vocabularies BOS and EOS 11 (GPT-2's own ids are in the metadata); for
        // "gemma4" neither.
        var defaults = new TypeDefaults(Bos: preTokenizer.HasDefaultBos && !gemma4 ? 11 : null, Eos: gemma4 ? null : 11,
            AddBos: preTokenizer.AddBos, AddSpacePrefix: false, CleanSpaces: preTokenizer.CleanSpaces);
        var settings = ReadSettings(metadata, path, model, name, defaults);
        if (preTokenizer.AlwaysAddBos) settings = settings with { AddBos = true };
        return new BytePairTokenizer(settings, preTokenizer, BpeMergeTable.Load(metadata, settings.Vocabulary, path));
    }

    private protected override void EncodeText(ReadOnlySpan<byte> text, bool atStartOrAfterSpecial, List<int> output)
    {
        if (_preTokenizer.SpacesAsMarks) text = SpaceMarks.Escape(text, addPrefix: false);
        var codepoints = new List<int>(text.Length);
        LenientUtf8.Decode(text, codepoints);
        var words = _preTokenizer.Split(new SplitText(codepoints));

        var session = new MergeSession(this);
        var word = new byte[64];
        var next = 0;
        foreach (var length in words)
        {
            // The word's UTF-8 (at most 4 bytes a codepoint).
            if (word.Length < 4 * length) word = new byte[8 * length];
            var size = 0;
            for (var i = next; i < next + length; i++) size += LenientUtf8.Encode(codepoints[i], word.AsSpan(size));
            session.EncodeWord(word.AsSpan(0, size), output);
            next += length;
        }
    }

    private protected override byte[] NormalTokenPiece(ReadOnlySpan<byte> text)
    {
        if (_preTokenizer.SpacesAsMarks) return SpaceMarks.Unescape(text);
        // Back from the byte-level alphabet, codepoint by codepoint; one outside it is written as llama.cpp writes it.
        var codepoints = new List<int>();
        LenientUtf8.Decode(text, codepoints);
        var bytes = new List<byte>(codepoints.Count);
        foreach (var cp in codepoints)
        {
            if (ByteLevelAlphabet.TryGetByte(cp, out var b))
            {
                bytes.Add(b);
                continue;
            }
            var utf8 = new List<byte>();
            LenientUtf8.Encode(cp, utf8);
            bytes.AddRange(System.Text.Encoding.ASCII.GetBytes("[UNK_BYTE_0x" + Convert.ToHexStringLower(utf8.ToArray())));
            bytes.AddRange(text);
            bytes.Add((byte)']');
        }
        return bytes.ToArray();
    }

    /// <summary>Merges the words of one text, reusing its buffers from word to word, and the tokens of a word seen
    /// before (a word's tokens depend on nothing else).</summary>
    private sealed class MergeSession(BytePairTokenizer tokenizer)
    {
        private readonly SymbolChain _symbols = new();
        private readonly MinHeap<Candidate, LowestRankFirst> _queue = new();
        private readonly Dictionary<byte[], int[]>.AlternateLookup<ReadOnlySpan<byte>> _wordTokens =
            new Dictionary<byte[], int[]>(Utf8KeyComparer.Instance).GetAlternateLookup<ReadOnlySpan<byte>>();
        private readonly List<int> _wordOutput = [];
        private byte[] _encoded = new byte[128];

        /// <summary>Appends the tokens of a word given in UTF-8.</summary>
        public void EncodeWord(ReadOnlySpan<byte> utf8, List<int> output)
        {
            if (_wordTokens.TryGetValue(utf8, out var known))
            {
                output.AddRange(known);
                return;
            }
            _wordOutput.Clear();
            Merge(utf8, _wordOutput);
            _wordTokens[utf8] = _wordOutput.ToArray();
            output.AddRange(CollectionsMarshal.AsSpan(_wordOutput));
        }

        // Each byte written as the UTF-8 of its byte-level codepoint (1 or 2 bytes).
        private ReadOnlySpan<byte> ToByteLevel(ReadOnlySpan<byte> utf8)
        {
            if (_encoded.Length < 2 * utf8.Length) _encoded = new byte[4 * utf8.Length];
            var size = 0;
            foreach (var b in utf8)
            {
                var encoded = ByteLevelAlphabet.Utf8Of(b);
                encoded.CopyTo(_encoded.AsSpan(size));
                size += encoded.Length;
            }
            return _encoded.AsSpan(0, size);
        }

        private void Merge(ReadOnlySpan<byte> utf8, List<int> output)
        {
            var vocabulary = tokenizer.Vocabulary;
            var pre = tokenizer._preTokenizer;
            var word = pre.ByteLevel ? ToByteLevel(utf8) : utf8;
            if ((pre.IgnoreMerges || (pre.NewlineWordsWhole && !word.ContainsAnyExcept((byte)'\n')))
                && vocabulary.TryGetId(word, out var whole))
            {
                output.Add(whole);
                return;
            }

            // One symbol per character; byte-level characters stand for one byte of the UTF-8 each.
            _symbols.Reset(word);
            for (var i = 0; i < _symbols.Count; i++)
            {
                ref var symbol = ref _symbols[i];
                symbol.Id = pre.ByteLevel ? tokenizer._byteSymbolIds[utf8[i]]
                    : tokenizer._merges.TryGetStringId(word.Slice(symbol.Start, symbol.Length), out var id) ? id : -1;
            }
            _queue.Clear();
            for (var i = 1; i < _symbols.Count; i++) Consider(i - 1, i);
            while (_queue.TryPop(out var candidate))
            {
                ref var left = ref _symbols[candidate.Left];
                ref var right = ref _symbols[candidate.Right];
                // Skip pairs one of whose symbols has changed since they were queued.
                if (left.Length == 0 || right.Length == 0 || left.Id != candidate.LeftId || right.Id != candidate.RightId) continue;
                _symbols.Merge(candidate.Left, candidate.Right);
                left.Id = candidate.Result;
                Consider(left.Prev, candidate.Left);
                Consider(candidate.Left, left.Next);
            }

            for (var i = 0; i >= 0 && _symbols.Count > 0; i = _symbols[i].Next)
            {
                ref var symbol = ref _symbols[i];
                if (vocabulary.IsValid(symbol.Id))
                {
                    output.Add(symbol.Id);
                    continue;
                }
                // Not a token: each byte becomes its byte token, which for byte-level vocabularies is the byte itself as
                // a one-byte token; bytes without one are dropped.
                foreach (var b in word.Slice(symbol.Start, symbol.Length))
                {
                    var id = pre.ByteLevel ? (vocabulary.TryGetId([b], out var single) ? single : -1) : tokenizer._byteTokens[b];
                    if (id >= 0) output.Add(id);
                }
            }
        }

        private void Consider(int left, int right)
        {
            if (left < 0 || right < 0) return;
            var leftId = _symbols[left].Id;
            var rightId = _symbols[right].Id;
            if (leftId < 0 || rightId < 0 || !tokenizer._merges.TryGetMerge(leftId, rightId, out var rank, out var result)) return;
            _queue.Push(new Candidate(rank, left, right, leftId, rightId, result));
        }
    }

    /// <summary>A queued merge of rank <see cref="Rank"/> of symbols <see cref="Left"/> and <see cref="Right"/>, which
    /// were <see cref="LeftId"/> and <see cref="RightId"/> when queued, into <see cref="Result"/>.</summary>
    private readonly record struct Candidate(int Rank, int Left, int Right, int LeftId, int RightId, int Result);

    private readonly struct LowestRankFirst : IComparer<Candidate>
    {
        public int Compare(Candidate x, Candidate y) => x.Rank != y.Rank ? x.Rank.CompareTo(y.Rank) : x.Left.CompareTo(y.Left);
    }
}
