using System.Globalization;

namespace KQuant.Model.Tokenizers;

/// <summary>What a pre-tokenizer asks of a codepoint: its Unicode general-category group (\p{L}, \p{N}, ...) and whether
/// it is whitespace. The bit values are those of llama.cpp's unicode_cpt_flags, so tests compare them directly.</summary>
[Flags]
internal enum CodepointClass : ushort
{
    /// <summary>No codepoint: a position outside the text being split.</summary>
    None = 0,
    Unassigned = 0x1,
    Number = 0x2,
    Letter = 0x4,
    Separator = 0x8,
    Mark = 0x10,
    Punctuation = 0x20,
    Symbol = 0x40,
    Control = 0x80,
    CategoryMask = 0xFF,
    Whitespace = 0x100,
}

/// <summary>Classifies codepoints as llama.cpp v0.5.0 does. Its tables (unicode-data.cpp) were generated from Unicode
/// 15.1; .NET's categories are Unicode 16.0, which assigned the codepoints in <see cref="Unicode16Additions"/>. Those
/// stay unassigned here, so the pre-tokenizers split text exactly where llama.cpp does (a test checks every codepoint).</summary>
internal static class CodepointClasses
{
    public const int MaxCodepoint = 0x10FFFF;

    // Inclusive ranges first assigned in Unicode 16.0 (DerivedAge.txt), in ascending order.
    private static readonly (int First, int Last)[] Unicode16Additions =
    [
        (0x897, 0x897), (0x1B4E, 0x1B4F), (0x1B7F, 0x1B7F), (0x1C89, 0x1C8A), (0x2427, 0x2429), (0x31E4, 0x31E5),
        (0xA7CB, 0xA7CD), (0xA7DA, 0xA7DC), (0x105C0, 0x105F3), (0x10D40, 0x10D65), (0x10D69, 0x10D85),
        (0x10D8E, 0x10D8F), (0x10EC2, 0x10EC4), (0x10EFC, 0x10EFC), (0x11380, 0x11389), (0x1138B, 0x1138B),
        (0x1138E, 0x1138E), (0x11390, 0x113B5), (0x113B7, 0x113C0), (0x113C2, 0x113C2), (0x113C5, 0x113C5),
        (0x113C7, 0x113CA), (0x113CC, 0x113D5), (0x113D7, 0x113D8), (0x113E1, 0x113E2), (0x116D0, 0x116E3),
        (0x11BC0, 0x11BE1), (0x11BF0, 0x11BF9), (0x11F5A, 0x11F5A), (0x13460, 0x143FA), (0x16100, 0x16139),
        (0x16D40, 0x16D79), (0x18CFF, 0x18CFF), (0x1CC00, 0x1CCF9), (0x1CD00, 0x1CEB3), (0x1E5D0, 0x1E5FA),
        (0x1E5FF, 0x1E5FF), (0x1F8B2, 0x1F8BB), (0x1F8C0, 0x1F8C1), (0x1FA89, 0x1FA89), (0x1FA8F, 0x1FA8F),
        (0x1FABE, 0x1FABE), (0x1FAC6, 0x1FAC6), (0x1FADC, 0x1FADC), (0x1FADF, 0x1FADF), (0x1FAE9, 0x1FAE9),
        (0x1FBCB, 0x1FBEF),
    ];

    // The Basic Multilingual Plane is looked up in a table (128 KB); other planes are classified on demand.
    private static readonly CodepointClass[] Bmp = BuildBmpTable();

    public static CodepointClass Of(int codepoint) =>
        (uint)codepoint <= char.MaxValue ? Bmp[codepoint] : Classify(codepoint);

    private static CodepointClass[] BuildBmpTable()
    {
        var table = new CodepointClass[char.MaxValue + 1];
        for (var c = 0; c < table.Length; c++) table[c] = Classify(c);
        return table;
    }

    private static CodepointClass Classify(int codepoint)
    {
        if ((uint)codepoint > MaxCodepoint || IsUnicode16Addition(codepoint)) return CodepointClass.Unassigned;
        var group = CharUnicodeInfo.GetUnicodeCategory(codepoint) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => CodepointClass.Letter,
            UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark => CodepointClass.Mark,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => CodepointClass.Number,
            UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator => CodepointClass.Separator,
            UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation
                or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
                or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation => CodepointClass.Punctuation,
            UnicodeCategory.MathSymbol or UnicodeCategory.CurrencySymbol or UnicodeCategory.ModifierSymbol
                or UnicodeCategory.OtherSymbol => CodepointClass.Symbol,
            UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate
                or UnicodeCategory.PrivateUse => CodepointClass.Control,
            _ => CodepointClass.Unassigned,
        };
        // llama.cpp's whitespace set is exactly .NET's: Zs, Zl, Zp, U+0009..U+000D and U+0085, all in the BMP.
        if (codepoint <= char.MaxValue && char.IsWhiteSpace((char)codepoint)) group |= CodepointClass.Whitespace;
        return group;
    }

    private static bool IsUnicode16Addition(int codepoint)
    {
        int lo = 0, hi = Unicode16Additions.Length - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >>> 1;
            var (first, last) = Unicode16Additions[mid];
            if (codepoint < first) hi = mid - 1;
            else if (codepoint > last) lo = mid + 1;
            else return true;
        }
        return false;
    }

    /// <summary>llama.cpp's unicode_tolower for the letters its contraction rules test: only ASCII capitals lower to
    /// ASCII letters other than 'i' and 'k' (U+0130 and U+212A do, and no rule looks for them).</summary>
    public static int ToLowerAscii(int codepoint) => codepoint is >= 'A' and <= 'Z' ? codepoint + ('a' - 'A') : codepoint;
}
