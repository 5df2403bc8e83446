using System.Buffers.Binary;

namespace KQuant.Tests.Gguf;

internal enum GgufFieldKind { Magic, Version, Count, Length, ValueType, Scalar, DimensionCount, Dimension, TensorType, TensorOffset }

/// <summary>One encoded field of a GGUF file: where it is, how wide, what it means.</summary>
internal readonly record struct GgufField(int Offset, int Size, GgufFieldKind Kind);

/// <summary>Lists the fields of a valid GGUF file, so the fuzzer can aim at counts, lengths, types and offsets instead
/// of only at random bytes. Trusts its input (the corpus files are known good); it is not a second reader.</summary>
internal static class GgufFieldMap
{
    public static (List<GgufField> Fields, int DataOffset) Walk(byte[] file)
    {
        var fields = new List<GgufField>();
        var pos = 0;

        int Field(int size, GgufFieldKind kind)
        {
            fields.Add(new(pos, size, kind));
            pos += size;
            return pos - size;
        }
        ulong U64(int at) => BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(at));
        uint U32(int at) => BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(at));
        void String()
        {
            var length = (int)U64(Field(8, GgufFieldKind.Length)); // read before advancing: Field moves pos
            pos += length;
        }
        void Value(uint type)
        {
            switch (type)
            {
                case 8:
                    String();
                    break;
                case 9:
                    var elementType = U32(Field(4, GgufFieldKind.ValueType));
                    var count = U64(Field(8, GgufFieldKind.Count));
                    for (ulong i = 0; i < count; i++) Value(elementType);
                    break;
                default:
                    Field(type switch { 0 or 1 or 7 => 1, 2 or 3 => 2, 4 or 5 or 6 => 4, _ => 8 }, GgufFieldKind.Scalar);
                    break;
            }
        }

        Field(4, GgufFieldKind.Magic);
        Field(4, GgufFieldKind.Version);
        var tensors = (long)U64(Field(8, GgufFieldKind.Count));
        var entries = (long)U64(Field(8, GgufFieldKind.Count));
        var alignment = 32u;
        for (long i = 0; i < entries; i++)
        {
            var keyAt = pos + 8;
            String();
            var isAlignment = file.AsSpan(keyAt, pos - keyAt).SequenceEqual("general.alignment"u8);
            var type = U32(Field(4, GgufFieldKind.ValueType));
            if (isAlignment) alignment = U32(pos);
            Value(type);
        }
        for (long i = 0; i < tensors; i++)
        {
            String();
            var dims = U32(Field(4, GgufFieldKind.DimensionCount));
            for (var d = 0; d < dims; d++) Field(8, GgufFieldKind.Dimension);
            Field(4, GgufFieldKind.TensorType);
            Field(8, GgufFieldKind.TensorOffset);
        }
        var dataOffset = tensors == 0 ? pos : (int)((pos + alignment - 1) / alignment * alignment);
        return (fields, dataOffset);
    }
}
