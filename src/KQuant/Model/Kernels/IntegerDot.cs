using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using KQuant.Quants.Float;
using KQuant.Quants.K;
using KQuant.Quants.Legacy;

namespace KQuant.Model.Kernels;

/// <summary>Dot products of one decoded weight row with one quantized activation row. The integer part is exact, as
/// in ggml's vec_dot kernels (maddubs of unsigned weight bytes with signed activation bytes, madd with the scales,
/// sums in int32); each block then adds d_w·d_a·sum in float. AVX2 paths keep 8 float lanes and add them at the end;
/// the scalar paths (for CPUs without AVX2, and the tests' plain twin) add per block.</summary>
internal static unsafe class IntegerDot
{
    public static bool Vectorized => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Σ over super-blocks of D·dA·Σ_g Scale_g·Σ(Value·q) − DMin·dA·Σ_g Min_g·bsum_g.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SuperBlocks(DecodedSuperBlock* w, BlockQ8K* a, int count) =>
        Vectorized ? SuperBlocksVector256(w, a, count) : SuperBlocksScalar(w, a, count);

    internal static float SuperBlocksVector256(DecodedSuperBlock* w, BlockQ8K* a, int count)
    {
        var acc = Vector256<float>.Zero;
        for (var i = 0; i < count; i++, w++, a++)
        {
            var values = w->Values;
            var scales = w->Scales;
            var qs = (sbyte*)&a->Qs;
            var sum = Vector256<int>.Zero;
            for (var k = 0; k < 8; k++)
            {
                var products = Avx2.MultiplyAddAdjacent(Avx.LoadVector256(values + 32 * k), Avx.LoadVector256(qs + 32 * k));
                sum = Avx2.Add(sum, Avx2.MultiplyAddAdjacent(products, Avx.LoadVector256(scales + 16 * k)));
            }
            var mins = Avx2.MultiplyAddAdjacent(Avx.LoadVector256((short*)&a->BlockSums), Avx.LoadVector256(w->Mins));
            var da = a->D;
            acc = Fma.MultiplyAdd(Vector256.Create(w->D * da), Avx.ConvertToVector256Single(sum), acc);
            acc = Fma.MultiplyAdd(Vector256.Create(-w->DMin * da), Avx.ConvertToVector256Single(mins), acc);
        }
        return Vector256.Sum(acc);
    }

    internal static float SuperBlocksScalar(DecodedSuperBlock* w, BlockQ8K* a, int count)
    {
        var total = 0f;
        for (var i = 0; i < count; i++, w++, a++)
        {
            var qs = (sbyte*)&a->Qs;
            var sums = (short*)&a->BlockSums;
            int sum = 0, mins = 0;
            for (var g = 0; g < 16; g++)
            {
                var groupSum = 0;
                for (var l = 0; l < 16; l++) groupSum += w->Values[16 * g + l] * qs[16 * g + l];
                sum += groupSum * w->Scales[8 * g];
                mins += sums[g] * w->Mins[g];
            }
            total += w->D * a->D * sum - w->DMin * a->D * mins;
        }
        return total;
    }

    /// <summary>Σ over super-blocks of D·dA·Σ_k Scale_k·Σ(Signed·q).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SignedSuperBlocks(DecodedSignedSuperBlock* w, BlockQ8K* a, int count) =>
        Vectorized ? SignedSuperBlocksVector256(w, a, count) : SignedSuperBlocksScalar(w, a, count);

    internal static float SignedSuperBlocksVector256(DecodedSignedSuperBlock* w, BlockQ8K* a, int count)
    {
        var acc = Vector256<float>.Zero;
        for (var i = 0; i < count; i++, w++, a++)
        {
            var magnitudes = w->Magnitudes;
            var signed = w->Signed;
            var scales = w->Scales;
            var qs = (sbyte*)&a->Qs;
            var sum = Vector256<int>.Zero;
            for (var k = 0; k < 8; k++)
            {
                var q = Avx2.Sign(Avx.LoadVector256(qs + 32 * k), Avx.LoadVector256(signed + 32 * k));
                var products = Avx2.MultiplyAddAdjacent(Avx.LoadVector256(magnitudes + 32 * k), q);
                sum = Avx2.Add(sum, Avx2.MultiplyAddAdjacent(products, Avx.LoadVector256(scales + 16 * k)));
            }
            acc = Fma.MultiplyAdd(Vector256.Create(w->D * a->D), Avx.ConvertToVector256Single(sum), acc);
        }
        return Vector256.Sum(acc);
    }

    internal static float SignedSuperBlocksScalar(DecodedSignedSuperBlock* w, BlockQ8K* a, int count)
    {
        var total = 0f;
        for (var i = 0; i < count; i++, w++, a++)
        {
            var qs = (sbyte*)&a->Qs;
            var sum = 0;
            for (var k = 0; k < 8; k++)
            {
                var groupSum = 0;
                for (var l = 0; l < 32; l++) groupSum += w->Signed[32 * k + l] * qs[32 * k + l];
                sum += groupSum * w->Scales[16 * k];
            }
            total += w->D * a->D * sum;
        }
        return total;
    }

    /// <summary>Σ over 32-blocks of D·dA·Σ(Signed·q), activations in Q8_0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SignedBlocks(DecodedBlock32* w, BlockQ80* a, int count) =>
        Vectorized ? SignedBlocksVector256(w, a, count) : SignedBlocksScalar(w, a, count);

    internal static float SignedBlocksVector256(DecodedBlock32* w, BlockQ80* a, int count)
    {
        var acc = Vector256<float>.Zero;
        var ones = Vector256.Create((short)1);
        for (var i = 0; i < count; i++, w++, a++)
        {
            var q = Avx2.Sign(Avx.LoadVector256((sbyte*)&a->Qs), Avx.LoadVector256(w->Signed));
            var sum = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx.LoadVector256(w->Magnitudes), q), ones);
            acc = Fma.MultiplyAdd(Vector256.Create(w->D * Fp16.ToFloat(a->D)), Avx.ConvertToVector256Single(sum), acc);
        }
        return Vector256.Sum(acc);
    }

    internal static float SignedBlocksScalar(DecodedBlock32* w, BlockQ80* a, int count)
    {
        var total = 0f;
        for (var i = 0; i < count; i++, w++, a++)
        {
            var qs = (sbyte*)&a->Qs;
            var sum = 0;
            for (var l = 0; l < 32; l++) sum += w->Signed[l] * qs[l];
            total += w->D * Fp16.ToFloat(a->D) * sum;
        }
        return total;
    }

    /// <summary>Σ over 32-blocks of D·dA·Σ(Magnitude·q) + M·sA, activations in Q8_1 (sA = dA·Σq as stored).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float OffsetBlocks(DecodedBlock32* w, BlockQ81* a, int count) =>
        Vectorized ? OffsetBlocksVector256(w, a, count) : OffsetBlocksScalar(w, a, count);

    internal static float OffsetBlocksVector256(DecodedBlock32* w, BlockQ81* a, int count)
    {
        var acc = Vector256<float>.Zero;
        var ones = Vector256.Create((short)1);
        var offsets = 0f;
        for (var i = 0; i < count; i++, w++, a++)
        {
            var products = Avx2.MultiplyAddAdjacent(Avx.LoadVector256(w->Magnitudes), Avx.LoadVector256((sbyte*)&a->Qs));
            var sum = Avx2.MultiplyAddAdjacent(products, ones);
            acc = Fma.MultiplyAdd(Vector256.Create(w->D * Fp16.ToFloat(a->D)), Avx.ConvertToVector256Single(sum), acc);
            offsets += w->M * Fp16.ToFloat(a->S);
        }
        return Vector256.Sum(acc) + offsets;
    }

    internal static float OffsetBlocksScalar(DecodedBlock32* w, BlockQ81* a, int count)
    {
        var total = 0f;
        for (var i = 0; i < count; i++, w++, a++)
        {
            var qs = (sbyte*)&a->Qs;
            var sum = 0;
            for (var l = 0; l < 32; l++) sum += w->Magnitudes[l] * qs[l];
            total += w->D * Fp16.ToFloat(a->D) * sum + w->M * Fp16.ToFloat(a->S);
        }
        return total;
    }
}
