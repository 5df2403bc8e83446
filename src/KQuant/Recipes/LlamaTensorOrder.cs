namespace KQuant.Recipes;

/// <summary>The order llama.cpp's loader keeps tensors in, and so the order llama-quantize writes them: by block number
/// ("blk.N." prefix; tensors without one come first), then by name, byte-wise.</summary>
public sealed class LlamaTensorOrder : IComparer<string>
{
    public static LlamaTensorOrder Instance { get; } = new();

    public int Compare(string? a, string? b)
    {
        var la = BlockNumber(a ?? "") ?? -1;
        var lb = BlockNumber(b ?? "") ?? -1;
        return la != lb ? la.CompareTo(lb) : string.CompareOrdinal(a, b);
    }

    /// <summary>N of a name starting "blk.N" (read as scanf's %d reads it: optional sign, digits), else null.</summary>
    public static int? BlockNumber(string name)
    {
        const string prefix = "blk.";
        if (!name.StartsWith(prefix, StringComparison.Ordinal)) return null;
        var i = prefix.Length;
        while (i < name.Length && char.IsWhiteSpace(name[i])) i++;
        var negative = false;
        if (i < name.Length && name[i] is '+' or '-') { negative = name[i] == '-'; i++; }
        var start = i;
        long value = 0;
        while (i < name.Length && char.IsAsciiDigit(name[i]) && value <= int.MaxValue) value = value * 10 + (name[i++] - '0');
        if (i == start) return null;
        return (int)Math.Clamp(negative ? -value : value, int.MinValue, int.MaxValue);
    }
}
