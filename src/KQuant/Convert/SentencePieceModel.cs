using System.Buffers.Binary;

namespace KQuant.Conversion;

/// <summary>The piece table of a SentencePiece <c>tokenizer.model</c> (a serialized sentencepiece.ModelProto). Only what
/// the converter needs is decoded: field 1, the repeated SentencePiece {1: piece, 2: score, 3: type}; the trainer,
/// normalizer and other fields are skipped by wire type, so models from any sentencepiece version read.</summary>
public sealed class SentencePieceModel
{
    /// <summary>sentencepiece.ModelProto.SentencePiece.Type.</summary>
    public enum PieceType
    {
        Normal = 1,
        Unknown = 2,
        Control = 3,
        UserDefined = 4,
        Unused = 5,
        Byte = 6,
    }

    public readonly record struct Piece(byte[] Text, float Score, PieceType Type);

    private SentencePieceModel(string path, List<Piece> pieces)
    {
        Path = path;
        Pieces = pieces;
    }

    public string Path { get; }

    public IReadOnlyList<Piece> Pieces { get; }

    public static SentencePieceModel Load(string path) => Parse(File.ReadAllBytes(path), path);

    /// <summary>Parses a serialized ModelProto; malformed input throws <see cref="InvalidDataException"/> naming
    /// <paramref name="path"/> and the byte offset.</summary>
    public static SentencePieceModel Parse(ReadOnlySpan<byte> data, string path)
    {
        var pieces = new List<Piece>();
        var reader = new ProtoReader(data, 0, path);
        while (!reader.AtEnd)
        {
            var (field, wire) = reader.ReadTag();
            if (field == 1 && wire == ProtoReader.LengthDelimited)
            {
                var start = reader.Position;
                pieces.Add(ParsePiece(reader.ReadBytes(), start, path));
            }
            else
            {
                reader.Skip(wire);
            }
        }
        if (pieces.Count == 0) throw new InvalidDataException($"{path}: no pieces; is this a SentencePiece tokenizer.model?");
        return new SentencePieceModel(path, pieces);
    }

    private static Piece ParsePiece(ReadOnlySpan<byte> message, int baseOffset, string path)
    {
        byte[]? text = null;
        var score = 0f;
        var type = PieceType.Normal; // the proto2 default
        var reader = new ProtoReader(message, baseOffset, path);
        while (!reader.AtEnd)
        {
            var (field, wire) = reader.ReadTag();
            switch (field, wire)
            {
                case (1, ProtoReader.LengthDelimited):
                    var bytes = reader.ReadBytes();
                    if (!System.Text.Unicode.Utf8.IsValid(bytes)) throw reader.Fail("a piece is not valid UTF-8");
                    text = bytes.ToArray();
                    break;
                case (2, ProtoReader.Fixed32):
                    score = BitConverter.Int32BitsToSingle((int)reader.ReadFixed32());
                    break;
                case (3, ProtoReader.Varint):
                    var value = reader.ReadVarint();
                    if (value is < 1 or > 6) throw reader.Fail($"piece type {value} is not a SentencePiece type (1 to 6)");
                    type = (PieceType)value;
                    break;
                default:
                    reader.Skip(wire);
                    break;
            }
        }
        return new Piece(text ?? throw reader.Fail("a piece has no text"), score, type);
    }

    /// <summary>Reads protobuf wire format: varint tags, and the four wire types proto3/proto2 messages use.</summary>
    private ref struct ProtoReader(ReadOnlySpan<byte> data, int baseOffset, string path)
    {
        public const int Varint = 0, Fixed64 = 1, LengthDelimited = 2, Fixed32 = 5;

        private readonly ReadOnlySpan<byte> _data = data;
        private int _position;

        public readonly bool AtEnd => _position >= _data.Length;

        /// <summary>Absolute offset in the file, for messages.</summary>
        public readonly int Position => baseOffset + _position;

        public (int Field, int Wire) ReadTag()
        {
            var tag = ReadVarint();
            var field = tag >> 3;
            if (field is 0 or > int.MaxValue) throw Fail($"invalid field number {field}");
            return ((int)field, (int)(tag & 7));
        }

        public ulong ReadVarint()
        {
            ulong value = 0;
            for (var shift = 0; shift < 64; shift += 7)
            {
                if (_position >= _data.Length) throw Fail("truncated varint");
                var b = _data[_position++];
                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80) return value;
            }
            throw Fail("varint longer than 10 bytes");
        }

        public uint ReadFixed32()
        {
            if (_data.Length - _position < 4) throw Fail("truncated 32-bit value");
            var v = BinaryPrimitives.ReadUInt32LittleEndian(_data[_position..]);
            _position += 4;
            return v;
        }

        public ReadOnlySpan<byte> ReadBytes()
        {
            var length = ReadVarint();
            if (length > (ulong)(_data.Length - _position)) throw Fail($"a length of {length} runs past the end of the data");
            var bytes = _data.Slice(_position, (int)length);
            _position += (int)length;
            return bytes;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case Varint: ReadVarint(); break;
                case Fixed64:
                    if (_data.Length - _position < 8) throw Fail("truncated 64-bit value");
                    _position += 8;
                    break;
                case LengthDelimited: ReadBytes(); break;
                case Fixed32: ReadFixed32(); break;
                default: throw Fail($"unsupported protobuf wire type {wire}");
            }
        }

        public readonly InvalidDataException Fail(string problem) => new($"{path}: at byte {Position}: {problem}");
    }
}
