using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using KQuant.Gguf;
using KQuant.Quants.Float;
using KQuant.Quants.IQ;
using KQuant.Quants.K;

namespace KQuant.Model.Kernels;

// Kernels of the 256-weight formats, all multiplied against Q8_K activations. Bit layouts are those of the codecs'
// Dequantize methods (ggml-common.h of llama.cpp v0.5.0); each decoder writes the codes of the 256 weights in order.

internal static unsafe class SuperBlockDecoding
{
    /// <summary>Sets the scale and min of 16-weight group <paramref name="group"/> (lanes 8·group..8·group+7).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void SetGroup(DecodedSuperBlock* block, int group, int scale, int min)
    {
        var lanes = block->Scales + 8 * group;
        for (var l = 0; l < 8; l++) lanes[l] = (short)scale;
        block->Mins[group] = (short)min;
    }

    /// <summary>Q4_K and Q5_K: the eight 6-bit scale/min pairs, one per 32 weights (two 16-weight groups).</summary>
    public static void SetScalesAndMins(DecodedSuperBlock* block, float d, float dmin, byte* packed)
    {
        block->D = d;
        block->DMin = dmin;
        var scales = new ReadOnlySpan<byte>(packed, KQuantLayout.ScaleMinBytes);
        for (var j = 0; j < 8; j++)
        {
            var (sc, m) = KQuantLayout.UnpackScaleMin(j, scales);
            SetGroup(block, 2 * j, sc, m);
            SetGroup(block, 2 * j + 1, sc, m);
        }
    }

    /// <summary>Low nibbles of 32 bytes to <paramref name="low"/>, high nibbles to <paramref name="high"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void SplitNibbles(byte* packed, byte* low, byte* high)
    {
        var q = Vector256.Load(packed);
        (q & Vector256.Create((byte)0x0F)).Store(low);
        Vector256.ShiftRightLogical(q, 4).Store(high);
    }
}

/// <summary>Q4_K: weight = d·sc·q − dmin·m with 4-bit q and 6-bit sc, m per 32 weights.</summary>
internal readonly unsafe struct Q4KKernel : IWeightKernel
{
    public static GgmlType Type => GgmlType.Q4_K;
    public static int BlockWeights => KQuantLayout.SuperBlock;
    public static int DecodedBlockBytes => sizeof(DecodedSuperBlock);

    public static void Decode(byte* source, int blocks, byte* destination)
    {
        var b = (BlockQ4K*)source;
        var o = (DecodedSuperBlock*)destination;
        for (var i = 0; i < blocks; i++, b++, o++)
        {
            SuperBlockDecoding.SetScalesAndMins(o, (float)b->D, (float)b->DMin, (byte*)&b->Scales);
            var qs = (byte*)&b->Qs;
            for (var p = 0; p < 4; p++) SuperBlockDecoding.SplitNibbles(qs + 32 * p, o->Values + 64 * p, o->Values + 64 * p + 32);
        }
    }

    public static float Dot(byte* decoded, byte* activations, int blocks) =>
        IntegerDot.MinsInQuads((DecodedSuperBlock*)decoded, (BlockQ8K*)activations, blocks);

    public static void Dot4(byte* decoded, byte* activations, nint stride, int blocks, float* results) =>
        IntegerDot4.Each(&Dot, decoded, activations, stride, blocks, results);
}

/// <summary>Q4_K as llama.cpp multiplies the matrices it repacks (row count a multiple of 8): same decoding, the
/// float accumulation of ggml_gemm_q4_K_8x8_q8_K for tokens in groups of four.</summary>
internal readonly unsafe struct Q4KRepackedKernel : IWeightKernel
{
    public static GgmlType Type => GgmlType.Q4_K;
    public static int BlockWeights => KQuantLayout.SuperBlock;
    public static int DecodedBlockBytes => sizeof(DecodedSuperBlock);

    public static void Decode(byte* source, int blocks, byte* destination) => Q4KKernel.Decode(source, blocks, destination);

    public static float Dot(byte* decoded, byte* activations, int blocks) =>
        IntegerDot.RepackedSuperBlocks((DecodedSuperBlock*)decoded, (BlockQ8K*)activations, blocks);

    public static void Dot4(byte* decoded, byte* activations, nint stride, int blocks, float* results) =>
        IntegerDot4.RepackedSuperBlocks((DecodedSuperBlock*)decoded, activations, stride, blocks, results);
}

/// <summary>Repacked Q4_K for the tokens past the last group of four (ggml_gemv_q4_K_8x8_q8_K).</summary>
internal readonly unsafe struct Q4KRepackedOneTokenKernel : IWeightKernel
{
    public static GgmlType Type => GgmlType.Q4_K;
    public static int BlockWeights => KQuantLayout.SuperBlock;
    public static int DecodedBlockBytes => sizeof(DecodedSuperBlock);

    public static void Decode(byte* source, int blocks, byte* destination) => Q4KKernel.Decode(source, blocks, destination);

    public static float Dot(byte* decoded, byte* activations, int blocks) =>
        IntegerDot.RepackedSuperBlocksOneToken((DecodedSuperBlock*)decoded, (BlockQ8K*)activations, blocks);

    public static void Dot4(byte* decoded, byte* activations, nint stride, int blocks, float* results) =>
        IntegerDot4.Each(&Dot, decoded, activations, stride, blocks, results);
}

/// <summary>Q5_K: as Q4_K with a fifth bit per weight from qh.</summary>
internal readonly unsafe struct Q5KKernel : IWeightKernel
{
    public static GgmlType Type => GgmlType.Q5_K;
    public static int BlockWeights => KQuantLayout.SuperBlock;
    public static int DecodedBlockBytes => sizeof(DecodedSuperBlock);

    public static void Decode(byte* source, int blocks, byte* destination)
    {
        var b = (BlockQ5K*)source;
        var o = (DecodedSuperBlock*)destination;
        var one = Vector256.Create((byte)1);
        for (var i = 0; i < blocks; i++, b++, o++)
        {
            SuperBlockDecoding.SetScalesAndMins(o, (float)b->D, (float)b->DMin, (byte*)&b->Scales);
            var qs = (byte*)&b->Qs;
            var qh = Vector256.Load((byte*)&b->Qh);
            for (var p = 0; p < 4; p++)
            {
                var low = o->Values + 64 * p;
                var high = low + 32;
                SuperBlockDecoding.SplitNibbles(qs + 32 * p, low, high);
                var lowBits = Vector256.ShiftLeft(Vector256.ShiftRightLogical(qh, 2 * p) & one, 4);
                var highBits = Vector256.ShiftLeft(Vector256.ShiftRightLogical(qh, 2 * p + 1) & one, 4);
                (Vector256.Load(low) | lowBits).Store(low);
                (Vector256.Load(high) | highBits).Store(high);
            }
        }
    }

    public static float Dot(byte* decoded, byte* activations, int blocks) =>
        IntegerDot.MinsScalar((DecodedSuperBlock*)decoded, (BlockQ8K*)activations, blocks);

    public static void Dot4(byte* decoded, byte* activations, nint stride, int blocks, float* results) =>
        IntegerDot4.MinsScalar((DecodedSuperBlock*)decoded, activations, stride, blocks, results);
}

/// <summary>Q2_K: weight = d·sc·q − dmin·m with 2-bit q and 4-bit sc, m per 16 weights.</summary>
internal readonly unsafe struct Q2KKernel : IWeightKernel
{
    public static GgmlType Type => GgmlType.Q2_K;
    public static int BlockWeights => KQuantLayout.SuperBlock;
    public static int DecodedBlockBytes => sizeof(DecodedSuperBlock);

    public static void Decode(byte* source, int blocks, byte* destination)
    {
        var b = (BlockQ2K*)source;
        var o = (DecodedSuperBlock*)destination;
        var three = Vector256.Create((byte)3);
        for (var i = 0; i < blocks; i++, b++, o++)
        {
            o->D = (float)b->D;
            o->DMin = (float)b->DMin;
            var scales = (byte*)&b->Scales;
            for (var g = 0; g < 16; g++) SuperBlockDecoding.SetGroup(o, g, scales[g] & 0xF, scales[g] >> 4);
            // Bits shift..shift+1 of the 32 bytes of half h are the 32 weights from 128·h + 16·shift, in order.
            var qs = (byte*)&b->Qs;
            for (var half = 0; half < 2; half++)
            {
                var q = Vector256.Load(qs + 32 * half);
                for (var shift = 0; shift < 8; shift += 2)
                {
                    (Vector256.ShiftRightLogical(q, shift) & three).Store(o->Values + 128 * half + 16 * shift);
                }
            }
        }
    }

    public static float Dot(byte* decoded, byte* activations, int blocks) =>
        IntegerDot.MinsFirst((DecodedSuperBlock*)decoded, (BlockQ8K*)activations, blocks);

    public static void Dot4(byte* decoded, byte* activations, nint stride, int blocks, float* results) =>
        IntegerDot4.Each(&Dot, decoded, activations, stride, blocks, results);
}

/// <summary>Q3_K: weight = d·sc·(q − 4) with 3-bit q (2 bits in qs, the third in hmask) and signed 6-bit sc per 16
/// weights. Decoded to the signed code q − 4, as ggml's kernel subtracts the 4 inside each lane.</summary>
internal readonly unsafe struct Q3KKernel : IWeightKernel
{
    public static GgmlType Type => GgmlType.Q3_K;
    public static int BlockWeights => KQuantLayout.SuperBlock;
    public static int DecodedBlockBytes => sizeof(DecodedSignedSuperBlock);

    public static void Decode(byte* source, int blocks, byte* destination)
    {
        var b = (BlockQ3K*)source;
        var o = (DecodedSignedSuperBlock*)destination;
        var three = Vector256.Create((byte)3);
        var one = Vector256.Create((byte)1);
        var four = Vector256.Create((sbyte)4);
        for (var i = 0; i < blocks; i++, b++, o++)
        {
            o->D = (float)b->D;
            var scales = new ReadOnlySpan<byte>(&b->Scales, 12);
            for (var g = 0; g < 16; g++)
            {
                var lanes = o->Scales + 8 * g;
                var sc = (short)Q3KCodec.UnpackScale(g, scales);
                for (var l = 0; l < 8; l++) lanes[l] = sc;
            }
            var qs = (byte*)&b->Qs;
            var hmask = Vector256.Load((byte*)&b->HMask);
            for (var half = 0; half < 2; half++)
            {
                var q = Vector256.Load(qs + 32 * half);
                for (var pair = 0; pair < 4; pair++)
                {
                    var low = Vector256.ShiftRightLogical(q, 2 * pair) & three;
                    var high = Vector256.ShiftLeft(Vector256.ShiftRightLogical(hmask, 4 * half + pair) & one, 2);
                    var code = (low | high).AsSByte() - four;
                    code.Store(o->Signed + 128 * half + 32 * pair);
                    Vector256.Abs(code).AsByte().Store(o->Magnitudes + 128 * half + 32 * pair);
                }
            }
        }
    }

    public static float Dot(byte* decoded, byte* activations, int blocks) =>
        IntegerDot.Signed((DecodedSignedSuperBlock*)decoded, (BlockQ8K*)activations, blocks);

    public static void Dot4(byte* decoded, byte* activations, nint stride, int blocks, float* results) =>
        IntegerDot4.Each(&Dot, decoded, activations, stride, blocks, results);
}

/// <summary>Q6_K: weight = d·sc·(q − 32) with 6-bit q (4 bits in ql, 2 in qh) and signed 8-bit sc per 16 weights;
/// the −32·sc each weight owes becomes the group's min.</summary>
internal readonly unsafe struct Q6KKernel : IWeightKernel
{
    public static GgmlType Type => GgmlType.Q6_K;
    public static int BlockWeights => KQuantLayout.SuperBlock;
    public static int DecodedBlockBytes => sizeof(DecodedSuperBlock);

    public static void Decode(byte* source, int blocks, byte* destination)
    {
        var b = (BlockQ6K*)source;
        var o = (DecodedSuperBlock*)destination;
        var nibble = Vector256.Create((byte)0x0F);
        var three = Vector256.Create((byte)3);
        for (var i = 0; i < blocks; i++, b++, o++)
        {
            var d = (float)b->D;
            o->D = d;
            o->DMin = d;
            var sc = (sbyte*)&b->Scales;
            for (var g = 0; g < 16; g++) SuperBlockDecoding.SetGroup(o, g, sc[g], 32 * sc[g]);
            var ql = (byte*)&b->Ql;
            var qh = (byte*)&b->Qh;
            for (var half = 0; half < 2; half++)
            {
                var a = Vector256.Load(ql + 64 * half);
                var c = Vector256.Load(ql + 64 * half + 32);
                var h = Vector256.Load(qh + 32 * half);
                var values = o->Values + 128 * half;
                ((a & nibble) | Vector256.ShiftLeft(h & three, 4)).Store(values);
                ((c & nibble) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(h, 2) & three, 4)).Store(values + 32);
                (Vector256.ShiftRightLogical(a, 4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(h, 4) & three, 4)).Store(values + 64);
                (Vector256.ShiftRightLogical(c, 4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(h, 6), 4)).Store(values + 96);
            }
        }
    }

    public static float Dot(byte* decoded, byte* activations, int blocks) =>
        IntegerDot.OffsetInLanes((DecodedSuperBlock*)decoded, (BlockQ8K*)activations, blocks);

    public static void Dot4(byte* decoded, byte* activations, nint stride, int blocks, float* results) =>
        IntegerDot4.OffsetInLanes((DecodedSuperBlock*)decoded, activations, stride, blocks, results);
}

/// <summary>IQ4_XS: weight = d·(ls − 32)·kvalues[q] with 4-bit indices into the non-linear grid and 6-bit ls per 32.</summary>
internal readonly unsafe struct IQ4XSKernel : IWeightKernel
{
    public static GgmlType Type => GgmlType.IQ4_XS;
    public static int BlockWeights => BlockIQ4XS.Weights;
    public static int DecodedBlockBytes => sizeof(DecodedSignedSuperBlock);

    public static void Decode(byte* source, int blocks, byte* destination)
    {
        var b = (BlockIQ4XS*)source;
        var o = (DecodedSignedSuperBlock*)destination;
        for (var i = 0; i < blocks; i++, b++, o++)
        {
            o->D = Fp16.ToFloat(b->D);
            var scalesLow = (byte*)&b->ScalesL;
            var qs = (byte*)&b->Qs;
            for (var ib = 0; ib < BlockIQ4XS.SubBlocks; ib++)
            {
                var ls = ((scalesLow[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b->ScalesH >> (2 * ib)) & 3) << 4);
                var lanes = o->Scales + 16 * ib;
                for (var l = 0; l < 16; l++) lanes[l] = (short)(ls - 32);
                IQ4Lookup.Decode(qs + 16 * ib, o->Signed + 32 * ib, o->Magnitudes + 32 * ib);
            }
        }
    }

    public static float Dot(byte* decoded, byte* activations, int blocks) =>
        IntegerDot.Signed((DecodedSignedSuperBlock*)decoded, (BlockQ8K*)activations, blocks);

    public static void Dot4(byte* decoded, byte* activations, nint stride, int blocks, float* results) =>
        IntegerDot4.Each(&Dot, decoded, activations, stride, blocks, results);
}

/// <summary>IQ4_XS through ggml's panel kernel (iqp.cpp), which llama.cpp uses for batches of at least eight tokens
/// and row counts that are multiples of 8.</summary>
internal readonly unsafe struct IQ4XSPanelKernel : IWeightKernel
{
    public static GgmlType Type => GgmlType.IQ4_XS;
    public static int BlockWeights => BlockIQ4XS.Weights;
    public static int DecodedBlockBytes => sizeof(DecodedSignedSuperBlock);

    public static void Decode(byte* source, int blocks, byte* destination) => IQ4XSKernel.Decode(source, blocks, destination);

    public static float Dot(byte* decoded, byte* activations, int blocks) =>
        IntegerDot.SignedPanel((DecodedSignedSuperBlock*)decoded, (BlockQ8K*)activations, blocks);

    public static void Dot4(byte* decoded, byte* activations, nint stride, int blocks, float* results) =>
        IntegerDot4.SignedPanel((DecodedSignedSuperBlock*)decoded, activations, stride, blocks, results);
}

/// <summary>The kvalues_iq4nl lookup of IQ4_NL and IQ4_XS: 16 packed bytes to 32 grid values (low nibbles first).</summary>
internal static unsafe class IQ4Lookup
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Decode(byte* packed, sbyte* signed, byte* magnitudes)
    {
        var table = Vector128.Create(IQ4Grid.Levels);
        var q = Vector128.Load(packed);
        var low = Vector128.Shuffle(table, (q & Vector128.Create((byte)0x0F)).AsSByte());
        var high = Vector128.Shuffle(table, Vector128.ShiftRightLogical(q, 4).AsSByte());
        low.Store(signed);
        high.Store(signed + 16);
        Vector128.Abs(low).AsByte().Store(magnitudes);
        Vector128.Abs(high).AsByte().Store(magnitudes + 16);
    }
}
