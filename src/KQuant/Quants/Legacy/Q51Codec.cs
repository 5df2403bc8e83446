using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KQuant.Gguf;
using KQuant.Quants.Float;
using static KQuant.Quants.Legacy.LegacyBlockMath;

namespace KQuant.Quants.Legacy;

/// <summary>GGML_TYPE_Q5_1 as llama.cpp v0.5.0 writes it. Without importance, quantize_row_q5_1_ref: offset = block minimum,
/// scale = (max − min) / 31, code = trunc((x − min)/scale + 0.5) (no cap: the rounding never exceeds 31). With importance,
/// quantize_row_q5_1_impl: make_qkx3_quants (nmax 31, rmin −0.9, rdelta 0.05, 36 steps) with weights qw·√(σ² + x²).</summary>
public sealed class Q51Codec : BlockRowCodec<BlockQ51>
{
    private const int Nmax = 31;

    public Q51Codec() : this(VectorizedByDefault) { }

    internal Q51Codec(bool vectorized) : base(vectorized) { }

    public override GgmlType Type => GgmlType.Q5_1;

    protected override void QuantizeBlocks(ReadOnlySpan<float> source, ReadOnlySpan<float> importance, Span<BlockQ51> blocks)
    {
        if (!importance.IsEmpty) QuantizeWeighted(source, importance, blocks);
        else if (Vectorized) QuantizeVector256(source, blocks);
        else QuantizeScalar(source, blocks);
    }

    protected override void DequantizeBlocks(ReadOnlySpan<BlockQ51> blocks, Span<float> destination)
    {
        if (Vectorized) DequantizeVector256(blocks, destination);
        else DequantizeScalar(blocks, destination);
    }

    private static void QuantizeScalar(ReadOnlySpan<float> source, Span<BlockQ51> blocks)
    {
        Span<byte> levels = stackalloc byte[BlockWeights];
        for (var ib = 0; ib < blocks.Length; ib++)
        {
            var x = source.Slice(ib * BlockWeights, BlockWeights);
            ref var block = ref blocks[ib];
            var (min, max) = MinMax(x);
            var d = (max - min) / Nmax;
            var id = d != 0 ? 1f / d : 0f;
            block.D = Fp16.FromFloat(d);
            block.M = Fp16.FromFloat(min);
            for (var j = 0; j < BlockWeights; j++)
            {
                levels[j] = (byte)TruncateLikeX86((x[j] - min) * id + 0.5f);
            }
            BinaryPrimitives.WriteUInt32LittleEndian(block.Qh, NibblePacking.PackFiveBitLevels(levels, block.Qs));
        }
    }

    private static void QuantizeVector256(ReadOnlySpan<float> source, Span<BlockQ51> blocks)
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
            var q0 = Code(ref x, 0, minV, id);
            var q1 = Code(ref x, 8, minV, id);
            var q2 = Code(ref x, 16, minV, id);
            var q3 = Code(ref x, 24, minV, id);
            NibblePacking.PackNibbles(q0, q1, q2, q3).StoreUnsafe(ref block.Qs[0]);
            BinaryPrimitives.WriteUInt32LittleEndian(block.Qh, NibblePacking.FifthBits(q0, q1, q2, q3));
        }

        static Vector256<int> Code(ref float x, nuint offset, Vector256<float> min, Vector256<float> id) =>
            TruncateLikeX86((Vector256.LoadUnsafe(ref x, offset) - min) * id + Vector256.Create(0.5f));
    }

    private static void QuantizeWeighted(ReadOnlySpan<float> source, ReadOnlySpan<float> importance, Span<BlockQ51> blocks)
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
            BinaryPrimitives.WriteUInt32LittleEndian(block.Qh, NibblePacking.PackFiveBitLevels(levels, block.Qs));
        }
    }

    private static void DequantizeScalar(ReadOnlySpan<BlockQ51> blocks, Span<float> destination)
    {
        for (var ib = 0; ib < blocks.Length; ib++)
        {
            var d = Fp16.ToFloat(blocks[ib].D);
            var m = Fp16.ToFloat(blocks[ib].M);
            var qh = BinaryPrimitives.ReadUInt32LittleEndian(blocks[ib].Qh);
            ReadOnlySpan<byte> qs = blocks[ib].Qs;
            var y = destination.Slice(ib * BlockWeights, BlockWeights);
            for (var j = 0; j < 16; j++)
            {
                var high0 = (int)((qh >> j) << 4) & 0x10;
                var high1 = (int)(qh >> (j + 12)) & 0x10;
                y[j] = ((qs[j] & 0x0F) | high0) * d + m;
                y[j + 16] = ((qs[j] >> 4) | high1) * d + m;
            }
        }
    }

    private static void DequantizeVector256(ReadOnlySpan<BlockQ51> blocks, Span<float> destination)
    {
        ref var y = ref MemoryMarshal.GetReference(destination);
        for (var ib = 0; ib < blocks.Length; ib++, y = ref Unsafe.Add(ref y, BlockWeights))
        {
            var d = Vector256.Create(Fp16.ToFloat(blocks[ib].D));
            var m = Vector256.Create(Fp16.ToFloat(blocks[ib].M));
            var (q0, q1, q2, q3) = NibblePacking.UnpackNibbles(Vector128.LoadUnsafe(in blocks[ib].Qs[0]));
            var (h0, h1, h2, h3) = NibblePacking.UnpackFifthBits(BinaryPrimitives.ReadUInt32LittleEndian(blocks[ib].Qh));
            (Vector256.ConvertToSingle(q0 | h0) * d + m).StoreUnsafe(ref y);
            (Vector256.ConvertToSingle(q1 | h1) * d + m).StoreUnsafe(ref y, 8);
            (Vector256.ConvertToSingle(q2 | h2) * d + m).StoreUnsafe(ref y, 16);
            (Vector256.ConvertToSingle(q3 | h3) * d + m).StoreUnsafe(ref y, 24);
        }
    }
}
