namespace KQuant.Model.Tokenizers;

/// <summary>Hugging Face's clean_up_tokenization_spaces as llama.cpp's detokenizer applies it to "gpt2" tokenizers that
/// ask for it: three passes over the bytes that drop the space in " ?", " !", " .", " ,", around a lone quote
/// (" ' " becomes "'"), and before "'s", "'m", "'re", "'ve". The first byte is always kept.</summary>
internal static class SpaceCleanup
{
    public static byte[] Apply(byte[] text)
    {
        var length = DropSpaceBeforePunctuation(text, text.Length);
        length = JoinLoneQuotes(text, length);
        length = DropSpaceBeforeContractions(text, length);
        return text[..length];
    }

    // Each pass compacts text[..length] in place and returns the new length. A pass reads text[i - 1] after earlier
    // iterations have written at indices below i, which never changes text[i - 1] itself, except where JoinLoneQuotes
    // blanks the space it drops; that is what llama.cpp does, so it is reproduced.

    private static int DropSpaceBeforePunctuation(byte[] text, int length)
    {
        var kept = Math.Min(length, 1);
        for (var i = 1; i < length; i++)
        {
            var c = text[i];
            if (text[i - 1] == ' ' && c is (byte)'?' or (byte)'!' or (byte)'.' or (byte)',') kept--;
            text[kept++] = c;
        }
        return kept;
    }

    private static int JoinLoneQuotes(byte[] text, int length)
    {
        var kept = Math.Min(length, 1);
        for (var i = 1; i < length; i++)
        {
            var c = text[i];
            if (c == '\'' && i + 1 < length && text[i - 1] == ' ' && text[i + 1] == ' ')
            {
                kept--;            // the space before
                text[++i] = 0;     // and the space after, which is skipped
            }
            text[kept++] = c;
        }
        return kept;
    }

    private static int DropSpaceBeforeContractions(byte[] text, int length)
    {
        var kept = Math.Min(length, 1);
        for (var i = 1; i < length; i++)
        {
            var c = text[i];
            if (text[i - 1] == ' ' && c == '\'' && i + 1 < length)
            {
                var next = text[i + 1];
                var twoLetter = i + 2 < length && (next, text[i + 2]) is ((byte)'r', (byte)'e') or ((byte)'v', (byte)'e');
                if (next is (byte)'s' or (byte)'m' || twoLetter) kept--;
            }
            text[kept++] = c;
        }
        return kept;
    }
}
