using KQuant.Gguf;

namespace KQuant.Model.Tokenizers;

/// <summary>tokenizer.ggml.model = "gpt2": byte-level BPE as llama.cpp runs it (llm_tokenizer_bpe). The pre-tokenizer
/// named by tokenizer.ggml.pre splits the text into words; each word's UTF-8 bytes are written in GPT-2's byte-level
/// alphabet, and, starting from single characters, the adjacent pair with the lowest merge rank is merged, leftmost
/// first on ties, until no pair has a merge. A symbol that is not a token falls back to its single-byte tokens, where
/// there are any.</summary>
internal sealed class BytePairTokenizer : Tokenizer
{
    public const string ModelName = "gpt2";

    private readonly PreTokenizerDefinition _preTokenizer;
    private readonly BpeMergeTable _merges;

    private BytePairTokenizer(TokenizerSettings settings, PreTokenizerDefinition preTokenizer, BpeMergeTable merges)
        : base(settings)
    {
        _preTokenizer = preTokenizer;
        _merges = merges;
    }

    public static BytePairTokenizer Load(IGgufMetadataSource metadata, string path)
    {
        var name = metadata.GetString(PreTokenizerCatalog.PreKey);
        if (string.IsNullOrEmpty(name)) name = PreTokenizerCatalog.DefaultName;
        var preTokenizer = PreTokenizerCatalog.Find(name)
            ?? throw new TokenizerNotSupportedException(path, PreTokenizerCatalog.PreKey, name, PreTokenizerCatalog.Names);
        // llama.cpp's defaults for "gpt2" vocabularies: BOS and EOS 11 (GPT-2's own ids are in the metadata), no unknown token.
        var defaults = new TypeDefaults(Bos: preTokenizer.HasDefaultBos ? 11 : null, Eos: 11, Unknown: null,
            AddBos: preTokenizer.AddBos, AddSpacePrefix: false, CleanSpaces: preTokenizer.CleanSpaces);
        var settings = ReadSettings(metadata, path, ModelName, name, defaults);
        return new BytePairTokenizer(settings, preTokenizer, BpeMergeTable.Load(metadata, settings.Vocabulary, path));
    }

    private protected override void EncodeText(ReadOnlySpan<byte> text, bool atStartOrAfterSpecial, List<int> output)
    {
        var codepoints = new List<int>(text.Length);
        LenientUtf8.Decode(text, codepoints);
        var words = _preTokenizer.Split(new SplitText(codepoints));

        var session = new MergeSession(this, output);
        var word = new List<byte>();
        Span<byte> utf8 = stackalloc byte[4];
        var next = 0;
        foreach (var length in words)
        {
            word.Clear();
            for (var i = next; i < next + length; i++)
            {
                foreach (var b in utf8[..LenientUtf8.Encode(codepoints[i], utf8)]) word.AddRange(ByteLevelAlphabet.Utf8Of(b));
            }
            session.EncodeWord(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(word));
            next += length;
        }
    }

    private protected override byte[] NormalTokenPiece(ReadOnlySpan<byte> text)
    {
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

    /// <summary>Merges the words of one text, reusing its buffers from word to word.</summary>
    private sealed class MergeSession(BytePairTokenizer tokenizer, List<int> output)
    {
        private readonly SymbolChain _symbols = new();
        private readonly PriorityQueue<Pair, long> _queue = new();

        public void EncodeWord(ReadOnlySpan<byte> word)
        {
            var vocabulary = tokenizer.Vocabulary;
            if (tokenizer._preTokenizer.IgnoreMerges && vocabulary.TryGetId(word, out var whole))
            {
                output.Add(whole);
                return;
            }

            _symbols.Reset(word);
            for (var i = 0; i < _symbols.Count; i++)
            {
                ref var symbol = ref _symbols[i];
                symbol.Id = tokenizer._merges.TryGetStringId(word.Slice(symbol.Start, symbol.Length), out var id) ? id : -1;
            }
            _queue.Clear();
            for (var i = 1; i < _symbols.Count; i++) Consider(i - 1, i);
            while (_queue.TryDequeue(out var pair, out _))
            {
                ref var left = ref _symbols[pair.Left];
                ref var right = ref _symbols[pair.Right];
                // Skip pairs one of whose symbols has changed since they were queued.
                if (left.Length == 0 || right.Length == 0 || left.Id != pair.LeftId || right.Id != pair.RightId) continue;
                _symbols.Merge(pair.Left, pair.Right);
                left.Id = pair.Result;
                Consider(left.Prev, pair.Left);
                Consider(pair.Left, left.Next);
            }

            for (var i = 0; i >= 0 && _symbols.Count > 0; i = _symbols[i].Next)
            {
                ref var symbol = ref _symbols[i];
                if (vocabulary.IsValid(symbol.Id))
                {
                    output.Add(symbol.Id);
                    continue;
                }
                // Not a token: each byte that is a one-byte token stands for itself; the others are dropped.
                foreach (var b in word.Slice(symbol.Start, symbol.Length))
                {
                    if (vocabulary.TryGetId([b], out var id)) output.Add(id);
                }
            }
        }

        private void Consider(int left, int right)
        {
            if (left < 0 || right < 0) return;
            var leftId = _symbols[left].Id;
            var rightId = _symbols[right].Id;
            if (leftId < 0 || rightId < 0 || !tokenizer._merges.TryGetMerge(leftId, rightId, out var rank, out var result)) return;
            _queue.Enqueue(new Pair(left, right, leftId, rightId, result), ((long)rank << 32) | (uint)left);
        }

        /// <summary>A queued merge of symbols <see cref="Left"/> and <see cref="Right"/>, which were
        /// <see cref="LeftId"/> and <see cref="RightId"/> when queued, into <see cref="Result"/>.</summary>
        private readonly record struct Pair(int Left, int Right, int LeftId, int RightId, int Result);
    }
}
