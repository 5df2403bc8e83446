namespace KQuant.Testing;

/// <summary>Whole-file byte comparison that streams, so multi-gigabyte outputs compare without loading them.</summary>
public static class FileComparison
{
    public static bool SameBytes(string a, string b)
    {
        using var fa = File.OpenRead(a);
        using var fb = File.OpenRead(b);
        if (fa.Length != fb.Length) return false;
        var ba = new byte[1 << 20];
        var bb = new byte[1 << 20];
        int n;
        while ((n = fa.Read(ba)) > 0)
        {
            fb.ReadExactly(bb, 0, n);
            if (!ba.AsSpan(0, n).SequenceEqual(bb.AsSpan(0, n))) return false;
        }
        return true;
    }
}
