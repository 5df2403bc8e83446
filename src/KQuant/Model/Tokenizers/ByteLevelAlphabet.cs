namespace KQuant.Model.Tokenizers;

/// <summary>GPT-2's byte-level alphabet: every byte stands for one printable codepoint, so a byte-level BPE vocabulary
/// is text. Printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the other 68 bytes take
/// U+0100, U+0101, ... in byte order (space is 'Ġ' U+0120, newline 'Ċ' U+010A).</summary>
internal static class ByteLevelAlphabet
{
    private static readonly int[] CodepointOfByte = BuildAlphabet();
    private static readonly Dictionary<int, byte> ByteOfCodepoint =
        Enumerable.Range(0, 256).ToDictionary(b => CodepointOfByte[b], b => (byte)b);

    /// <summary>The UTF-8 form of each byte's codepoint (1 or 2 bytes).</summary>
    private static readonly byte[][] Utf8OfByte =
        CodepointOfByte.Select(cp =>
        {
            var buffer = new byte[4];
            return buffer[..LenientUtf8.Encode(cp, buffer)];
        }).ToArray();

    public static int CodepointOf(byte value) => CodepointOfByte[value];

    public static ReadOnlySpan<byte> Utf8Of(byte value) => Utf8OfByte[value];

    public static bool TryGetByte(int codepoint, out byte value) => ByteOfCodepoint.TryGetValue(codepoint, out value);

    private static int[] BuildAlphabet()
    {
        var map = new int[256];
        var next = 256;
        for (var b = 0; b < 256; b++)
        {
            var printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? b : next++;
        }
        return map;
    }
}
