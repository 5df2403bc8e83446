using System.Runtime.Intrinsics;

namespace KQuant.Quants.K;

/// <summary>Pieces of the K-quant layouts shared by several formats (ggml-common.h and ggml-quants.c of llama.cpp
/// v0.5.0): the super-block size, the 2-bit quant packing of Q2_K/Q3_K and the 6-bit scale/min packing of Q4_K/Q5_K.</summary>
internal static class KQuantLayout
{
    /// <summary>ggml's QK_K: weights per super-block.</summary>
    public const int SuperBlock = 256;

    /// <summary>ggml's K_SCALE_SIZE: bytes holding the eight 6-bit scales and eight 6-bit mins of Q4_K/Q5_K.</summary>
    public const int ScaleMinBytes = 12;

    /// <summary>The importance values of super-block <paramref name="block"/> of a row (empty when there are none).</summary>
    public static ReadOnlySpan<float> BlockImportance(ReadOnlySpan<float> importance, int block) =>
        importance.IsEmpty ? default : importance.Slice(block * SuperBlock, SuperBlock);

    /// <summary>Packs 256 two-bit levels four to a byte: each half of the super-block fills 32 bytes, byte l holding
    /// levels l, l+32, l+64, l+96 of that half from the low bits up.</summary>
    public static void Pack2Bit(ReadOnlySpan<byte> levels, Span<byte> qs)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            for (var half = 0; half < 2; half++)
            {
                var src = levels.Slice(128 * half, 128);
                var packed = Vector256.Create(src) | (Vector256.Create(src[32..]) << 2) | (Vector256.Create(src[64..]) << 4) | (Vector256.Create(src[96..]) << 6);
                packed.CopyTo(qs[(32 * half)..]);
            }
            return;
        }
        for (var half = 0; half < SuperBlock; half += 128)
        {
            var src = levels.Slice(half, 128);
            var dst = qs.Slice(half / 4, 32);
            for (var l = 0; l < 32; l++)
            {
                dst[l] = (byte)(src[l] | (src[l + 32] << 2) | (src[l + 64] << 4) | (src[l + 96] << 6));
            }
        }
    }

    /// <summary>Inverse of <see cref="Pack2Bit"/>.</summary>
    public static void Unpack2Bit(ReadOnlySpan<byte> qs, Span<byte> levels)
    {
        for (var i = 0; i < SuperBlock; i++)
        {
            var half = i / 128;
            var shift = 2 * (i % 128 / 32);
            levels[i] = (byte)((qs[32 * half + i % 32] >> shift) & 3);
        }
    }

    /// <summary>Packs eight 6-bit scales and mins into 12 bytes: bytes 0-3 hold scales 0-3 and bytes 4-7 mins 0-3 in
    /// their low six bits; bytes 8-11 hold the low nibbles of scale/min 4-7, whose top two bits go into the spare top
    /// bits of bytes 0-7. Values above 63 are packed as ggml packs them (their extra bits spill into neighbours).</summary>
    public static void PackScaleMins(ReadOnlySpan<byte> scales, ReadOnlySpan<byte> mins, Span<byte> packed)
    {
        for (var j = 0; j < 8; j++)
        {
            var ls = scales[j];
            var lm = mins[j];
            if (j < 4)
            {
                packed[j] = ls;
                packed[j + 4] = lm;
            }
            else
            {
                packed[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
                packed[j - 4] |= (byte)((ls >> 4) << 6);
                packed[j] |= (byte)((lm >> 4) << 6);
            }
        }
    }

    /// <summary>ggml's get_scale_min_k4: scale and min of sub-block <paramref name="j"/> (0-7) from the 12 packed bytes.</summary>
    public static (byte Scale, byte Min) UnpackScaleMin(int j, ReadOnlySpan<byte> packed) =>
        j < 4
            ? ((byte)(packed[j] & 63), (byte)(packed[j + 4] & 63))
            : ((byte)((packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4)), (byte)((packed[j + 4] >> 4) | ((packed[j] >> 6) << 4)));
}
