namespace KQuant.Gguf;

/// <summary>A file is not a well-formed GGUF file KQuant can read. The message names the file, the byte offset and what
/// was expected there.</summary>
public sealed class GgufFormatException : Exception
{
    public GgufFormatException(string path, long offset, string problem)
        : base($"{path}: at byte {offset}: {problem}")
    {
        Path = path;
        Offset = offset;
        Problem = problem;
    }

    /// <summary>The file (or, for an in-memory image, its display name).</summary>
    public string Path { get; }

    /// <summary>Absolute byte offset in the file where the problem was found.</summary>
    public long Offset { get; }

    /// <summary>The message without the path and offset.</summary>
    public string Problem { get; }
}
