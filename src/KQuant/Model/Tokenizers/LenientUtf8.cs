namespace KQuant.Model.Tokenizers;

/// <summary>UTF-8 as llama.cpp's tokenizers read it. They do not validate: a lead byte says how long a character is,
/// overlong forms and surrogates decode like any other codepoint, and only a broken sequence becomes U+FFFD (one byte
/// at a time). Reproducing that is what makes token ids agree on text that is not clean UTF-8.</summary>
internal static class LenientUtf8
{
    public const int ReplacementCharacter = 0xFFFD;

    /// <summary>The length a lead byte announces (llama.cpp's unicode_len_utf8): 1 for ASCII and for stray continuation
    /// bytes, 2 for 0xC0-0xDF, 3 for 0xE0-0xEF, 4 for 0xF0-0xFF.</summary>
    public static int SequenceLength(byte lead) => lead switch
    {
        < 0xC0 => 1,
        < 0xE0 => 2,
        < 0xF0 => 3,
        _ => 4,
    };

    /// <summary>Appends the codepoints of <paramref name="utf8"/> to <paramref name="codepoints"/>.</summary>
    public static void Decode(ReadOnlySpan<byte> utf8, List<int> codepoints)
    {
        var offset = 0;
        while (offset < utf8.Length)
        {
            codepoints.Add(DecodeOne(utf8[offset..], out var consumed));
            offset += consumed;
        }
    }

    // A sequence is accepted when its continuation bytes are 10xxxxxx, whatever value it decodes to, except values past
    // U+10FFFF (lead bytes F5-F7): llama.cpp cannot encode those back and aborts, so they read as U+FFFD here.
    private static int DecodeOne(ReadOnlySpan<byte> s, out int consumed)
    {
        consumed = 1;
        var lead = s[0];
        if (lead < 0x80) return lead;
        int length, value;
        if ((lead & 0xE0) == 0xC0) (length, value) = (2, lead & 0x1F);
        else if ((lead & 0xF0) == 0xE0) (length, value) = (3, lead & 0x0F);
        else if ((lead & 0xF8) == 0xF0) (length, value) = (4, lead & 0x07);
        else return ReplacementCharacter; // a continuation byte or 0xF8-0xFF where a lead byte should be
        if (s.Length < length) return ReplacementCharacter;
        for (var i = 1; i < length; i++)
        {
            if ((s[i] & 0xC0) != 0x80) return ReplacementCharacter;
            value = (value << 6) | (s[i] & 0x3F);
        }
        if (value > CodepointClasses.MaxCodepoint) return ReplacementCharacter;
        consumed = length;
        return value;
    }

    /// <summary>Appends the UTF-8 form of <paramref name="codepoint"/> (surrogates included, as llama.cpp writes them).</summary>
    public static void Encode(int codepoint, List<byte> output)
    {
        Span<byte> buffer = stackalloc byte[4];
        output.AddRange(buffer[..Encode(codepoint, buffer)]);
    }

    /// <summary>Writes the UTF-8 form of <paramref name="codepoint"/> and returns its length (1 to 4).</summary>
    public static int Encode(int codepoint, Span<byte> destination)
    {
        switch (codepoint)
        {
            case < 0x80:
                destination[0] = (byte)codepoint;
                return 1;
            case < 0x800:
                destination[0] = (byte)(0xC0 | (codepoint >> 6));
                destination[1] = (byte)(0x80 | (codepoint & 0x3F));
                return 2;
            case < 0x10000:
                destination[0] = (byte)(0xE0 | (codepoint >> 12));
                destination[1] = (byte)(0x80 | ((codepoint >> 6) & 0x3F));
                destination[2] = (byte)(0x80 | (codepoint & 0x3F));
                return 3;
            default:
                destination[0] = (byte)(0xF0 | (codepoint >> 18));
                destination[1] = (byte)(0x80 | ((codepoint >> 12) & 0x3F));
                destination[2] = (byte)(0x80 | ((codepoint >> 6) & 0x3F));
                destination[3] = (byte)(0x80 | (codepoint & 0x3F));
                return 4;
        }
    }
}
