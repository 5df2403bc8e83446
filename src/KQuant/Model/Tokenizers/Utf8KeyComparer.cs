using System.Buffers.Binary;

namespace KQuant.Model.Tokenizers;

/// <summary>Compares UTF-8 keys by content, and lets a dictionary keyed by byte[] be searched with a span of the text
/// being tokenized, so lookups allocate nothing.</summary>
internal sealed class Utf8KeyComparer : IEqualityComparer<byte[]>, IAlternateEqualityComparer<ReadOnlySpan<byte>, byte[]>
{
    public static readonly Utf8KeyComparer Instance = new();

    // Varies per process, so that no fixed set of texts collides.
    private static readonly ulong Seed = (ulong)Random.Shared.NextInt64();

    public bool Equals(byte[]? x, byte[]? y) => ReferenceEquals(x, y) || (x is not null && y is not null && x.AsSpan().SequenceEqual(y));

    public int GetHashCode(byte[] key) => GetHashCode(key.AsSpan());

    public bool Equals(ReadOnlySpan<byte> alternate, byte[] other) => alternate.SequenceEqual(other);

    // Keys are short (tokens, pairs of symbols): eight bytes at a time, multiplied and folded, is plenty and fast.
    public int GetHashCode(ReadOnlySpan<byte> alternate)
    {
        const ulong multiplier = 0x9E3779B97F4A7C15;
        var hash = ((ulong)alternate.Length ^ Seed) * multiplier;
        while (alternate.Length >= 8)
        {
            hash = (hash ^ BinaryPrimitives.ReadUInt64LittleEndian(alternate)) * multiplier;
            hash ^= hash >> 29;
            alternate = alternate[8..];
        }
        ulong tail = 0;
        for (var i = 0; i < alternate.Length; i++) tail |= (ulong)alternate[i] << (8 * i);
        hash = (hash ^ tail) * multiplier;
        return (int)(hash ^ (hash >> 32));
    }

    public byte[] Create(ReadOnlySpan<byte> alternate) => alternate.ToArray();
}
