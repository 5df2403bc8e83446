namespace KQuant.Model.Tokenizers;

/// <summary>A GGUF file's tokenizer is one KQuant cannot run: its tokenizer.ggml.model or tokenizer.ggml.pre has a value
/// outside <see cref="Supported"/>. The message names the file, the key and the value, and lists what is supported.</summary>
public sealed class TokenizerNotSupportedException : NotSupportedException
{
    public TokenizerNotSupportedException(string path, string key, string? value, IReadOnlyList<string> supported)
        : base($"{path}: {key} = {(value is null ? "(absent)" : $"'{value}'")} is not supported; supported: {string.Join(", ", supported)}")
    {
        Path = path;
        Key = key;
        Value = value;
        Supported = supported;
    }

    public string Path { get; }

    /// <summary>The metadata key whose value is not supported.</summary>
    public string Key { get; }

    /// <summary>The value found, or null when the key is absent.</summary>
    public string? Value { get; }

    public IReadOnlyList<string> Supported { get; }
}
