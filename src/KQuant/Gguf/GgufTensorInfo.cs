namespace KQuant.Gguf;

/// <summary>One entry of a GGUF tensor directory: name, ggml type and shape, and where the data lies.</summary>
/// <remarks>The shape is in ggml order (ne): <c>Shape[0]</c> is the row length, the number of contiguous elements.
/// Tensors built for <see cref="GgufWriter"/> have <see cref="Offset"/> 0 until the writer assigns one.</remarks>
public sealed class GgufTensorInfo
{
    public const int MaxDimensions = 4;

    private readonly long[] _shape;

    /// <summary>A tensor description for the writer. Throws <see cref="ArgumentException"/> unless the shape has 1 to 4
    /// positive dimensions, its row length is a multiple of the type's block size and its size fits in a long.</summary>
    public GgufTensorInfo(string name, GgmlType type, ReadOnlySpan<long> shape)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (!GgmlTypeTraits.TryGet((uint)type, out var traits)) throw new ArgumentOutOfRangeException(nameof(type), type, "not a ggml type");
        if (CheckShape(traits.Value, shape, out _, out var elements, out var bytes) is { } problem)
            throw new ArgumentException($"tensor '{name}': {problem}", nameof(shape));
        Name = name;
        Traits = traits.Value;
        _shape = shape.ToArray();
        ElementCount = elements;
        ByteSize = bytes;
    }

    /// <summary>For the reader and the writer, which have checked the shape with <see cref="CheckShape"/> already.</summary>
    internal GgufTensorInfo(string name, GgmlTypeTraits traits, long[] shape, long elementCount, long byteSize, long offset)
    {
        Name = name;
        Traits = traits;
        _shape = shape;
        ElementCount = elementCount;
        ByteSize = byteSize;
        Offset = offset;
    }

    public string Name { get; }

    public GgmlType Type => Traits.Type;

    public GgmlTypeTraits Traits { get; }

    /// <summary>A copy of the dimensions (ne), 1 to 4 of them, as stored in the file.</summary>
    public long[] Shape => (long[])_shape.Clone();

    public int Dimensions => _shape.Length;

    /// <summary>Byte offset of the data relative to the start of the data section (a multiple of the alignment).</summary>
    public long Offset { get; }

    public long ElementCount { get; }

    /// <summary>Bytes of data, without the padding that follows it in the file.</summary>
    public long ByteSize { get; }

    /// <summary>Elements per row: Shape[0].</summary>
    public long RowLength => _shape[0];

    /// <summary>Rows: the product of all dimensions but the first.</summary>
    public long RowCount => ElementCount / _shape[0];

    public long RowByteSize => Traits.RowBytes(_shape[0]);

    /// <summary>The same name and shape with another type (e.g. the quantized form of an F16 tensor).</summary>
    public GgufTensorInfo WithType(GgmlType type) => new(Name, type, _shape);

    internal GgufTensorInfo WithOffset(long offset) => new(Name, Traits, _shape, ElementCount, ByteSize, offset);

    internal ReadOnlySpan<long> ShapeSpan => _shape;

    /// <summary>Null when <paramref name="shape"/> is valid for <paramref name="traits"/>; otherwise the problem, with the
    /// index of the offending dimension in <paramref name="badDimension"/> (-1 when the shape as a whole is at fault).</summary>
    internal static string? CheckShape(GgmlTypeTraits traits, ReadOnlySpan<long> shape, out int badDimension, out long elements, out long bytes)
    {
        elements = bytes = 0;
        badDimension = -1;
        if (shape.Length is < 1 or > MaxDimensions) return $"has {shape.Length} dimensions, expected 1 to {MaxDimensions}";
        long product = 1;
        for (var i = 0; i < shape.Length; i++)
        {
            badDimension = i;
            if (shape[i] <= 0) return $"dimension {i} is {shape[i]}, expected a positive size";
            if (product > long.MaxValue / shape[i]) return $"dimension {i} ({shape[i]}) makes the element count overflow a 64-bit integer";
            product *= shape[i];
        }
        badDimension = 0;
        if (shape[0] % traits.BlockSize != 0)
            return $"row length {shape[0]} is not a multiple of the {traits.Name} block size {traits.BlockSize}";
        badDimension = -1;
        var blocks = product / traits.BlockSize;
        if (blocks > long.MaxValue / traits.BytesPerBlock) return $"{product} {traits.Name} elements take more than {long.MaxValue} bytes";
        elements = product;
        bytes = blocks * traits.BytesPerBlock;
        return null;
    }

    /// <summary>For display, e.g. <c>blk.0.attn_q.weight F16 [256, 256]</c>.</summary>
    public override string ToString() => $"{Name} {Traits.Name} [{string.Join(", ", _shape)}]";
}
