using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using KQuant.Gguf;
using KQuant.Quants.Float;
using KQuant.Quants.IQ;
using KQuant.Quants.Legacy;

namespace KQuant.Model.Kernels;

// Kernels of the 32-weight formats. Q4_0, Q5_0, Q8_0 and IQ4_NL meet Q8_0 activations with signed codes; Q4_1 and Q5_1
// meet Q8_1 activations with unsigned codes plus an offset m per block. In every format code j of a block sits in the low
// nibble of byte j and code j+16 in its high nibble, with the fifth bit (Q5_*) at bit j of qh.

internal static unsafe class Block32Decoding
{
    /// <summary>The 32 codes of 16 packed bytes (plus the fifth bits of <paramref name="qh"/> as 16) as bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Codes(byte* packed, uint qh = 0)
    {
        var q = Vector128.Load(packed);
        var codes = Vector256.Create(q & Vector128.Create((byte)0x0F), Vector128.ShiftRightLogical(q, 4));
        return qh == 0 ? codes : codes | FifthBits(qh);
    }

    /// <summary>16 for each set bit of <paramref name="qh"/>, byte j for bit j (ggml's bytes_from_bits_32, scaled).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> FifthBits(uint qh)
    {
        var word = Vector256.Create(qh).AsByte();
        // Byte j takes byte j/8 of the word (indices stay within each 128-bit half, the word being repeated), then keeps
        // bit j%8 of it.
        var spread = Vector256.Shuffle(word, Vector256.Create(
            (byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 18, 18, 18, 18, 18, 18, 18, 18, 19, 19, 19, 19, 19, 19, 19, 19));
        var bits = Vector256.Create((byte)1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128,
            1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
        return ~Vector256.Equals(spread & bits, Vector256<byte>.Zero) & Vector256.Create((byte)16);
    }

    /// <summary>Stores signed codes and their magnitudes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreSigned(DecodedBlock32* o, Vector256<sbyte> signed)
    {
        signed.Store(o->Signed);
        Vector256.Abs(signed).AsByte().Store(o->Magnitudes);
    }
}

/// <summary>Q4_0: weight = d·(q − 8).</summary>
internal readonly unsafe struct Q40Kernel : IWeightKernel
{
    public static GgmlType Type => GgmlType.Q4_0;
    public static int BlockWeights => BlockQ40.Weights;
    public static int DecodedBlockBytes => sizeof(DecodedBlock32);

    public static void Decode(byte* source, int blocks, byte* destination)
    {
        var b = (BlockQ40*)source;
        var o = (DecodedBlock32*)destination;
        for (var i = 0; i < blocks; i++, b++, o++)
        {
            o->D = Fp16.ToFloat(b->D);
            Block32Decoding.StoreSigned(o, Block32Decoding.Codes((byte*)&b->Qs).AsSByte() - Vector256.Create((sbyte)8));
        }
    }

    public static float Dot(byte* decoded, byte* activations, int blocks) =>
        IntegerDot.SignedBlocks((DecodedBlock32*)decoded, (BlockQ80*)activations, blocks);

    public static void Dot4(byte* decoded, byte* activations, nint stride, int blocks, float* results) =>
        IntegerDot4.SignedBlocks((DecodedBlock32*)decoded, activations, stride, blocks, results);
}

/// <summary>Q4_0 as llama.cpp multiplies the matrices it repacks (ggml_gemm_q4_0_8x8_q8_0).</summary>
internal readonly unsafe struct Q40RepackedKernel : IWeightKernel
{
    public static GgmlType Type => GgmlType.Q4_0;
    public static int BlockWeights => BlockQ40.Weights;
    public static int DecodedBlockBytes => sizeof(DecodedBlock32);

    public static void Decode(byte* source, int blocks, byte* destination) => Q40Kernel.Decode(source, blocks, destination);

    public static float Dot(byte* decoded, byte* activations, int blocks) =>
        IntegerDot.RepackedBlocks((DecodedBlock32*)decoded, (BlockQ80*)activations, blocks);

    public static void Dot4(byte* decoded, byte* activations, nint stride, int blocks, float* results) =>
        IntegerDot4.RepackedBlocks((DecodedBlock32*)decoded, activations, stride, blocks, results);
}

/// <summary>Q5_0: weight = d·(q − 16) with 5-bit q.</summary>
internal readonly unsafe struct Q50Kernel : IWeightKernel
{
    public static GgmlType Type => GgmlType.Q5_0;
    public static int BlockWeights => BlockQ50.Weights;
    public static int DecodedBlockBytes => sizeof(DecodedBlock32);

    public static void Decode(byte* source, int blocks, byte* destination)
    {
        var b = (BlockQ50*)source;
        var o = (DecodedBlock32*)destination;
        for (var i = 0; i < blocks; i++, b++, o++)
        {
            o->D = Fp16.ToFloat(b->D);
            var qh = BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(&b->Qh, 4));
            Block32Decoding.StoreSigned(o, Block32Decoding.Codes((byte*)&b->Qs, qh).AsSByte() - Vector256.Create((sbyte)16));
        }
    }

    public static float Dot(byte* decoded, byte* activations, int blocks) =>
        IntegerDot.SignedBlocks((DecodedBlock32*)decoded, (BlockQ80*)activations, blocks);

    public static void Dot4(byte* decoded, byte* activations, nint stride, int blocks, float* results) =>
        IntegerDot4.SignedBlocks((DecodedBlock32*)decoded, activations, stride, blocks, results);
}

/// <summary>Q8_0: weight = d·q with signed 8-bit q.</summary>
internal readonly unsafe struct Q80Kernel : IWeightKernel
{
    public static GgmlType Type => GgmlType.Q8_0;
    public static int BlockWeights => BlockQ80.Weights;
    public static int DecodedBlockBytes => sizeof(DecodedBlock32);

    public static void Decode(byte* source, int blocks, byte* destination)
    {
        var b = (BlockQ80*)source;
        var o = (DecodedBlock32*)destination;
        for (var i = 0; i < blocks; i++, b++, o++)
        {
            o->D = Fp16.ToFloat(b->D);
            Block32Decoding.StoreSigned(o, Vector256.Load((sbyte*)&b->Qs));
        }
    }

    public static float Dot(byte* decoded, byte* activations, int blocks) =>
        IntegerDot.SignedBlocks((DecodedBlock32*)decoded, (BlockQ80*)activations, blocks);

    public static void Dot4(byte* decoded, byte* activations, nint stride, int blocks, float* results) =>
        IntegerDot4.SignedBlocks((DecodedBlock32*)decoded, activations, stride, blocks, results);
}

/// <summary>IQ4_NL: weight = d·kvalues[q]; the float tail of ggml_vec_dot_iq4_nl_q8_0.</summary>
internal readonly unsafe struct IQ4NLKernel : IWeightKernel
{
    public static GgmlType Type => GgmlType.IQ4_NL;
    public static int BlockWeights => BlockIQ4NL.Weights;
    public static int DecodedBlockBytes => sizeof(DecodedBlock32);

    public static void Decode(byte* source, int blocks, byte* destination)
    {
        var b = (BlockIQ4NL*)source;
        var o = (DecodedBlock32*)destination;
        for (var i = 0; i < blocks; i++, b++, o++)
        {
            o->D = Fp16.ToFloat(b->D);
            IQ4Lookup.Decode((byte*)&b->Qs, o->Signed, o->Magnitudes);
        }
    }

    public static float Dot(byte* decoded, byte* activations, int blocks) =>
        IntegerDot.SignedBlockPairs((DecodedBlock32*)decoded, (BlockQ80*)activations, blocks);

    public static void Dot4(byte* decoded, byte* activations, nint stride, int blocks, float* results) =>
        IntegerDot4.Each(&Dot, decoded, activations, stride, blocks, results);
}

/// <summary>IQ4_NL through tinyBLAS_Q0_AVX (matrices llama.cpp does not repack, batches of two tokens or more).</summary>
internal readonly unsafe struct IQ4NLTinyBlasKernel : IWeightKernel
{
    public static GgmlType Type => GgmlType.IQ4_NL;
    public static int BlockWeights => BlockIQ4NL.Weights;
    public static int DecodedBlockBytes => sizeof(DecodedBlock32);

    public static void Decode(byte* source, int blocks, byte* destination) => IQ4NLKernel.Decode(source, blocks, destination);

    public static float Dot(byte* decoded, byte* activations, int blocks) =>
        IntegerDot.SignedBlocks((DecodedBlock32*)decoded, (BlockQ80*)activations, blocks);

    public static void Dot4(byte* decoded, byte* activations, nint stride, int blocks, float* results) =>
        IntegerDot4.SignedBlocks((DecodedBlock32*)decoded, activations, stride, blocks, results);
}

/// <summary>IQ4_NL as llama.cpp multiplies the matrices it repacks (ggml_gemm_iq4_nl_8x8_q8_0).</summary>
internal readonly unsafe struct IQ4NLRepackedKernel : IWeightKernel
{
    public static GgmlType Type => GgmlType.IQ4_NL;
    public static int BlockWeights => BlockIQ4NL.Weights;
    public static int DecodedBlockBytes => sizeof(DecodedBlock32);

    public static void Decode(byte* source, int blocks, byte* destination) => IQ4NLKernel.Decode(source, blocks, destination);

    public static float Dot(byte* decoded, byte* activations, int blocks) =>
        IntegerDot.RepackedBlocks((DecodedBlock32*)decoded, (BlockQ80*)activations, blocks);

    public static void Dot4(byte* decoded, byte* activations, nint stride, int blocks, float* results) =>
        IntegerDot4.RepackedBlocks((DecodedBlock32*)decoded, activations, stride, blocks, results);
}

/// <summary>Q4_1: weight = d·q + m.</summary>
internal readonly unsafe struct Q41Kernel : IWeightKernel
{
    public static GgmlType Type => GgmlType.Q4_1;
    public static int BlockWeights => BlockQ41.Weights;
    public static int DecodedBlockBytes => sizeof(DecodedBlock32);

    public static void Decode(byte* source, int blocks, byte* destination)
    {
        var b = (BlockQ41*)source;
        var o = (DecodedBlock32*)destination;
        for (var i = 0; i < blocks; i++, b++, o++)
        {
            o->D = Fp16.ToFloat(b->D);
            o->M = Fp16.ToFloat(b->M);
            Block32Decoding.Codes((byte*)&b->Qs).Store(o->Magnitudes);
        }
    }

    public static float Dot(byte* decoded, byte* activations, int blocks) =>
        IntegerDot.OffsetBlocks((DecodedBlock32*)decoded, (BlockQ81*)activations, blocks);

    public static void Dot4(byte* decoded, byte* activations, nint stride, int blocks, float* results) =>
        IntegerDot4.Each(&Dot, decoded, activations, stride, blocks, results);
}

/// <summary>Q5_1: weight = d·q + m with 5-bit q.</summary>
internal readonly unsafe struct Q51Kernel : IWeightKernel
{
    public static GgmlType Type => GgmlType.Q5_1;
    public static int BlockWeights => BlockQ51.Weights;
    public static int DecodedBlockBytes => sizeof(DecodedBlock32);

    public static void Decode(byte* source, int blocks, byte* destination)
    {
        var b = (BlockQ51*)source;
        var o = (DecodedBlock32*)destination;
        for (var i = 0; i < blocks; i++, b++, o++)
        {
            o->D = Fp16.ToFloat(b->D);
            o->M = Fp16.ToFloat(b->M);
            var qh = BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(&b->Qh, 4));
            Block32Decoding.Codes((byte*)&b->Qs, qh).Store(o->Magnitudes);
        }
    }

    public static float Dot(byte* decoded, byte* activations, int blocks) =>
        IntegerDot.OffsetBlocks((DecodedBlock32*)decoded, (BlockQ81*)activations, blocks);

    public static void Dot4(byte* decoded, byte* activations, nint stride, int blocks, float* results) =>
        IntegerDot4.Each(&Dot, decoded, activations, stride, blocks, results);
}
