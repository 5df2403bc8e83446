using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KQuant.Gguf;
using KQuant.Quants.Float;
using static KQuant.Quants.Legacy.LegacyBlockMath;

namespace KQuant.Quants.Legacy;

/// <summary>GGML_TYPE_Q5_0 as llama.cpp v0.5.0 writes it. Without importance, quantize_row_q5_0_ref: scale = (value of largest
/// magnitude) / −16, code = min(31, trunc(x/scale + 16.5)). With importance, quantize_row_q5_0_impl: make_qx_quants with
/// weights qw·√(σ² + x²).</summary>
public sealed class Q50Codec : BlockRowCodec<BlockQ50>
{
    private const int Nmax = 16;

    public Q50Codec() : this(VectorizedByDefault) { }

    internal Q50Codec(bool vectorized) : base(vectorized) { }

    public override GgmlType Type => GgmlType.Q5_0;

    protected override void QuantizeBlocks(ReadOnlySpan<float> source, ReadOnlySpan<float> importance, Span<BlockQ50> blocks)
    {
        if (!importance.IsEmpty) QuantizeWeighted(source, importance, blocks);
        else if (Vectorized) QuantizeVector256(source, blocks);
        else QuantizeScalar(source, blocks);
    }

    protected override void DequantizeBlocks(ReadOnlySpan<BlockQ50> blocks, Span<float> destination)
    {
        if (Vectorized) DequantizeVector256(blocks, destination);
        else DequantizeScalar(blocks, destination);
    }

    private static void QuantizeScalar(ReadOnlySpan<float> source, Span<BlockQ50> blocks)
    {
        Span<byte> levels = stackalloc byte[BlockWeights];
        for (var ib = 0; ib < blocks.Length; ib++)
        {
            var x = source.Slice(ib * BlockWeights, BlockWeights);
            ref var block = ref blocks[ib];
            var d = SignedAbsMax(x) / -Nmax;
            var id = d != 0 ? 1f / d : 0f;
            block.D = Fp16.FromFloat(d);
            for (var j = 0; j < BlockWeights; j++)
            {
                levels[j] = (byte)Math.Min(31, (int)(sbyte)TruncateLikeX86(x[j] * id + 16.5f));
            }
            BinaryPrimitives.WriteUInt32LittleEndian(block.Qh, NibblePacking.PackFiveBitLevels(levels, block.Qs));
        }
    }

    private static void QuantizeVector256(ReadOnlySpan<float> source, Span<BlockQ50> blocks)
    {
        ref var x = ref MemoryMarshal.GetReference(source);
        for (var ib = 0; ib < blocks.Length; ib++, x = ref Unsafe.Add(ref x, BlockWeights))
        {
            ref var block = ref blocks[ib];
            var d = SignedAbsMax(ref x) / -Nmax;
            var id = Vector256.Create(d != 0 ? 1f / d : 0f);
            block.D = Fp16.FromFloat(d);
            var q0 = Code(ref x, 0, id);
            var q1 = Code(ref x, 8, id);
            var q2 = Code(ref x, 16, id);
            var q3 = Code(ref x, 24, id);
            NibblePacking.PackNibbles(q0, q1, q2, q3).StoreUnsafe(ref block.Qs[0]);
            BinaryPrimitives.WriteUInt32LittleEndian(block.Qh, NibblePacking.FifthBits(q0, q1, q2, q3));
        }

        static Vector256<int> Code(ref float x, nuint offset, Vector256<float> id) =>
            Vector256.Min(LowByteSigned(TruncateLikeX86(Vector256.LoadUnsafe(ref x, offset) * id + Vector256.Create(16.5f))),
                Vector256.Create(31));
    }

    private static void QuantizeWeighted(ReadOnlySpan<float> source, ReadOnlySpan<float> importance, Span<BlockQ50> blocks)
    {
        var sigma2 = MeanSquare(source);
        Span<float> weights = stackalloc float[BlockWeights];
        Span<sbyte> levels = stackalloc sbyte[BlockWeights];
        for (var ib = 0; ib < blocks.Length; ib++)
        {
            var x = source.Slice(ib * BlockWeights, BlockWeights);
            ImportanceWeights(x, importance.Slice(ib * BlockWeights, BlockWeights), sigma2, weights);
            ref var block = ref blocks[ib];
            block.D = Fp16.FromFloat(BlockSolvers.MakeQxQuants(Nmax, x, levels, weights));
            BinaryPrimitives.WriteUInt32LittleEndian(block.Qh, NibblePacking.PackFiveBitLevels(MemoryMarshal.AsBytes(levels), block.Qs));
        }
    }

    private static void DequantizeScalar(ReadOnlySpan<BlockQ50> blocks, Span<float> destination)
    {
        for (var ib = 0; ib < blocks.Length; ib++)
        {
            var d = Fp16.ToFloat(blocks[ib].D);
            var qh = BinaryPrimitives.ReadUInt32LittleEndian(blocks[ib].Qh);
            ReadOnlySpan<byte> qs = blocks[ib].Qs;
            var y = destination.Slice(ib * BlockWeights, BlockWeights);
            for (var j = 0; j < 16; j++)
            {
                var high0 = (int)((qh >> j) << 4) & 0x10;
                var high1 = (int)(qh >> (j + 12)) & 0x10;
                y[j] = (((qs[j] & 0x0F) | high0) - Nmax) * d;
                y[j + 16] = (((qs[j] >> 4) | high1) - Nmax) * d;
            }
        }
    }

    private static void DequantizeVector256(ReadOnlySpan<BlockQ50> blocks, Span<float> destination)
    {
        ref var y = ref MemoryMarshal.GetReference(destination);
        var offset = Vector256.Create(Nmax);
        for (var ib = 0; ib < blocks.Length; ib++, y = ref Unsafe.Add(ref y, BlockWeights))
        {
            var d = Vector256.Create(Fp16.ToFloat(blocks[ib].D));
            var (q0, q1, q2, q3) = NibblePacking.UnpackNibbles(Vector128.LoadUnsafe(in blocks[ib].Qs[0]));
            var (h0, h1, h2, h3) = NibblePacking.UnpackFifthBits(BinaryPrimitives.ReadUInt32LittleEndian(blocks[ib].Qh));
            (Vector256.ConvertToSingle((q0 | h0) - offset) * d).StoreUnsafe(ref y);
            (Vector256.ConvertToSingle((q1 | h1) - offset) * d).StoreUnsafe(ref y, 8);
            (Vector256.ConvertToSingle((q2 | h2) - offset) * d).StoreUnsafe(ref y, 16);
            (Vector256.ConvertToSingle((q3 | h3) - offset) * d).StoreUnsafe(ref y, 24);
        }
    }
}
