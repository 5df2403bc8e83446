namespace KQuant.Cli;

/// <summary>Human-readable sizes and counts.</summary>
public static class Units
{
    public static string Bytes(long bytes) => bytes switch
    {
        < 1024 => $"{bytes} B",
        < 1024 * 1024 => $"{bytes / 1024.0:0.0} KiB",
        < 1024L * 1024 * 1024 => $"{bytes / 1024.0 / 1024:0.00} MiB",
        _ => $"{bytes / 1024.0 / 1024 / 1024:0.00} GiB",
    };

    public static string Count(long n) => n switch
    {
        < 1_000 => n.ToString(),
        < 1_000_000 => $"{n / 1e3:0.##}K",
        < 1_000_000_000 => $"{n / 1e6:0.##}M",
        _ => $"{n / 1e9:0.##}B",
    };
}
