using KQuant.Gguf;

namespace KQuant.Model.Tokenizers;

/// <summary>tokenizer.ggml.merges as a table from a pair of symbol ids to the merge's rank and result. Every string a
/// merge mentions gets an id: a token's id when the string is a token, else one past the vocabulary, so merging works
/// on ids while meaning exactly what llama.cpp's lookup by pair of strings means.</summary>
internal sealed class BpeMergeTable
{
    public const string MergesKey = "tokenizer.ggml.merges";

    private readonly TokenVocabulary _vocabulary;
    private readonly Dictionary<byte[], int> _otherStrings = new(Utf8KeyComparer.Instance);
    private readonly Dictionary<byte[], int>.AlternateLookup<ReadOnlySpan<byte>> _otherStringsBySpan;
    private readonly Dictionary<long, (int Rank, int Result)> _merges = [];

    private BpeMergeTable(TokenVocabulary vocabulary)
    {
        _vocabulary = vocabulary;
        _otherStringsBySpan = _otherStrings.GetAlternateLookup<ReadOnlySpan<byte>>();
    }

    /// <summary>Reads the merges, "left right" per entry (split at the first space after the first byte); the first
    /// entry for a pair sets its rank, its index.</summary>
    public static BpeMergeTable Load(IGgufMetadataSource metadata, TokenVocabulary vocabulary, string path)
    {
        var merges = metadata.GetArray(MergesKey) ?? throw new InvalidDataException($"{path}: the tokenizer has no {MergesKey}");
        if (merges.ElementType != GgufValueType.String)
            throw new InvalidDataException($"{path}: {MergesKey} holds {GgufValueTypes.Name(merges.ElementType)}, not strings");
        var table = new BpeMergeTable(vocabulary);
        var joined = new byte[256];
        for (var rank = 0; rank < merges.Count; rank++)
        {
            var entry = merges.GetUtf8(rank);
            // An entry without a separator pairs two empty strings in llama.cpp, which no symbol ever is.
            var space = entry.Length > 1 ? entry[1..].IndexOf((byte)' ') + 1 : 0;
            if (space <= 0) continue;
            var left = entry[..space];
            var right = entry[(space + 1)..];
            if (joined.Length < entry.Length) joined = new byte[entry.Length * 2];
            left.CopyTo(joined);
            right.CopyTo(joined.AsSpan(left.Length));
            var key = Key(table.Intern(left), table.Intern(right));
            table._merges.TryAdd(key, (rank, table.Intern(joined.AsSpan(0, left.Length + right.Length))));
        }
        return table;
    }

    /// <summary>The id of a string that merges mention or that is a token.</summary>
    public bool TryGetStringId(ReadOnlySpan<byte> text, out int id) =>
        _vocabulary.TryGetId(text, out id) || _otherStringsBySpan.TryGetValue(text, out id);

    public bool TryGetMerge(int left, int right, out int rank, out int result)
    {
        var found = _merges.TryGetValue(Key(left, right), out var merge);
        (rank, result) = merge;
        return found;
    }

    private int Intern(ReadOnlySpan<byte> text)
    {
        if (TryGetStringId(text, out var id)) return id;
        id = _vocabulary.Count + _otherStrings.Count;
        _otherStringsBySpan[text] = id;
        return id;
    }

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;
}
