using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using KQuant.Quants;
using KQuant.Quants.Float;
using KQuant.Quants.K;
using KQuant.Quants.Legacy;

namespace KQuant.Model.Kernels;

/// <summary>Converts one row of float activations into an <see cref="ActivationFormat"/>, giving the same bytes as the
/// from_float ggml-cpu uses on x86 (llama.cpp v0.5.0): quantize_row_q8_0 / q8_1 of arch/x86/quants.c (scale max|x|/127,
/// codes rounded half to even by multiplying with 127/max|x|), quantize_row_q8_K = quantize_row_q8_K_ref, and fp16/bf16
/// rounding to nearest even. Each format has an AVX2 path and a scalar one; both give identical bytes.</summary>
internal static class ActivationQuantizer
{
    public static void Quantize(ActivationFormat format, ReadOnlySpan<float> source, Span<byte> destination) =>
        Quantize(format, source, destination, Avx2.IsSupported);

    internal static void Quantize(ActivationFormat format, ReadOnlySpan<float> source, Span<byte> destination, bool vectorized)
    {
        switch (format)
        {
            case ActivationFormat.F32:
                source.CopyTo(MemoryMarshal.Cast<byte, float>(destination));
                break;
            case ActivationFormat.F16:
                RoundToHalf<Fp16>(source, MemoryMarshal.Cast<byte, float>(destination), vectorized);
                break;
            case ActivationFormat.BF16:
                RoundToHalf<Bf16>(source, MemoryMarshal.Cast<byte, float>(destination), vectorized);
                break;
            case ActivationFormat.Q8_0:
                QuantizeQ8<BlockQ80>(source, destination, withSum: false, vectorized);
                break;
            case ActivationFormat.Q8_1:
                QuantizeQ8<BlockQ81>(source, destination, withSum: true, vectorized);
                break;
            case ActivationFormat.Q8_K:
                if (vectorized) QuantizeQ8KVector256(source, MemoryMarshal.Cast<byte, BlockQ8K>(destination));
                else QuantizeQ8KScalar(source, MemoryMarshal.Cast<byte, BlockQ8K>(destination));
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(format));
        }
    }

    private static void RoundToHalf<THalf>(ReadOnlySpan<float> source, Span<float> destination, bool vectorized) where THalf : IHalfFloatFormat
    {
        var i = 0;
        if (vectorized)
        {
            ref var s = ref MemoryMarshal.GetReference(source);
            ref var d = ref MemoryMarshal.GetReference(destination);
            for (; i + 8 <= source.Length; i += 8)
            {
                THalf.ToFloat(THalf.FromFloat(Vector256.LoadUnsafe(ref s, (nuint)i))).StoreUnsafe(ref d, (nuint)i);
            }
        }
        for (; i < source.Length; i++) destination[i] = THalf.ToFloat(THalf.FromFloat(source[i]));
    }

    // Q8_0 and Q8_1 share their layout up to the sum: Q8_1 puts s after d and shifts the codes by two bytes.
    private static void QuantizeQ8<TBlock>(ReadOnlySpan<float> source, Span<byte> destination, bool withSum, bool vectorized)
        where TBlock : unmanaged
    {
        var blockBytes = Unsafe.SizeOf<TBlock>();
        var codesOffset = withSum ? 4 : 2;
        for (var ib = 0; ib < source.Length / 32; ib++)
        {
            var x = source.Slice(32 * ib, 32);
            var block = destination.Slice(blockBytes * ib, blockBytes);
            var codes = MemoryMarshal.Cast<byte, sbyte>(block.Slice(codesOffset, 32));
            float maxAbs;
            int sum;
            if (vectorized)
            {
                ref var px = ref MemoryMarshal.GetReference(x);
                var v0 = Vector256.LoadUnsafe(ref px);
                var v1 = Vector256.LoadUnsafe(ref px, 8);
                var v2 = Vector256.LoadUnsafe(ref px, 16);
                var v3 = Vector256.LoadUnsafe(ref px, 24);
                var m = Vector256.Max(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.Max(Vector256.Abs(v2), Vector256.Abs(v3)));
                maxAbs = HorizontalMax(m);
                var id = Vector256.Create(maxAbs != 0f ? 127f / maxAbs : 0f);
                var i0 = Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(v0 * id));
                var i1 = Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(v1 * id));
                var i2 = Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(v2 * id));
                var i3 = Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(v3 * id));
                sum = Vector256.Sum((i0 + i1) + (i2 + i3));
                // packs work per 128-bit lane; the permute restores code order.
                var words01 = Avx2.PackSignedSaturate(i0, i1);
                var words23 = Avx2.PackSignedSaturate(i2, i3);
                var bytes = Avx2.PackSignedSaturate(words01, words23);
                bytes = Avx2.PermuteVar8x32(bytes.AsInt32(), Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7)).AsSByte();
                bytes.StoreUnsafe(ref MemoryMarshal.GetReference(codes));
            }
            else
            {
                maxAbs = 0f;
                foreach (var v in x) maxAbs = MathF.Max(maxAbs, MathF.Abs(v));
                var id = maxAbs != 0f ? 127f / maxAbs : 0f;
                sum = 0;
                for (var j = 0; j < 32; j++)
                {
                    var q = (int)MathF.Round(x[j] * id, MidpointRounding.ToEven);
                    codes[j] = (sbyte)Math.Clamp(q, -128, 127);
                    sum += q;
                }
            }
            var d = maxAbs / 127f;
            BitConverter.TryWriteBytes(block, Fp16.FromFloat(d));
            if (withSum) BitConverter.TryWriteBytes(block[2..], Fp16.FromFloat(d * sum));
        }
    }

    private static float HorizontalMax(Vector256<float> v)
    {
        var m = Vector128.Max(v.GetLower(), v.GetUpper());
        m = Vector128.Max(m, Vector128.Shuffle(m, Vector128.Create(2, 3, 0, 1)));
        m = Vector128.Max(m, Vector128.Shuffle(m, Vector128.Create(1, 0, 3, 2)));
        return m.ToScalar();
    }

    /// <summary>quantize_row_q8_K_ref (the Q8_K codec).</summary>
    private static void QuantizeQ8KScalar(ReadOnlySpan<float> source, Span<BlockQ8K> blocks) =>
        Q8K.Quantize(source, MemoryMarshal.AsBytes(blocks), default);

    private static readonly Q8KCodec Q8K = new();

    /// <summary>quantize_row_q8_K_ref on 8 lanes: the value of largest magnitude (the first one on ties) sets the
    /// scale -127/max, codes are nearest_int (half to even) of x·scale capped at 127, and every 16 codes are summed.</summary>
    private static void QuantizeQ8KVector256(ReadOnlySpan<float> source, Span<BlockQ8K> blocks)
    {
        const int n = KQuantLayout.SuperBlock;
        for (var ib = 0; ib < blocks.Length; ib++)
        {
            var x = source.Slice(n * ib, n);
            ref var px = ref MemoryMarshal.GetReference(x);
            var absMax = Vector256<float>.Zero;
            for (var j = 0; j < n; j += 8) absMax = Vector256.Max(absMax, Vector256.Abs(Vector256.LoadUnsafe(ref px, (nuint)j)));
            var amax = HorizontalMax(absMax);
            ref var block = ref blocks[ib];
            if (amax == 0f)
            {
                block = default;
                continue;
            }
            var max = 0f;
            var target = Vector256.Create(amax);
            for (var j = 0; j < n; j += 8)
            {
                var hits = Vector256.Equals(Vector256.Abs(Vector256.LoadUnsafe(ref px, (nuint)j)), target).ExtractMostSignificantBits();
                if (hits != 0)
                {
                    max = x[j + BitOperations.TrailingZeroCount(hits)];
                    break;
                }
            }
            var iscale = -127f / max;
            if (!float.IsFinite(iscale))
            {
                // Subnormal maxima overflow the scale; the scalar reference reproduces ggml's bytes for them.
                Q8K.Quantize(x, MemoryMarshal.AsBytes(blocks.Slice(ib, 1)), default);
                continue;
            }
            var scale = Vector256.Create(iscale);
            var cap = Vector256.Create(127);
            ref var qs = ref Unsafe.As<SBytes256, sbyte>(ref block.Qs);
            ref var sums = ref Unsafe.As<Shorts16, short>(ref block.BlockSums);
            for (var j = 0; j < n; j += 32)
            {
                var i0 = Vector256.Min(Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(Vector256.LoadUnsafe(ref px, (nuint)j) * scale)), cap);
                var i1 = Vector256.Min(Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(Vector256.LoadUnsafe(ref px, (nuint)j + 8) * scale)), cap);
                var i2 = Vector256.Min(Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(Vector256.LoadUnsafe(ref px, (nuint)j + 16) * scale)), cap);
                var i3 = Vector256.Min(Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(Vector256.LoadUnsafe(ref px, (nuint)j + 24) * scale)), cap);
                Unsafe.Add(ref sums, j / 16) = (short)Vector256.Sum(i0 + i1);
                Unsafe.Add(ref sums, j / 16 + 1) = (short)Vector256.Sum(i2 + i3);
                var bytes = Avx2.PackSignedSaturate(Avx2.PackSignedSaturate(i0, i1), Avx2.PackSignedSaturate(i2, i3));
                bytes = Avx2.PermuteVar8x32(bytes.AsInt32(), Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7)).AsSByte();
                bytes.StoreUnsafe(ref Unsafe.Add(ref qs, j));
            }
            block.D = 1f / iscale;
        }
    }
}
