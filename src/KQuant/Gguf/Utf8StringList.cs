using System.Text;

namespace KQuant.Gguf;

/// <summary>Strings kept as their UTF-8 bytes, back to back in one array. Tokenizer vocabularies hold 150k+ strings:
/// this is one object instead of 150k, parses several times faster, and keeps bytes that are not valid UTF-8 exactly
/// as the file had them. Decoding (with U+FFFD for invalid bytes) happens when a string is asked for.</summary>
internal sealed class Utf8StringList
{
    private readonly byte[] _bytes;
    private readonly int[] _ends; // string i is _bytes[_ends[i-1] .. _ends[i]]
    private string[]? _decoded;

    public Utf8StringList(byte[] bytes, int[] ends)
    {
        _bytes = bytes;
        _ends = ends;
    }

    public int Count => _ends.Length;

    public ReadOnlySpan<byte> this[int index]
    {
        get
        {
            var start = index == 0 ? 0 : _ends[index - 1];
            return _bytes.AsSpan(start, _ends[index] - start);
        }
    }

    public string Decode(int index) => _decoded is { } all ? all[index] : Encoding.UTF8.GetString(this[index]);

    /// <summary>All strings, decoded once and cached (concurrent first calls may both decode; either result is kept).</summary>
    public string[] DecodeAll()
    {
        if (_decoded is { } cached) return cached;
        var all = new string[Count];
        for (var i = 0; i < all.Length; i++) all[i] = Encoding.UTF8.GetString(this[i]);
        return _decoded = all;
    }

    /// <summary>Stores each element's bytes: <paramref name="utf8Of"/> gives them (e.g. a value's original bytes).</summary>
    public static Utf8StringList Create<T>(IReadOnlyList<T> items, Func<T, byte[]> utf8Of)
    {
        var parts = new byte[items.Count][];
        var ends = new int[items.Count];
        long total = 0;
        for (var i = 0; i < parts.Length; i++)
        {
            parts[i] = utf8Of(items[i]);
            total += parts[i].Length;
            if (total > Array.MaxLength) throw new ArgumentException("the strings add up to more than 2 GiB");
            ends[i] = (int)total;
        }
        var bytes = new byte[total];
        for (var i = 0; i < parts.Length; i++) parts[i].CopyTo(bytes, i == 0 ? 0 : ends[i - 1]);
        return new Utf8StringList(bytes, ends);
    }
}
