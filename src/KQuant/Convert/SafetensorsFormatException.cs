namespace KQuant.Conversion;

/// <summary>A safetensors file (or a sharded checkpoint's index) is malformed or holds something KQuant cannot read. The
/// message names the file and what is wrong with it.</summary>
public sealed class SafetensorsFormatException(string path, string problem)
    : Exception($"{path}: {problem}")
{
    /// <summary>The file (or, for an in-memory image, its display name).</summary>
    public string Path { get; } = path;

    /// <summary>The message without the path.</summary>
    public string Problem { get; } = problem;
}
