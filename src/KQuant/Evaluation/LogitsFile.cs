using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace KQuant.Evaluation;

/// <summary>The file llama-perplexity writes with --kl-divergence-base and reads with --kl-divergence
/// (tools/perplexity/perplexity.cpp of llama.cpp v0.5.0), all little-endian:
/// <list type="bullet">
/// <item>the 8 bytes "_logits_", then int32 n_ctx, int32 n_vocab, int32 n_chunk;</item>
/// <item>n_chunk·n_ctx int32 tokens, the evaluated text (before BOS replacement);</item>
/// <item>per chunk, for each of its n_ctx − 1 − n_ctx/2 scored positions, one row of <see cref="RowLength"/> uint16:
/// two floats (scale, min log-prob) in the first four, then log p(token i) ≈ scale·q_i + min for each token of the
/// vocabulary (q = 0 for every token more than 16 below the most likely one).</item>
/// </list></summary>
public static class LogitsFile
{
    public static ReadOnlySpan<byte> Magic => "_logits_"u8;

    /// <summary>Header bytes before the tokens.</summary>
    public const int HeaderBytes = 8 + 3 * sizeof(int);

    /// <summary>uint16 per row: the vocabulary rounded up to even, plus the two floats.</summary>
    public static int RowLength(int vocabulary) => 2 * ((vocabulary + 1) / 2) + 4;

    /// <summary>Rows per chunk: the positions llama-perplexity scores.</summary>
    public static int RowsPerChunk(int contextSize) => contextSize - 1 - contextSize / 2;
}

/// <summary>Writes a <see cref="LogitsFile"/>: the header and tokens at creation, then chunk after chunk of rows.</summary>
public sealed class LogitsFileWriter : IDisposable
{
    private readonly Stream _stream;
    private readonly bool _ownsStream;

    public LogitsFileWriter(Stream stream, int contextSize, int vocabulary, int chunks, ReadOnlySpan<int> tokens, bool ownsStream = false)
    {
        if (tokens.Length < (long)chunks * contextSize) throw new ArgumentException($"{chunks} chunks of {contextSize} need {chunks * contextSize} tokens", nameof(tokens));
        _stream = stream;
        _ownsStream = ownsStream;
        ContextSize = contextSize;
        Vocabulary = vocabulary;
        Span<byte> header = stackalloc byte[LogitsFile.HeaderBytes];
        LogitsFile.Magic.CopyTo(header);
        BinaryPrimitives.WriteInt32LittleEndian(header[8..], contextSize);
        BinaryPrimitives.WriteInt32LittleEndian(header[12..], vocabulary);
        BinaryPrimitives.WriteInt32LittleEndian(header[16..], chunks);
        _stream.Write(header);
        _stream.Write(MemoryMarshal.AsBytes(tokens[..(chunks * contextSize)]));
    }

    public int ContextSize { get; }

    public int Vocabulary { get; }

    /// <summary>Appends the rows of one chunk (<see cref="LogitsFile.RowsPerChunk"/> rows of <see cref="LogitsFile.RowLength"/>).</summary>
    public void WriteChunk(ReadOnlySpan<ushort> rows)
    {
        if (rows.Length != LogitsFile.RowsPerChunk(ContextSize) * LogitsFile.RowLength(Vocabulary))
            throw new ArgumentException("a chunk has RowsPerChunk rows of RowLength values", nameof(rows));
        _stream.Write(MemoryMarshal.AsBytes(rows));
    }

    public void Dispose()
    {
        _stream.Flush();
        if (_ownsStream) _stream.Dispose();
    }
}

/// <summary>Reads a <see cref="LogitsFile"/>, checking its magic, header and length before anything is used.</summary>
public sealed class LogitsFileReader : IDisposable
{
    private readonly Stream _stream;

    private LogitsFileReader(Stream stream, string name, int contextSize, int vocabulary, int chunks, int[] tokens)
    {
        _stream = stream;
        Name = name;
        ContextSize = contextSize;
        Vocabulary = vocabulary;
        Chunks = chunks;
        Tokens = tokens;
    }

    public string Name { get; }

    public int ContextSize { get; }

    public int Vocabulary { get; }

    public int Chunks { get; }

    /// <summary>The evaluated tokens, <see cref="Chunks"/> · <see cref="ContextSize"/> of them.</summary>
    public IReadOnlyList<int> Tokens { get; }

    /// <summary>Opens <paramref name="path"/>; throws <see cref="InvalidDataException"/> naming the problem when it is
    /// not a llama-perplexity logits file or is truncated.</summary>
    public static LogitsFileReader Open(string path)
    {
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        try
        {
            return Read(stream, path);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    public static LogitsFileReader Read(Stream stream, string name)
    {
        Span<byte> header = stackalloc byte[LogitsFile.HeaderBytes];
        if (stream.ReadAtLeast(header, header.Length, throwOnEndOfStream: false) < header.Length || !header[..8].SequenceEqual(LogitsFile.Magic))
            throw new InvalidDataException($"{name} does not look like a file of log-probabilities (llama-perplexity --kl-divergence-base): no '_logits_' header");
        var contextSize = BinaryPrimitives.ReadInt32LittleEndian(header[8..]);
        var vocabulary = BinaryPrimitives.ReadInt32LittleEndian(header[12..]);
        var chunks = BinaryPrimitives.ReadInt32LittleEndian(header[16..]);
        if (contextSize < 4 || vocabulary < 1 || chunks < 1)
            throw new InvalidDataException($"{name}: implausible header (n_ctx {contextSize}, n_vocab {vocabulary}, n_chunk {chunks})");
        var expected = LogitsFile.HeaderBytes + (long)chunks * contextSize * sizeof(int)
            + (long)chunks * LogitsFile.RowsPerChunk(contextSize) * LogitsFile.RowLength(vocabulary) * sizeof(ushort);
        if (stream.CanSeek && stream.Length < expected)
            throw new InvalidDataException($"{name} is truncated: {stream.Length} bytes, but n_ctx {contextSize}, n_vocab {vocabulary} and {chunks} chunks need {expected}");
        var tokens = new int[chunks * contextSize];
        stream.ReadExactly(MemoryMarshal.AsBytes(tokens.AsSpan()));
        return new LogitsFileReader(stream, name, contextSize, vocabulary, chunks, tokens);
    }

    /// <summary>Reads the next chunk's rows into <paramref name="rows"/>.</summary>
    public void ReadChunk(Span<ushort> rows)
    {
        if (rows.Length != LogitsFile.RowsPerChunk(ContextSize) * LogitsFile.RowLength(Vocabulary))
            throw new ArgumentException("a chunk has RowsPerChunk rows of RowLength values", nameof(rows));
        try
        {
            _stream.ReadExactly(MemoryMarshal.AsBytes(rows));
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($"{Name} ends in the middle of its log-probabilities");
        }
    }

    public void Dispose() => _stream.Dispose();
}
