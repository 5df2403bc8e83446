using System.Text;
using KQuant.Gguf;

namespace KQuant.Model.Tokenizers;

/// <summary>The token table of a GGUF file: each token's text (UTF-8, as stored), score and attributes, and the reverse
/// lookup from text to id. Built once by <see cref="Tokenizer.FromGguf"/>; attributes are final when it returns.</summary>
internal sealed class TokenVocabulary
{
    public const string TokensKey = "tokenizer.ggml.tokens";
    public const string ScoresKey = "tokenizer.ggml.scores";
    public const string TokenTypesKey = "tokenizer.ggml.token_type";

    private readonly byte[][] _texts;
    private readonly float[] _scores;
    private readonly TokenAttributes[] _attributes;
    private readonly Dictionary<byte[], int>.AlternateLookup<ReadOnlySpan<byte>> _ids;

    private TokenVocabulary(byte[][] texts, float[] scores, TokenAttributes[] attributes, Dictionary<byte[], int> ids)
    {
        _texts = texts;
        _scores = scores;
        _attributes = attributes;
        _ids = ids.GetAlternateLookup<ReadOnlySpan<byte>>();
    }

    public int Count => _texts.Length;

    public ReadOnlySpan<byte> Text(int id) => _texts[id];

    public float Score(int id) => _scores[id];

    public TokenAttributes Attributes(int id) => _attributes[id];

    public bool IsValid(int id) => (uint)id < (uint)_texts.Length;

    public void SetAttributes(int id, TokenAttributes attributes) => _attributes[id] = attributes;

    public bool TryGetId(ReadOnlySpan<byte> text, out int id) => _ids.TryGetValue(text, out id);

    public int? FindId(string text) => TryGetId(Encoding.UTF8.GetBytes(text), out var id) ? id : null;

    /// <summary>Reads tokenizer.ggml.tokens, .scores (float32 or int32, optional) and .token_type (optional) the way
    /// llama.cpp's vocabulary loader does: an empty token is renamed "[EMPTY_id]", missing scores are 0, missing
    /// types mean normal tokens.</summary>
    public static TokenVocabulary Load(IGgufMetadataSource metadata, string path)
    {
        var tokens = metadata.GetArray(TokensKey)
            ?? throw new InvalidDataException($"{path}: the tokenizer has no {TokensKey}");
        if (tokens.ElementType != GgufValueType.String)
            throw new InvalidDataException($"{path}: {TokensKey} holds {GgufValueTypes.Name(tokens.ElementType)}, not strings");
        var count = tokens.Count;
        var scores = ReadScores(metadata, path, count);
        var types = ReadTokenTypes(metadata, path, count);

        var texts = new byte[count][];
        var attributes = new TokenAttributes[count];
        var ids = new Dictionary<byte[], int>(count, Utf8KeyComparer.Instance);
        for (var id = 0; id < count; id++)
        {
            var text = tokens.GetUtf8(id).ToArray();
            if (text.Length == 0) text = Encoding.UTF8.GetBytes($"[EMPTY_{id}]");
            // llama.cpp asserts that texts are unique and aborts otherwise; report it instead.
            if (!ids.TryAdd(text, id))
                throw new InvalidDataException($"{path}: {TokensKey} holds \"{Encoding.UTF8.GetString(text)}\" twice (ids {ids[text]} and {id})");
            texts[id] = text;
            attributes[id] = types.IsEmpty ? TokenAttributes.Normal : AttributesOfType(types[id]);
        }
        return new TokenVocabulary(texts, scores, attributes, ids);
    }

    private static float[] ReadScores(IGgufMetadataSource metadata, string path, int count)
    {
        var array = metadata.GetArray(ScoresKey);
        if (array is null) return new float[count];
        if (array.Count < count)
            throw new InvalidDataException($"{path}: {ScoresKey} has {array.Count} entries for {count} tokens");
        return array.ElementType switch
        {
            GgufValueType.Float32 => array.AsSpan<float>()[..count].ToArray(),
            GgufValueType.Int32 => array.AsSpan<int>()[..count].ToArray().Select(s => (float)s).ToArray(),
            _ => throw new InvalidDataException($"{path}: {ScoresKey} holds {GgufValueTypes.Name(array.ElementType)}, not f32 or i32"),
        };
    }

    private static ReadOnlySpan<int> ReadTokenTypes(IGgufMetadataSource metadata, string path, int count)
    {
        var array = metadata.GetArray(TokenTypesKey);
        if (array is null) return [];
        if (array.ElementType != GgufValueType.Int32)
            throw new InvalidDataException($"{path}: {TokenTypesKey} holds {GgufValueTypes.Name(array.ElementType)}, not i32");
        if (array.Count < count)
            throw new InvalidDataException($"{path}: {TokenTypesKey} has {array.Count} entries for {count} tokens");
        return array.AsSpan<int>();
    }

    // tokenizer.ggml.token_type holds llama_token_type values.
    private static TokenAttributes AttributesOfType(int type) => type switch
    {
        1 => TokenAttributes.Normal,
        2 => TokenAttributes.Unknown,
        3 => TokenAttributes.Control,
        4 => TokenAttributes.UserDefined,
        5 => TokenAttributes.Unused,
        6 => TokenAttributes.Byte,
        _ => TokenAttributes.Undefined,
    };
}
