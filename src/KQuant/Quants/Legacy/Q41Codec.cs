using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KQuant.Gguf;
using KQuant.Quants.Float;
using static KQuant.Quants.Legacy.LegacyBlockMath;

namespace KQuant.Quants.Legacy;

/// <summary>GGML_TYPE_Q4_1 as llama.cpp v0.5.0 writes it. Without importance, quantize_row_q4_1_ref: offset = block minimum,
/// scale = (max − min) / 15, code = min(15, trunc((x − min)/scale + 0.5)). With importance, quantize_row_q4_1_impl:
/// make_qkx3_quants (nmax 15, rmin −0.9, rdelta 0.05, 36 steps) with weights qw·√(σ² + x²).</summary>
public sealed class Q41Codec : BlockRowCodec<BlockQ41>
{
    private const int Nmax = 15;

    public Q41Codec() : this(VectorizedByDefault) { }

    internal Q41Codec(bool vectorized) : base(vectorized) { }

    public override GgmlType Type => GgmlType.Q4_1;

    protected override void QuantizeBlocks(ReadOnlySpan<float> source, ReadOnlySpan<float> importance, Span<BlockQ41> blocks)
    {
        if (!importance.IsEmpty) QuantizeWeighted(source, importance, blocks);
        else if (Vectorized) QuantizeVector256(source, blocks);
        else QuantizeScalar(source, blocks);
    }

    protected override void DequantizeBlocks(ReadOnlySpan<BlockQ41> blocks, Span<float> destination)
    {
        if (Vectorized) DequantizeVector256(blocks, destination);
        else DequantizeScalar(blocks, destination);
    }

    private static void QuantizeScalar(ReadOnlySpan<float> source, Span<BlockQ41> blocks)
    {
        for (var ib = 0; ib < blocks.Length; ib++)
        {
            var x = source.Slice(ib * BlockWeights, BlockWeights);
            ref var block = ref blocks[ib];
            var (min, max) = MinMax(x);
            var d = (max - min) / Nmax;
            var id = d != 0 ? 1f / d : 0f;
            block.D = Fp16.FromFloat(d);
            block.M = Fp16.FromFloat(min);
            for (var j = 0; j < 16; j++)
            {
                block.Qs[j] = (byte)(Code((x[j] - min) * id) | (Code((x[j + 16] - min) * id) << 4));
            }
        }

        static int Code(float scaled) => Math.Min(Nmax, (int)(sbyte)TruncateLikeX86(scaled + 0.5f));
    }

    private static void QuantizeVector256(ReadOnlySpan<float> source, Span<BlockQ41> blocks)
    {
        ref var x = ref MemoryMarshal.GetReference(source);
        for (var ib = 0; ib < blocks.Length; ib++, x = ref Unsafe.Add(ref x, BlockWeights))
        {
            ref var block = ref blocks[ib];
            var (min, max) = MinMax(ref x);
            var d = (max - min) / Nmax;
            var id = Vector256.Create(d != 0 ? 1f / d : 0f);
            block.D = Fp16.FromFloat(d);
            block.M = Fp16.FromFloat(min);
            var minV = Vector256.Create(min);
            NibblePacking.PackNibbles(Code(ref x, 0, minV, id), Code(ref x, 8, minV, id), Code(ref x, 16, minV, id),
                Code(ref x, 24, minV, id)).StoreUnsafe(ref block.Qs[0]);
        }

        static Vector256<int> Code(ref float x, nuint offset, Vector256<float> min, Vector256<float> id) =>
            Vector256.Min(LowByteSigned(TruncateLikeX86((Vector256.LoadUnsafe(ref x, offset) - min) * id + Vector256.Create(0.5f))),
                Vector256.Create(Nmax));
    }

    private static void QuantizeWeighted(ReadOnlySpan<float> source, ReadOnlySpan<float> importance, Span<BlockQ41> blocks)
    {
        var sigma2 = MeanSquare(source);
        Span<float> weights = stackalloc float[BlockWeights];
        Span<byte> levels = stackalloc byte[BlockWeights];
        for (var ib = 0; ib < blocks.Length; ib++)
        {
            var x = source.Slice(ib * BlockWeights, BlockWeights);
            ImportanceWeights(x, importance.Slice(ib * BlockWeights, BlockWeights), sigma2, weights);
            ref var block = ref blocks[ib];
            var d = BlockSolvers.MakeQkx3Quants(Nmax, x, weights, levels, out var negatedMin, -0.9f, 0.05f, 36);
            block.D = Fp16.FromFloat(d);
            block.M = Fp16.FromFloat(-negatedMin);
            NibblePacking.PackNibbles(levels, block.Qs);
        }
    }

    private static void DequantizeScalar(ReadOnlySpan<BlockQ41> blocks, Span<float> destination)
    {
        for (var ib = 0; ib < blocks.Length; ib++)
        {
            var d = Fp16.ToFloat(blocks[ib].D);
            var m = Fp16.ToFloat(blocks[ib].M);
            ReadOnlySpan<byte> qs = blocks[ib].Qs;
            var y = destination.Slice(ib * BlockWeights, BlockWeights);
            for (var j = 0; j < 16; j++)
            {
                y[j] = (qs[j] & 0x0F) * d + m;
                y[j + 16] = (qs[j] >> 4) * d + m;
            }
        }
    }

    private static void DequantizeVector256(ReadOnlySpan<BlockQ41> blocks, Span<float> destination)
    {
        ref var y = ref MemoryMarshal.GetReference(destination);
        for (var ib = 0; ib < blocks.Length; ib++, y = ref Unsafe.Add(ref y, BlockWeights))
        {
            var d = Vector256.Create(Fp16.ToFloat(blocks[ib].D));
            var m = Vector256.Create(Fp16.ToFloat(blocks[ib].M));
            var (q0, q1, q2, q3) = NibblePacking.UnpackNibbles(Vector128.LoadUnsafe(in blocks[ib].Qs[0]));
            (Vector256.ConvertToSingle(q0) * d + m).StoreUnsafe(ref y);
            (Vector256.ConvertToSingle(q1) * d + m).StoreUnsafe(ref y, 8);
            (Vector256.ConvertToSingle(q2) * d + m).StoreUnsafe(ref y, 16);
            (Vector256.ConvertToSingle(q3) * d + m).StoreUnsafe(ref y, 24);
        }
    }
}
