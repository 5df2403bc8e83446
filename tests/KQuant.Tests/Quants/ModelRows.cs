using System.Buffers.Binary;
using System.Text;

namespace KQuant.Tests.Quants;

/// <summary>
/// Just enough GGUF reading to pull the F32/F16 2-D weights out of the shared test models, so the codecs can be
/// checked on real rows. Temporary: the project's GGUF reader is being written on another branch and will replace it.
/// </summary>
public static class ModelRows
{
    /// <summary>A 2-D float tensor: <see cref="Rows"/> rows of <see cref="RowLength"/> weights (ggml's ne[0]).</summary>
    public sealed record Tensor(string Name, int RowLength, int Rows, float[] Data);

    /// <summary>The 2-D F32/F16 tensors of a GGUF file, converted to float.</summary>
    public static IEnumerable<Tensor> Read2D(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var reader = new Reader(bytes);
        if (reader.U32() != 0x46554747) throw new InvalidDataException($"{path} is not a GGUF file");
        var version = reader.U32();
        if (version < 2) throw new InvalidDataException($"{path}: GGUF v{version} is not supported");
        var tensorCount = (long)reader.U64();
        var kvCount = (long)reader.U64();
        var alignment = 32L;
        for (var i = 0; i < kvCount; i++)
        {
            var key = reader.String();
            var type = reader.U32();
            if (key == "general.alignment" && type == 4) alignment = reader.U32();
            else reader.SkipValue(type);
        }
        var infos = new List<(string Name, long[] Dims, uint Type, long Offset)>();
        for (var i = 0; i < tensorCount; i++)
        {
            var name = reader.String();
            var dims = new long[reader.U32()];
            for (var d = 0; d < dims.Length; d++) dims[d] = (long)reader.U64();
            infos.Add((name, dims, reader.U32(), (long)reader.U64()));
        }
        var dataStart = (reader.Position + alignment - 1) / alignment * alignment;
        foreach (var (name, dims, type, offset) in infos)
        {
            if (dims.Length != 2 || type > 1) continue; // 2-D, F32 (0) or F16 (1)
            var count = checked((int)(dims[0] * dims[1]));
            var data = new float[count];
            var start = (int)(dataStart + offset);
            for (var e = 0; e < count; e++)
            {
                data[e] = type == 0
                    ? BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(start + 4 * e))
                    : (float)BinaryPrimitives.ReadHalfLittleEndian(bytes.AsSpan(start + 2 * e));
            }
            yield return new Tensor(name, (int)dims[0], (int)dims[1], data);
        }
    }

    private sealed class Reader(byte[] bytes)
    {
        public long Position { get; private set; }

        public uint U32() { var v = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan((int)Position)); Position += 4; return v; }

        public ulong U64() { var v = BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan((int)Position)); Position += 8; return v; }

        public string String()
        {
            var length = (int)U64();
            var s = Encoding.UTF8.GetString(bytes, (int)Position, length);
            Position += length;
            return s;
        }

        /// <summary>Skips a metadata value of GGUF type <paramref name="type"/> (arrays recursively).</summary>
        public void SkipValue(uint type)
        {
            switch (type)
            {
                case 0 or 1 or 7: Position += 1; break;        // u8, i8, bool
                case 2 or 3: Position += 2; break;             // u16, i16
                case 4 or 5 or 6: Position += 4; break;        // u32, i32, f32
                case 10 or 11 or 12: Position += 8; break;     // u64, i64, f64
                case 8: String(); break;
                case 9:
                    var elementType = U32();
                    var count = (long)U64();
                    for (var i = 0; i < count; i++) SkipValue(elementType);
                    break;
                default: throw new InvalidDataException($"unknown GGUF value type {type} at {Position}");
            }
        }
    }
}
