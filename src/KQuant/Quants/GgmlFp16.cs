using System.Runtime.CompilerServices;

namespace KQuant.Quants;

/// <summary>fp32 → fp16 exactly as ggml's GGML_FP32_TO_FP16 (the software conversion libggml-base is built with):
/// round to nearest even, overflow to ±Inf, and every NaN to the quiet NaN 0x7E00 with the input's sign. System.Half
/// agrees on all non-NaN floats (checked exhaustively against ggml); it keeps NaN payloads, which ggml drops.
/// fp16 → fp32 needs no helper: (float)Half matches ggml for all 65536 values.</summary>
internal static class GgmlFp16
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Half FromSingle(float value)
    {
        if (float.IsNaN(value))
        {
            var sign = (ushort)((BitConverter.SingleToUInt32Bits(value) >> 16) & 0x8000);
            return BitConverter.UInt16BitsToHalf((ushort)(sign | 0x7E00));
        }
        return (Half)value;
    }
}
