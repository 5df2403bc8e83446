namespace KQuant.Model.Tokenizers;

/// <summary>SentencePiece's visible space '▁' (U+2581), which stands for ' ' in the pieces of SentencePiece-style
/// vocabularies: spaces are written as it before tokenizing, and it is read back as a space when decoding.</summary>
internal static class SpaceMarks
{
    public static ReadOnlySpan<byte> Mark => "▁"u8;

    /// <summary><paramref name="text"/> with each space as '▁', and one more '▁' in front when <paramref name="addPrefix"/>.</summary>
    public static byte[] Escape(ReadOnlySpan<byte> text, bool addPrefix)
    {
        var mark = Mark;
        var escaped = new byte[(addPrefix ? mark.Length : 0) + text.Length + text.Count((byte)' ') * (mark.Length - 1)];
        var at = 0;
        if (addPrefix)
        {
            mark.CopyTo(escaped);
            at = mark.Length;
        }
        foreach (var b in text)
        {
            if (b == ' ')
            {
                mark.CopyTo(escaped.AsSpan(at));
                at += mark.Length;
            }
            else escaped[at++] = b;
        }
        return escaped;
    }

    /// <summary><paramref name="text"/> with each '▁' as a space.</summary>
    public static byte[] Unescape(ReadOnlySpan<byte> text)
    {
        var result = new List<byte>(text.Length);
        for (var i = 0; i < text.Length;)
        {
            if (text[i..].StartsWith(Mark))
            {
                result.Add((byte)' ');
                i += Mark.Length;
            }
            else result.Add(text[i++]);
        }
        return result.ToArray();
    }

    /// <summary>Whether every '▁' of <paramref name="piece"/> is in a run at its start.</summary>
    public static bool OnlyLead(ReadOnlySpan<byte> piece)
    {
        while (piece.StartsWith(Mark)) piece = piece[Mark.Length..];
        return piece.IndexOf(Mark) < 0;
    }
}
