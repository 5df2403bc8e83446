using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace KQuant.Conversion;

/// <summary>The general.* naming metadata convert_hf_to_gguf.py derives from a model id (config.json's _name_or_path when
/// it looks like "org/name", else the folder name): name, organization, basename, finetune, version and size label,
/// following gguf-py's Metadata heuristics (metadata.py: get_model_id_components, id_to_title) and size_label.</summary>
public sealed partial record ModelNaming(string Name, string? Organization, string? Basename, string? Finetune, string? Version, string SizeLabel)
{
    /// <summary>Naming for a model with <paramref name="parameterCount"/> weights from its ids, most trusted first (an HF
    /// "org/name" id, then the folder name): each field comes from the first id that yields it, as Metadata.load fills
    /// only fields still empty. The size label falls back to the rounded parameter count.</summary>
    public static ModelNaming FromModelIds(IEnumerable<string> modelIds, long parameterCount)
    {
        string? name = null, organization = null, basename = null, finetune = null, version = null, sizeLabel = null;
        foreach (var id in modelIds)
        {
            var c = Components(id, parameterCount);
            name ??= IdToTitle(c.FullName);
            organization ??= c.Organization is null ? null : IdToTitle(c.Organization);
            basename ??= c.Basename;
            finetune ??= c.Finetune;
            version ??= c.Version;
            sizeLabel ??= c.SizeLabel;
        }
        return new ModelNaming(name ?? "", organization, basename, finetune, version, sizeLabel ?? RoundedParameterCount(parameterCount));
    }

    /// <summary>gguf-py's model_weight_count_rounded_notation with two significant digits, e.g. 2.6M, 10M, 260K, 7.2B.</summary>
    public static string RoundedParameterCount(long count)
    {
        var (scaled, suffix) = count > 1e12 ? (count * 1e-12, "T") : count > 1e9 ? (count * 1e-9, "B") : count > 1e6 ? (count * 1e-6, "M") : (count * 1e-3, "K");
        // Python's round() rounds half to even, like Math.Round's default.
        var integerDigits = Math.Round(scaled).ToString(CultureInfo.InvariantCulture).TrimStart('0').Length;
        var decimals = Math.Max(2 - integerDigits, 0);
        return scaled.ToString("F" + decimals, CultureInfo.InvariantCulture) + suffix;
    }

    /// <summary>Title case for lower-case words that are not versions or numbers ("debdocs-llama-10m" → "Debdocs Llama 10m").</summary>
    public static string IdToTitle(string id) =>
        string.Join(' ', id.Trim().Replace('-', ' ').Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Select(w => IsLower(w) && !VersionOrNumber().IsMatch(w) ? PythonTitle(w) : w));

    private static (string FullName, string? Organization, string? Basename, string? Finetune, string? Version, string? SizeLabel) Components(string modelId, long totalParameters)
    {
        if (modelId.Contains(' ')) return (modelId, null, null, null, null, null); // a sentence, not an id
        string? organization = null;
        var fullName = modelId;
        var slash = modelId.IndexOf('/');
        if (slash >= 0)
        {
            organization = modelId[..slash];
            fullName = modelId[(slash + 1)..];
            if (organization.StartsWith('.')) organization = null; // "./" or "../", not an organization
        }

        var parts = fullName.Split('-').Where(p => p.Length > 0).ToList();
        var kinds = parts.Select(_ => new HashSet<string>()).ToList();
        for (var i = 0; i < parts.Count; i++)
        {
            var part = parts[i];
            if (VersionPart().IsMatch(part)) kinds[i].Add("version");
            else if (QuantTypePart().IsMatch(part))
            {
                kinds[i].Add("type");
                parts[i] = part.ToUpperInvariant();
            }
            else if (i > 0 && SizePart().IsMatch(part))
            {
                parts[i] = NormalizeSize(part, totalParameters, kinds[i]);
            }
            else if (i > 0 && FinetunePart().IsMatch(part)) kinds[i].Add("finetune");
        }

        // A numeric size label wins over word sizes (small, large, ...).
        if (parts.Where((p, i) => kinds[i].Contains("size_label")).Any(p => p.Any(char.IsAsciiDigit)))
        {
            for (var i = 0; i < parts.Count; i++)
            {
                if (kinds[i].Contains("size_label") && parts[i].All(char.IsLetter)) kinds[i].Remove("size_label");
            }
        }

        var atStart = true;
        for (var i = 0; i < parts.Count; i++)
        {
            if (atStart && ((kinds[i].Count == 0 && char.IsLetter(parts[i][0])) || kinds[i].Contains("version"))) kinds[i].Add("basename");
            else
            {
                atStart = false;
                if (kinds[i].Count == 0) kinds[i].Add("finetune");
            }
        }
        // A trailing version is not part of the basename.
        for (var i = parts.Count - 1; i >= 0; i--)
        {
            if (kinds[i].Contains("basename") && kinds[i].Count > 1) kinds[i].Remove("basename");
            else break;
        }

        string? Join(Func<int, bool> keep, bool distinct = false)
        {
            var selected = parts.Where((_, i) => keep(i));
            if (distinct) selected = selected.Distinct(StringComparer.Ordinal);
            var joined = string.Join('-', selected);
            return joined.Length == 0 ? null : joined;
        }
        var basename = Join(i => kinds[i].Contains("basename"));
        var sizeLabel = Join(i => kinds[i].Contains("size_label"), distinct: true);
        var finetune = Join(i => kinds[i].Contains("finetune"));
        var version = Join(i => kinds[i].Contains("version") && !kinds[i].Contains("basename"));
        if (sizeLabel is null && finetune is null && version is null) basename = null; // too ambiguous
        return (fullName, organization, basename, finetune, version, sizeLabel);
    }

    /// <summary>A size part ("7b", "8x7B", "1.5B", "bloom-7b1") in canonical form; marks it a finetune when it cannot be
    /// the model's size (e.g. "128k", a context length).</summary>
    private static string NormalizeSize(string part, long totalParameters, HashSet<string> kinds)
    {
        part = part.Replace('_', '.');
        if (char.IsAsciiDigit(part[^1]) && part.Length >= 2) part = part[..^2] + "." + part[^1] + part[^2]; // 7b1 → 7.1b
        if (part.Length > 1 && char.IsAsciiDigit(part[^2]) && "kmbt".Contains(part[^1])) part = part[..^1] + char.ToUpperInvariant(part[^1]);
        if (totalParameters != 0 && double.TryParse(part[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
        {
            var labelParameters = value * Math.Pow(1000, " KMBT".IndexOf(part[^1]));
            if (totalParameters > 0 && Math.Abs(labelParameters - totalParameters) > 7 * totalParameters / 8)
            {
                kinds.Add("finetune");
                part = part[..^1] + char.ToLowerInvariant(part[^1]);
            }
        }
        if (kinds.Count == 0) kinds.Add("size_label");
        return part;
    }

    // Python's str.islower: at least one cased character and no upper-case ones.
    private static bool IsLower(string s) => s.Any(char.IsLower) && !s.Any(c => char.IsUpper(c) || char.GetUnicodeCategory(c) == UnicodeCategory.TitlecaseLetter);

    // Python's str.title: a letter is upper-cased after a non-letter, lower-cased after a letter.
    private static string PythonTitle(string s)
    {
        var sb = new StringBuilder(s.Length);
        var previousIsLetter = false;
        foreach (var c in s)
        {
            sb.Append(previousIsLetter ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            previousIsLetter = char.IsLetter(c);
        }
        return sb.ToString();
    }

    [GeneratedRegex(@"^(v\d+(?:\.\d+)*|\d.*)$")]
    private static partial Regex VersionOrNumber();

    [GeneratedRegex(@"^(v|iter)?\d+([.]\d+)*$", RegexOptions.IgnoreCase)]
    private static partial Regex VersionPart();

    [GeneratedRegex(@"^(i?q\d(_\w)*|b?fp?(16|32))$", RegexOptions.IgnoreCase)]
    private static partial Regex QuantTypePart();

    [GeneratedRegex(@"^(([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl)$", RegexOptions.IgnoreCase)]
    private static partial Regex SizePart();

    [GeneratedRegex(@"^(chat|instruct|vision|lora)$", RegexOptions.IgnoreCase)]
    private static partial Regex FinetunePart();
}
