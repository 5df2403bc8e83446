using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KQuant.Gguf;
using KQuant.Quants.Float;
using static KQuant.Quants.Legacy.LegacyBlockMath;

namespace KQuant.Quants.Legacy;

/// <summary>GGML_TYPE_Q4_0, matching llama.cpp v0.5.0. Without importance: quantize_row_q4_0_ref (scale = the signed value of
/// largest magnitude / −8, codes rounded by +8.5 and truncation, capped at 15). With importance: quantize_row_q4_0_impl.</summary>
public sealed class Q4_0Codec : BlockRowCodec<BlockQ4_0>
{
    public Q4_0Codec() : this(VectorizedByDefault) { }

    internal Q4_0Codec(bool vectorized) : base(vectorized) { }

    public override GgmlType Type => GgmlType.Q4_0;

    protected override void QuantizeBlocks(ReadOnlySpan<float> source, ReadOnlySpan<float> importance, Span<BlockQ4_0> blocks)
    {
        if (Vectorized) QuantizeVector256(source, blocks);
        else QuantizeScalar(source, blocks);
    }

    protected override void DequantizeBlocks(ReadOnlySpan<BlockQ4_0> blocks, Span<float> destination)
    {
        if (Vectorized) DequantizeVector256(blocks, destination);
        else DequantizeScalar(blocks, destination);
    }

    private static void QuantizeScalar(ReadOnlySpan<float> source, Span<BlockQ4_0> blocks)
    {
        for (var ib = 0; ib < blocks.Length; ib++)
        {
            var x = source.Slice(ib * BlockWeights, BlockWeights);
            ref var block = ref blocks[ib];
            var d = SignedAbsMax(x) / -8f;
            var id = d != 0 ? 1f / d : 0f;
            block.D = Fp16.FromFloat(d);
            for (var j = 0; j < 16; j++)
            {
                block.Qs[j] = (byte)(Code(x[j] * id) | (Code(x[j + 16] * id) << 4));
            }
        }

        static int Code(float scaled) => Math.Min(15, (int)(sbyte)TruncateLikeX86(scaled + 8.5f));
    }

    private static void QuantizeVector256(ReadOnlySpan<float> source, Span<BlockQ4_0> blocks)
    {
        ref var x = ref MemoryMarshal.GetReference(source);
        for (var ib = 0; ib < blocks.Length; ib++, x = ref Unsafe.Add(ref x, BlockWeights))
        {
            ref var block = ref blocks[ib];
            var d = SignedAbsMax(ref x) / -8f;
            var id = Vector256.Create(d != 0 ? 1f / d : 0f);
            block.D = Fp16.FromFloat(d);
            NibblePacking.PackNibbles(Code(ref x, 0, id), Code(ref x, 8, id), Code(ref x, 16, id), Code(ref x, 24, id))
                .StoreUnsafe(ref block.Qs[0]);
        }

        static Vector256<int> Code(ref float x, nuint offset, Vector256<float> id) =>
            Vector256.Min(LowByteSigned(TruncateLikeX86(Vector256.LoadUnsafe(ref x, offset) * id + Vector256.Create(8.5f))),
                Vector256.Create(15));
    }

    private static void DequantizeScalar(ReadOnlySpan<BlockQ4_0> blocks, Span<float> destination)
    {
        for (var ib = 0; ib < blocks.Length; ib++)
        {
            var d = Fp16.ToFloat(blocks[ib].D);
            ReadOnlySpan<byte> qs = blocks[ib].Qs;
            var y = destination.Slice(ib * BlockWeights, BlockWeights);
            for (var j = 0; j < 16; j++)
            {
                y[j] = ((qs[j] & 0x0F) - 8) * d;
                y[j + 16] = ((qs[j] >> 4) - 8) * d;
            }
        }
    }

    private static void DequantizeVector256(ReadOnlySpan<BlockQ4_0> blocks, Span<float> destination)
    {
        ref var y = ref MemoryMarshal.GetReference(destination);
        var eight = Vector256.Create(8);
        for (var ib = 0; ib < blocks.Length; ib++, y = ref Unsafe.Add(ref y, BlockWeights))
        {
            var d = Vector256.Create(Fp16.ToFloat(blocks[ib].D));
            var (q0, q1, q2, q3) = NibblePacking.UnpackNibbles(Vector128.LoadUnsafe(in blocks[ib].Qs[0]));
            (Vector256.ConvertToSingle(q0 - eight) * d).StoreUnsafe(ref y);
            (Vector256.ConvertToSingle(q1 - eight) * d).StoreUnsafe(ref y, 8);
            (Vector256.ConvertToSingle(q2 - eight) * d).StoreUnsafe(ref y, 16);
            (Vector256.ConvertToSingle(q3 - eight) * d).StoreUnsafe(ref y, 24);
        }
    }
}
