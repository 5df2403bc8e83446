using System.Diagnostics.CodeAnalysis;
using KQuant.Gguf;
using KQuant.Quants.Float;
using KQuant.Quants.IQ;
using KQuant.Quants.Legacy;

namespace KQuant.Quants;

/// <summary>The codec for each ggml type we can quantize and dequantize: the one place types are dispatched.</summary>
public static class RowCodecs
{
    private static readonly Dictionary<GgmlType, IRowCodec> ByType = Build();

    private static Dictionary<GgmlType, IRowCodec> Build()
    {
        IRowCodec[] codecs =
        [
            // Codecs register here, one line each.
            // Class names are ggml's type names without underscores (Q4_0 → Q40Codec, IQ4_XS → IQ4XSCodec, Q4_K → Q4KCodec),
            // block structs likewise (BlockQ40, BlockIQ4XS, BlockQ4K). Listed in ggml id order.
            new F32Codec(),
            new F16Codec(),
            new Q40Codec(),
            new Q41Codec(),
            new Q50Codec(),
            new Q51Codec(),
            new Q80Codec(),
            new K.Q2KCodec(),
            new K.Q3KCodec(),
            new K.Q4KCodec(),
            new K.Q5KCodec(),
            new K.Q6KCodec(),
            new K.Q8KCodec(),
            new IQ4NLCodec(),
            new IQ4XSCodec(),
            new BF16Codec(),
        ];
        return codecs.ToDictionary(c => c.Type);
    }

    /// <summary>Types with a codec, in ggml id order.</summary>
    public static IEnumerable<GgmlType> Supported => ByType.Keys.Order();

    public static bool TryGet(GgmlType type, [NotNullWhen(true)] out IRowCodec? codec) => ByType.TryGetValue(type, out codec);

    public static IRowCodec Get(GgmlType type) =>
        TryGet(type, out var codec)
            ? codec
            : throw new NotSupportedException($"KQuant has no codec for {GgmlTypeTraits.Of(type).Name} yet");
}
