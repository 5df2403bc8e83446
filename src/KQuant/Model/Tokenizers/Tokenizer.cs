using System.Text;
using KQuant.Gguf;

namespace KQuant.Model.Tokenizers;

/// <summary>A model's tokenizer, read from a GGUF file's tokenizer.ggml.* metadata, that turns text into the token ids
/// llama.cpp v0.5.0's llama_tokenize gives and back into text as its llama_detokenize does. Two kinds are supported:
/// tokenizer.ggml.model = "llama" (SentencePiece-style BPE over scored pieces with byte fallback) and "gpt2" (byte-level
/// BPE over ranked merges, after the pre-tokenizer that tokenizer.ggml.pre names). Instances are immutable and may be
/// used from several threads at once.</summary>
public abstract class Tokenizer
{
    public const string ModelKey = "tokenizer.ggml.model";
    private const string AddBosKey = "tokenizer.ggml.add_bos_token";
    private const string AddEosKey = "tokenizer.ggml.add_eos_token";
    private const string AddSpacePrefixKey = "tokenizer.ggml.add_space_prefix";

    private static readonly string[] SupportedModels = [SentencePieceTokenizer.ModelName, BytePairTokenizer.ModelName];

    private readonly SpecialTokens _special;
    private readonly bool _cleanSpaces;
    private readonly Lazy<byte[][]> _pieces;

    private protected Tokenizer(TokenizerSettings settings)
    {
        SourcePath = settings.Path;
        Model = settings.Model;
        PreTokenizer = settings.PreTokenizer;
        Vocabulary = settings.Vocabulary;
        _special = settings.Special;
        AddBos = settings.AddBos;
        AddEos = settings.AddEos;
        AddSpacePrefix = settings.AddSpacePrefix;
        _cleanSpaces = settings.CleanSpaces;
        _pieces = new Lazy<byte[][]>(() => Enumerable.Range(0, VocabSize).Select(RenderPiece).ToArray());
    }

    /// <summary>The file the tokenizer was read from.</summary>
    public string SourcePath { get; }

    /// <summary>tokenizer.ggml.model: "llama" or "gpt2".</summary>
    public string Model { get; }

    /// <summary>tokenizer.ggml.pre of a "gpt2" tokenizer ("default" when the file names none); null for "llama".</summary>
    public string? PreTokenizer { get; }

    public int VocabSize => Vocabulary.Count;

    /// <summary>The beginning-of-sequence token, if the vocabulary has one.</summary>
    public int? Bos => _special.Bos;

    /// <summary>The end-of-sequence token, if the vocabulary has one.</summary>
    public int? Eos => _special.Eos;

    /// <summary>Whether <see cref="Encode"/> with addSpecial puts <see cref="Bos"/> first (tokenizer.ggml.add_bos_token,
    /// or llama.cpp's default for the tokenizer: true for "llama" and Llama-3-style "gpt2" tokenizers).</summary>
    public bool AddBos { get; }

    /// <summary>Whether <see cref="Encode"/> with addSpecial puts <see cref="Eos"/> last (tokenizer.ggml.add_eos_token).</summary>
    public bool AddEos { get; }

    /// <summary>Whether text gets a leading space before SentencePiece tokenization, at the start and after each special
    /// token (tokenizer.ggml.add_space_prefix, default true for "llama"); decoding then drops the first space.</summary>
    public bool AddSpacePrefix { get; }

    internal TokenVocabulary Vocabulary { get; }

    /// <summary>Control, user-defined and unknown tokens in the order they are matched in text.</summary>
    internal IReadOnlyList<int> SpecialTokenMatchOrder => _special.MatchOrder;

    /// <summary>The tokenizer of an open GGUF file.</summary>
    public static Tokenizer FromGguf(GgufFile file) => FromGguf(file, file.Path);

    /// <summary>The tokenizer described by <paramref name="metadata"/>; <paramref name="path"/> names the file in
    /// errors. Throws <see cref="TokenizerNotSupportedException"/> for a tokenizer type or pre-tokenizer KQuant cannot
    /// run, and <see cref="InvalidDataException"/> for malformed tokenizer metadata.</summary>
    public static Tokenizer FromGguf(IGgufMetadataSource metadata, string path)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        ArgumentNullException.ThrowIfNull(path);
        var model = metadata.GetString(ModelKey);
        return model switch
        {
            SentencePieceTokenizer.ModelName => SentencePieceTokenizer.Load(metadata, path),
            BytePairTokenizer.ModelName => BytePairTokenizer.Load(metadata, path),
            _ => throw new TokenizerNotSupportedException(path, ModelKey, model, SupportedModels),
        };
    }

    /// <summary>Token ids of <paramref name="text"/>, which is encoded as UTF-8 first (an unpaired surrogate becomes
    /// U+FFFD). See <see cref="EncodeUtf8"/>.</summary>
    public int[] Encode(string text, bool addSpecial = true, bool parseSpecial = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        return EncodeUtf8(Encoding.UTF8.GetBytes(text), addSpecial, parseSpecial);
    }

    /// <summary>Token ids of UTF-8 <paramref name="text"/>, as llama_tokenize gives them (invalid UTF-8 included).
    /// With <paramref name="addSpecial"/>, BOS and EOS are added as <see cref="AddBos"/> and <see cref="AddEos"/> say.
    /// With <paramref name="parseSpecial"/>, the texts of control tokens (e.g. "&lt;s&gt;") become those tokens;
    /// user-defined tokens always do.</summary>
    public int[] EncodeUtf8(ReadOnlySpan<byte> text, bool addSpecial = true, bool parseSpecial = false)
    {
        var output = new List<int>(text.Length / 3 + 2);
        if (addSpecial && AddBos) output.Add(Bos ?? throw MissingSpecialToken("BOS"));
        var atStartOrAfterSpecial = true;
        foreach (var fragment in SpecialTokenSplitter.Split(text, Vocabulary, _special.MatchOrder, parseSpecial))
        {
            if (fragment.IsRawText)
            {
                EncodeText(text.Slice(fragment.Start, fragment.Length), atStartOrAfterSpecial, output);
                atStartOrAfterSpecial = false;
            }
            else
            {
                output.Add(fragment.Token);
                atStartOrAfterSpecial = true;
            }
        }
        if (addSpecial && AddEos) output.Add(Eos ?? throw MissingSpecialToken("EOS"));
        return output.ToArray();
    }

    /// <summary>The token's text as the vocabulary stores it (for "gpt2" in the byte-level alphabet, e.g. "Ġthe").</summary>
    public string TokenText(int id) => Encoding.UTF8.GetString(Vocabulary.Text(CheckId(id)));

    public TokenAttributes GetAttributes(int id) => Vocabulary.Attributes(CheckId(id));

    /// <summary>Whether generating <paramref name="id"/> ends generation (EOS, end-of-turn and similar tokens), as
    /// llama_vocab_is_eog says.</summary>
    public bool IsEndOfGeneration(int id) => _special.EndOfGeneration.Contains(id);

    /// <summary>The bytes a token stands for (llama_token_to_piece): normal tokens with spaces restored, byte tokens as
    /// their byte. Control and unknown tokens give their text only with <paramref name="renderSpecial"/>.</summary>
    public byte[] TokenPiece(int id, bool renderSpecial = true) => Piece(CheckId(id), renderSpecial).ToArray();

    /// <summary>The text of <paramref name="ids"/> as llama_detokenize gives it. <paramref name="removeSpecial"/> drops a
    /// leading BOS and trailing EOS where the tokenizer adds them; <paramref name="renderSpecial"/> writes control tokens'
    /// text. The leading space of SentencePiece text is dropped, unless a BOS was removed before it.</summary>
    public byte[] DecodeBytes(ReadOnlySpan<int> ids, bool removeSpecial = false, bool renderSpecial = false)
    {
        var stripLeadingSpace = AddSpacePrefix;
        if (removeSpecial && AddBos && !ids.IsEmpty && ids[0] == Bos)
        {
            stripLeadingSpace = false;
            ids = ids[1..];
        }
        if (removeSpecial && AddEos && !ids.IsEmpty && ids[^1] == Eos) ids = ids[..^1];

        var text = new List<byte>(ids.Length * 4);
        foreach (var id in ids)
        {
            var piece = Piece(CheckId(id), renderSpecial);
            if (stripLeadingSpace && !piece.IsEmpty && piece[0] == (byte)' ') piece = piece[1..];
            stripLeadingSpace = false;
            text.AddRange(piece);
        }
        var bytes = text.ToArray();
        return _cleanSpaces ? SpaceCleanup.Apply(bytes) : bytes;
    }

    /// <summary><see cref="DecodeBytes"/> as a string; bytes that are not valid UTF-8 (a character split across
    /// tokens) become U+FFFD.</summary>
    public string Decode(ReadOnlySpan<int> ids, bool removeSpecial = false, bool renderSpecial = false) =>
        Encoding.UTF8.GetString(DecodeBytes(ids, removeSpecial, renderSpecial));

    /// <summary>Appends the tokens of raw text (no special tokens in it) to <paramref name="output"/>.
    /// <paramref name="atStartOrAfterSpecial"/> says whether the text starts the input or follows a special token.</summary>
    private protected abstract void EncodeText(ReadOnlySpan<byte> text, bool atStartOrAfterSpecial, List<int> output);

    /// <summary>The bytes a normal token's text stands for.</summary>
    private protected abstract byte[] NormalTokenPiece(ReadOnlySpan<byte> text);

    private ReadOnlySpan<byte> Piece(int id, bool renderSpecial) =>
        !renderSpecial && (Vocabulary.Attributes(id) & (TokenAttributes.Control | TokenAttributes.Unknown)) != 0 ? [] : _pieces.Value[id];

    // What llama.cpp caches per token (token_to_piece with special = true).
    private byte[] RenderPiece(int id)
    {
        var attributes = Vocabulary.Attributes(id);
        var text = Vocabulary.Text(id);
        if ((attributes & (TokenAttributes.Control | TokenAttributes.Unknown | TokenAttributes.UserDefined)) != 0) return text.ToArray();
        if ((attributes & TokenAttributes.Normal) != 0) return NormalTokenPiece(text);
        if ((attributes & TokenAttributes.Byte) != 0) return [ByteTokenValue(text)];
        return []; // unused and undefined tokens render as nothing
    }

    /// <summary>The byte of a byte token "&lt;0xXX&gt;": the hex digits at offset 3, read as C's strtol reads them.</summary>
    private protected static byte ByteTokenValue(ReadOnlySpan<byte> text)
    {
        var value = 0;
        for (var i = 3; i < Math.Min(text.Length, 5) && HexDigit(text[i]) is var digit && digit >= 0; i++) value = value * 16 + digit;
        return (byte)value;
    }

    private static int HexDigit(byte c) => c switch
    {
        >= (byte)'0' and <= (byte)'9' => c - '0',
        >= (byte)'a' and <= (byte)'f' => c - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => c - 'A' + 10,
        _ => -1,
    };

    private int CheckId(int id) =>
        Vocabulary.IsValid(id) ? id : throw new ArgumentOutOfRangeException(nameof(id), id, $"not a token id of {SourcePath} ({VocabSize} tokens)");

    private InvalidOperationException MissingSpecialToken(string which) =>
        new($"{SourcePath}: the tokenizer is set to add a {which} token but its vocabulary has none");

    /// <summary>What a tokenizer type defaults to when the metadata does not say (llama.cpp's per-type defaults).</summary>
    private protected sealed record TypeDefaults(int? Bos, int? Eos, int? Unknown, bool AddBos, bool AddSpacePrefix, bool CleanSpaces);

    private protected sealed record TokenizerSettings(
        string Path, string Model, string? PreTokenizer, TokenVocabulary Vocabulary, SpecialTokens Special,
        bool AddBos, bool AddEos, bool AddSpacePrefix, bool CleanSpaces);

    /// <summary>Reads the vocabulary and the settings common to all tokenizer types; the metadata overrides
    /// <paramref name="defaults"/>.</summary>
    private protected static TokenizerSettings ReadSettings(IGgufMetadataSource metadata, string path, string model, string? preTokenizer, TypeDefaults defaults)
    {
        var vocabulary = TokenVocabulary.Load(metadata, path);
        var special = SpecialTokens.Settle(vocabulary, metadata, (defaults.Bos, defaults.Eos, defaults.Unknown));
        return new TokenizerSettings(path, model, preTokenizer, vocabulary, special,
            AddBos: metadata.GetBool(AddBosKey) ?? defaults.AddBos,
            AddEos: metadata.GetBool(AddEosKey) ?? false,
            AddSpacePrefix: metadata.GetBool(AddSpacePrefixKey) ?? defaults.AddSpacePrefix,
            CleanSpaces: defaults.CleanSpaces);
    }
}
