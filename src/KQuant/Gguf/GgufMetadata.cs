using System.Collections;
using System.Diagnostics.CodeAnalysis;

namespace KQuant.Gguf;

/// <summary>One key-value pair of a GGUF file's metadata.</summary>
public sealed record GgufMetadataEntry(string Key, GgufValue Value);

/// <summary>Looks metadata up by key: a <see cref="GgufFile"/> or a <see cref="GgufMetadata"/>. Typed getters are in
/// <see cref="GgufMetadataLookup"/>.</summary>
public interface IGgufMetadataSource
{
    bool TryGetValue(string key, [MaybeNullWhen(false)] out GgufValue value);
}

/// <summary>Ordered, mutable metadata for <see cref="GgufWriter"/>. <see cref="Set"/> replaces a value in place, so a
/// file's key order survives a rewrite; new keys go to the end. Keys are unique.</summary>
public sealed class GgufMetadata : IReadOnlyList<GgufMetadataEntry>, IGgufMetadataSource
{
    public const string AlignmentKey = "general.alignment";
    public const string ArchitectureKey = "general.architecture";
    public const uint DefaultAlignment = 32;

    private readonly List<GgufMetadataEntry> _entries = [];
    private readonly Dictionary<string, int> _index = new(StringComparer.Ordinal);

    public GgufMetadata()
    {
    }

    /// <summary>A copy of <paramref name="entries"/> (e.g. <see cref="GgufFile.Metadata"/>), in their order.</summary>
    public GgufMetadata(IEnumerable<GgufMetadataEntry> entries)
    {
        foreach (var e in entries) Add(e.Key, e.Value);
    }

    public int Count => _entries.Count;

    public GgufMetadataEntry this[int index] => _entries[index];

    public GgufValue this[string key]
    {
        get => TryGetValue(key, out var v) ? v : throw new KeyNotFoundException($"no metadata key '{key}'");
        set => Set(key, value);
    }

    /// <summary>The alignment of tensor data this metadata asks for (general.alignment, default 32).</summary>
    public uint Alignment => TryGetValue(AlignmentKey, out var v) ? v.AsUInt32() : DefaultAlignment;

    /// <summary>Appends a new key; throws if it is already present.</summary>
    public void Add(string key, GgufValue value)
    {
        Validate(key, value);
        if (_index.ContainsKey(key)) throw new ArgumentException($"duplicate metadata key '{key}'", nameof(key));
        _index.Add(key, _entries.Count);
        _entries.Add(new(key, value));
    }

    /// <summary>Replaces the value of an existing key where it stands, or appends a new key.</summary>
    public void Set(string key, GgufValue value)
    {
        Validate(key, value);
        if (_index.TryGetValue(key, out var i)) _entries[i] = new(key, value);
        else
        {
            _index.Add(key, _entries.Count);
            _entries.Add(new(key, value));
        }
    }

    public bool Remove(string key)
    {
        if (!_index.Remove(key, out var i)) return false;
        _entries.RemoveAt(i);
        for (var j = i; j < _entries.Count; j++) _index[_entries[j].Key] = j;
        return true;
    }

    public bool ContainsKey(string key) => _index.ContainsKey(key);

    /// <summary>Position of <paramref name="key"/>, or -1.</summary>
    public int IndexOf(string key) => _index.TryGetValue(key, out var i) ? i : -1;

    public bool TryGetValue(string key, [MaybeNullWhen(false)] out GgufValue value)
    {
        if (_index.TryGetValue(key, out var i))
        {
            value = _entries[i].Value;
            return true;
        }
        value = null;
        return false;
    }

    public IEnumerator<GgufMetadataEntry> GetEnumerator() => _entries.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    // ggml refuses an empty key, and general.alignment that is not a power-of-two uint32 (gguf_check_reserved_keys).
    private static void Validate(string key, GgufValue value)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentNullException.ThrowIfNull(value);
        if (key == AlignmentKey && !IsValidAlignment(value))
            throw new ArgumentException($"{AlignmentKey} must be a u32 power of two, not {GgufValueTypes.Name(value.Type)} {value}", nameof(value));
    }

    internal static bool IsValidAlignment(GgufValue value) =>
        value.Type == GgufValueType.UInt32 && value.AsUInt32() is var a && a != 0 && (a & (a - 1)) == 0;
}

/// <summary>Typed lookups on any <see cref="IGgufMetadataSource"/>. Each returns null when the key is absent and throws
/// <see cref="InvalidOperationException"/> naming the key when its value has an incompatible type. Integer getters accept
/// any integer type whose value fits.</summary>
public static class GgufMetadataLookup
{
    public static string? GetString(this IGgufMetadataSource source, string key) => Get(source, key, v => v.AsString());

    public static bool? GetBool(this IGgufMetadataSource source, string key) => Get(source, key, v => (bool?)v.AsBool());

    public static int? GetInt32(this IGgufMetadataSource source, string key) => Get(source, key, v => (int?)v.AsInt32());

    public static uint? GetUInt32(this IGgufMetadataSource source, string key) => Get(source, key, v => (uint?)v.AsUInt32());

    public static long? GetInt64(this IGgufMetadataSource source, string key) => Get(source, key, v => (long?)v.AsInt64());

    public static ulong? GetUInt64(this IGgufMetadataSource source, string key) => Get(source, key, v => (ulong?)v.AsUInt64());

    public static float? GetSingle(this IGgufMetadataSource source, string key) => Get(source, key, v => (float?)v.AsSingle());

    public static double? GetDouble(this IGgufMetadataSource source, string key) => Get(source, key, v => (double?)v.AsDouble());

    public static GgufArray? GetArray(this IGgufMetadataSource source, string key) => Get(source, key, v => v.AsArray());

    /// <summary>general.architecture, e.g. "llama".</summary>
    public static string? GetArchitecture(this IGgufMetadataSource source) => source.GetString(GgufMetadata.ArchitectureKey);

    /// <summary>The architecture-scoped key, e.g. <c>ArchitectureKey("block_count")</c> is "llama.block_count" in a llama file.</summary>
    public static string ArchitectureKey(this IGgufMetadataSource source, string name) =>
        $"{source.GetArchitecture() ?? throw new InvalidOperationException($"no {GgufMetadata.ArchitectureKey} in the metadata")}.{name}";

    private static T? Get<T>(IGgufMetadataSource source, string key, Func<GgufValue, T?> convert)
    {
        if (!source.TryGetValue(key, out var value)) return default;
        try
        {
            return convert(value);
        }
        catch (InvalidOperationException e)
        {
            throw new InvalidOperationException($"metadata key '{key}': {e.Message}", e);
        }
    }
}
