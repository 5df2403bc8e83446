using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using KQuant.Quants.Float;
using KQuant.Quants.K;
using KQuant.Quants.Legacy;

namespace KQuant.Model.Kernels;

/// <summary>Dot products of one decoded weight row with one quantized activation row, computed as ggml-cpu's AVX2
/// build computes them (llama.cpp v0.5.0), to the last bit. Two parts:
/// <list type="bullet">
/// <item>integer lanes: eight int32 partial sums per block, lane i covering bytes 4i..4i+3 of every 32 weights
/// (maddubs of unsigned weight bytes with signed activations, madd with the int16 scales). Integer sums are exact,
/// so any order gives the same lanes; what matters is which bytes each lane holds, and that is ggml's.</item>
/// <item>the float tail of the kernel llama.cpp runs for the type: per block FMAs of d_w·d_a into 8 lanes and
/// ggml's horizontal sum (vec_dot in arch/x86/quants.c, tinyBLAS_Q0_AVX in llamafile/sgemm.cpp), or one FMA per
/// block per output for the weights llama.cpp repacks (arch/x86/repack.cpp).</item>
/// </list>
/// Without AVX2 the lanes are computed in plain code; the float tails are the same Vector256 operations, so both
/// paths give identical results.</summary>
internal static unsafe class IntegerDot
{
    public static bool Vectorized => Lanes.Avx2Fma;

    // ---- integer lanes -------------------------------------------------------------------------------------------

    /// <summary>Σ_k madd(maddubs(values_k, q_k), scales_k) over the eight 32-weight slices of a super-block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> UnsignedLanes(DecodedSuperBlock* w, BlockQ8K* a) =>
        Vectorized ? UnsignedLanesVector256(w->Values, w->Scales, (sbyte*)&a->Qs) : UnsignedLanesScalar(w->Values, w->Scales, (sbyte*)&a->Qs);

    /// <summary>As <see cref="UnsignedLanes"/> with signed weights (|w| against the activation with w's sign).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> SignedLanes(DecodedSignedSuperBlock* w, BlockQ8K* a) =>
        Vectorized ? SignedLanesVector256(w, (sbyte*)&a->Qs) : SignedLanesScalar(w, (sbyte*)&a->Qs);

    /// <summary>madd(bsums, mins): lane i = bsum_{2i}·min_{2i} + bsum_{2i+1}·min_{2i+1}.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> MinLanes(DecodedSuperBlock* w, BlockQ8K* a)
    {
        var sums = (short*)&a->BlockSums;
        if (Vectorized) return Avx2.MultiplyAddAdjacent(Avx.LoadVector256(sums), Avx.LoadVector256(w->Mins));
        Span<int> lanes = stackalloc int[8];
        for (var i = 0; i < 8; i++) lanes[i] = sums[2 * i] * w->Mins[2 * i] + sums[2 * i + 1] * w->Mins[2 * i + 1];
        return Vector256.Create<int>(lanes);
    }

    internal static Vector256<int> UnsignedLanesVector256(byte* values, short* scales, sbyte* qs)
    {
        var sum = Vector256<int>.Zero;
        for (var k = 0; k < 8; k++)
        {
            var products = Avx2.MultiplyAddAdjacent(Avx.LoadVector256(values + 32 * k), Avx.LoadVector256(qs + 32 * k));
            sum = Avx2.Add(sum, Avx2.MultiplyAddAdjacent(products, Avx.LoadVector256(scales + 16 * k)));
        }
        return sum;
    }

    internal static Vector256<int> UnsignedLanesScalar(byte* values, short* scales, sbyte* qs)
    {
        Span<int> lanes = stackalloc int[8];
        for (var k = 0; k < 8; k++)
        {
            for (var i = 0; i < 8; i++)
            {
                var b = 32 * k + 4 * i;
                lanes[i] += scales[16 * k + 2 * i] * (values[b] * qs[b] + values[b + 1] * qs[b + 1])
                    + scales[16 * k + 2 * i + 1] * (values[b + 2] * qs[b + 2] + values[b + 3] * qs[b + 3]);
            }
        }
        return Vector256.Create<int>(lanes);
    }

    internal static Vector256<int> SignedLanesVector256(DecodedSignedSuperBlock* w, sbyte* qs)
    {
        var sum = Vector256<int>.Zero;
        for (var k = 0; k < 8; k++)
        {
            var q = Avx2.Sign(Avx.LoadVector256(qs + 32 * k), Avx.LoadVector256(w->Signed + 32 * k));
            var products = Avx2.MultiplyAddAdjacent(Avx.LoadVector256(w->Magnitudes + 32 * k), q);
            sum = Avx2.Add(sum, Avx2.MultiplyAddAdjacent(products, Avx.LoadVector256(w->Scales + 16 * k)));
        }
        return sum;
    }

    internal static Vector256<int> SignedLanesScalar(DecodedSignedSuperBlock* w, sbyte* qs)
    {
        Span<int> lanes = stackalloc int[8];
        var s = w->Signed;
        var scales = w->Scales;
        for (var k = 0; k < 8; k++)
        {
            for (var i = 0; i < 8; i++)
            {
                var b = 32 * k + 4 * i;
                lanes[i] += scales[16 * k + 2 * i] * (s[b] * qs[b] + s[b + 1] * qs[b + 1])
                    + scales[16 * k + 2 * i + 1] * (s[b + 2] * qs[b + 2] + s[b + 3] * qs[b + 3]);
            }
        }
        return Vector256.Create<int>(lanes);
    }

    /// <summary>Lanes of one 32-weight block: Σ w·q per four bytes, signed weights (sign trick).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> SignedBlockLanes(DecodedBlock32* w, sbyte* qs)
    {
        if (Vectorized)
        {
            var q = Avx2.Sign(Avx.LoadVector256(qs), Avx.LoadVector256(w->Signed));
            return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx.LoadVector256(w->Magnitudes), q), Vector256.Create((short)1));
        }
        Span<int> lanes = stackalloc int[8];
        for (var i = 0; i < 32; i++) lanes[i / 4] += w->Signed[i] * qs[i];
        return Vector256.Create<int>(lanes);
    }

    /// <summary>Lanes of one 32-weight block with unsigned weights.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> UnsignedBlockLanes(DecodedBlock32* w, sbyte* qs)
    {
        if (Vectorized)
            return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx.LoadVector256(w->Magnitudes), Avx.LoadVector256(qs)), Vector256.Create((short)1));
        Span<int> lanes = stackalloc int[8];
        for (var i = 0; i < 32; i++) lanes[i / 4] += w->Magnitudes[i] * qs[i];
        return Vector256.Create<int>(lanes);
    }

    // ---- float tails: super-blocks against Q8_K -------------------------------------------------------------------

    /// <summary>ggml_vec_dot_q6_K_q8_K (and any format whose offset is a multiple of its scale): the offset is taken
    /// from the integer lanes, then acc += d·lanes; result hsum.</summary>
    public static float OffsetInLanes(DecodedSuperBlock* w, BlockQ8K* a, int count)
    {
        var acc = Vector256<float>.Zero;
        for (var i = 0; i < count; i++, w++, a++)
        {
            var lanes = UnsignedLanes(w, a) - MinLanes(w, a);
            acc = Vector256.FusedMultiplyAdd(Vector256.Create(a->D * w->D), Vector256.ConvertToSingle(lanes), acc);
        }
        return Lanes.Sum8(acc);
    }

    /// <summary>ggml_vec_dot_q2_K_q8_K: acc += dmin·(−dA)·mins lanes, then acc += d·lanes; result hsum.</summary>
    public static float MinsFirst(DecodedSuperBlock* w, BlockQ8K* a, int count)
    {
        var acc = Vector256<float>.Zero;
        for (var i = 0; i < count; i++, w++, a++)
        {
            acc = Vector256.FusedMultiplyAdd(Vector256.Create(-a->D * w->DMin), Vector256.ConvertToSingle(MinLanes(w, a)), acc);
            acc = Vector256.FusedMultiplyAdd(Vector256.Create(a->D * w->D), Vector256.ConvertToSingle(UnsignedLanes(w, a)), acc);
        }
        return Lanes.Sum8(acc);
    }

    /// <summary>ggml_vec_dot_q4_K_q8_K: the mins in a separate four-lane accumulator (one lane per 64 weights),
    /// result hsum(acc) + hsum(acc_m).</summary>
    public static float MinsInQuads(DecodedSuperBlock* w, BlockQ8K* a, int count)
    {
        var acc = Vector256<float>.Zero;
        var accMins = Vector128<float>.Zero;
        for (var i = 0; i < count; i++, w++, a++)
        {
            var mins = MinLanes(w, a);
            var quads = Vector128.Create(mins[0] + mins[1], mins[2] + mins[3], mins[4] + mins[5], mins[6] + mins[7]);
            accMins = Vector128.FusedMultiplyAdd(Vector128.Create(-a->D * w->DMin), Vector128.ConvertToSingle(quads), accMins);
            acc = Vector256.FusedMultiplyAdd(Vector256.Create(a->D * w->D), Vector256.ConvertToSingle(UnsignedLanes(w, a)), acc);
        }
        return Lanes.Sum8(acc) + Lanes.Sum4(accMins);
    }

    /// <summary>ggml_vec_dot_q5_K_q8_K: the mins of each super-block summed to one integer, dmin·(−dA)·it added to a
    /// float; result hsum(acc) + that sum.</summary>
    public static float MinsScalar(DecodedSuperBlock* w, BlockQ8K* a, int count)
    {
        var acc = Vector256<float>.Zero;
        var mins = 0f;
        for (var i = 0; i < count; i++, w++, a++)
        {
            // The C compiler contracts summs += dmin·sum into one FMA.
            mins = MathF.FusedMultiplyAdd(-a->D * w->DMin, Vector256.Sum(MinLanes(w, a)), mins);
            acc = Vector256.FusedMultiplyAdd(Vector256.Create(a->D * w->D), Vector256.ConvertToSingle(UnsignedLanes(w, a)), acc);
        }
        return Lanes.Sum8(acc) + mins;
    }

    /// <summary>ggml_vec_dot_q3_K_q8_K and ggml_vec_dot_iq4_xs_q8_K: signed codes, acc += d·lanes; result hsum.</summary>
    public static float Signed(DecodedSignedSuperBlock* w, BlockQ8K* a, int count)
    {
        var acc = Vector256<float>.Zero;
        for (var i = 0; i < count; i++, w++, a++)
        {
            acc = Vector256.FusedMultiplyAdd(Vector256.Create(a->D * w->D), Vector256.ConvertToSingle(SignedLanes(w, a)), acc);
        }
        return Lanes.Sum8(acc);
    }

    /// <summary>ggml_gemv_q4_K_8x8_q8_K (llama.cpp repacks Q4_K matrices whose row count is a multiple of 8; it takes
    /// the tokens past the last group of four one at a time): per super-block the whole integer sum and the whole min
    /// sum, each in one FMA; result acc − acc_min.</summary>
    public static float RepackedSuperBlocksOneToken(DecodedSuperBlock* w, BlockQ8K* a, int count)
    {
        float acc = 0, accMins = 0;
        for (var i = 0; i < count; i++, w++, a++)
        {
            acc = MathF.FusedMultiplyAdd(Vector256.Sum(UnsignedLanes(w, a)), w->D * a->D, acc);
            accMins = MathF.FusedMultiplyAdd(Vector256.Sum(MinLanes(w, a)), w->DMin * a->D, accMins);
        }
        return acc - accMins;
    }

    /// <summary>ggml_gemm_q4_K_8x8_q8_K (repacked Q4_K, tokens in groups of four): one FMA per 64 weights (two
    /// sub-blocks) for the sums and one for the mins; result acc − acc_min.</summary>
    public static float RepackedSuperBlocks(DecodedSuperBlock* w, BlockQ8K* a, int count)
    {
        float acc = 0, accMins = 0;
        Span<int> pairs = stackalloc int[4];
        for (var i = 0; i < count; i++, w++, a++)
        {
            var dw = w->D * a->D;
            var dmin = w->DMin * a->D;
            PairSums(w, a, pairs);
            var mins = MinLanes(w, a);
            for (var p = 0; p < 4; p++)
            {
                acc = MathF.FusedMultiplyAdd(pairs[p], dw, acc);
                accMins = MathF.FusedMultiplyAdd(mins[2 * p] + mins[2 * p + 1], dmin, accMins);
            }
        }
        return acc - accMins;
    }

    /// <summary>The integer sum of each 64 weights (two 32-weight slices) of a super-block.</summary>
    private static void PairSums(DecodedSuperBlock* w, BlockQ8K* a, Span<int> pairs)
    {
        var qs = (sbyte*)&a->Qs;
        for (var p = 0; p < 4; p++)
        {
            var sum = 0;
            for (var k = 2 * p; k < 2 * p + 2; k++)
            {
                if (Vectorized)
                {
                    var products = Avx2.MultiplyAddAdjacent(Avx.LoadVector256(w->Values + 32 * k), Avx.LoadVector256(qs + 32 * k));
                    sum += Vector256.Sum(Avx2.MultiplyAddAdjacent(products, Avx.LoadVector256(w->Scales + 16 * k)));
                }
                else
                {
                    for (var b = 0; b < 32; b++) sum += w->Scales[16 * k + b / 2] * w->Values[32 * k + b] * qs[32 * k + b];
                }
            }
            pairs[p] = sum;
        }
    }

    /// <summary>ggml's panel kernel for IQ4_XS (iqp.cpp; matrices whose row count is a multiple of 8, batches of eight
    /// tokens or more): one FMA of each super-block's whole integer sum with d_w·d_a.</summary>
    public static float SignedPanel(DecodedSignedSuperBlock* w, BlockQ8K* a, int count)
    {
        var acc = 0f;
        for (var i = 0; i < count; i++, w++, a++)
        {
            acc = MathF.FusedMultiplyAdd(Vector256.Sum(SignedLanes(w, a)), w->D * a->D, acc);
        }
        return acc;
    }

    // ---- float tails: 32-weight blocks against Q8_0 / Q8_1 --------------------------------------------------------

    /// <summary>tinyBLAS_Q0_AVX (Q8_0, Q5_0; Q4_0 and IQ4_NL when not repacked): acc += (d_w·d_a)·lanes; result hsum.</summary>
    public static float SignedBlocks(DecodedBlock32* w, BlockQ80* a, int count)
    {
        var acc = Vector256<float>.Zero;
        for (var i = 0; i < count; i++, w++, a++)
        {
            var lanes = SignedBlockLanes(w, (sbyte*)&a->Qs);
            acc = Vector256.FusedMultiplyAdd(Vector256.Create(w->D * Fp16.ToFloat(a->D)), Vector256.ConvertToSingle(lanes), acc);
        }
        return Lanes.Sum8(acc);
    }

    /// <summary>ggml_vec_dot_iq4_nl_q8_0 (an IQ4_NL matrix llama.cpp neither repacks nor hands to tinyBLAS, i.e. one
    /// token): even and odd blocks in two accumulators, hsum of their sum; an odd last block added by FMA.</summary>
    public static float SignedBlockPairs(DecodedBlock32* w, BlockQ80* a, int count)
    {
        var even = Vector256<float>.Zero;
        var odd = Vector256<float>.Zero;
        var i = 0;
        for (; i + 1 < count; i += 2, w += 2, a += 2)
        {
            even = Vector256.FusedMultiplyAdd(Vector256.Create(Fp16.ToFloat(a[0].D) * w[0].D), Vector256.ConvertToSingle(SignedBlockLanes(w, (sbyte*)&a[0].Qs)), even);
            odd = Vector256.FusedMultiplyAdd(Vector256.Create(Fp16.ToFloat(a[1].D) * w[1].D), Vector256.ConvertToSingle(SignedBlockLanes(w + 1, (sbyte*)&a[1].Qs)), odd);
        }
        var sum = Lanes.Sum8(even + odd);
        if (i < count) sum = MathF.FusedMultiplyAdd(Fp16.ToFloat(a->D) * w->D, Vector256.Sum(SignedBlockLanes(w, (sbyte*)&a->Qs)), sum);
        return sum;
    }

    /// <summary>ggml_gemm/gemv_q4_0_8x8_q8_0 and the IQ4_NL twin (repacked matrices): per block one FMA of the whole
    /// integer sum with d_w·d_a.</summary>
    public static float RepackedBlocks(DecodedBlock32* w, BlockQ80* a, int count)
    {
        var acc = 0f;
        for (var i = 0; i < count; i++, w++, a++)
        {
            acc = MathF.FusedMultiplyAdd(Vector256.Sum(SignedBlockLanes(w, (sbyte*)&a->Qs)), w->D * Fp16.ToFloat(a->D), acc);
        }
        return acc;
    }

    /// <summary>ggml_vec_dot_q4_1_q8_1 / q5_1_q8_1: acc += (d_w·d_a)·lanes and, beside it, m·s of each block; result
    /// hsum(acc) + Σ m·s.</summary>
    public static float OffsetBlocks(DecodedBlock32* w, BlockQ81* a, int count)
    {
        var acc = Vector256<float>.Zero;
        var offsets = 0f;
        for (var i = 0; i < count; i++, w++, a++)
        {
            offsets = MathF.FusedMultiplyAdd(w->M, Fp16.ToFloat(a->S), offsets); // contracted to an FMA by the C compiler
            var lanes = UnsignedBlockLanes(w, (sbyte*)&a->Qs);
            acc = Vector256.FusedMultiplyAdd(Vector256.Create(w->D * Fp16.ToFloat(a->D)), Vector256.ConvertToSingle(lanes), acc);
        }
        return Lanes.Sum8(acc) + offsets;
    }
}
