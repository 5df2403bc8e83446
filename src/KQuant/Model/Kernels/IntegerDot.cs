using System.Numerics;
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
/// paths give identical results. Kernels are compiled fully optimized at once (AggressiveOptimization), as tier-0 code
/// is many times slower.</summary>
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
        return Vectorized ? Avx2.MultiplyAddAdjacent(Avx.LoadVector256(sums), Avx.LoadVector256(w->Mins)) : PairProductsScalar(sums, w->Mins);
    }

    // The scalar fallbacks live in methods of their own: a stackalloc in the hot helpers above would keep the JIT from
    // inlining them into the kernels' loops.

    private static Vector256<int> PairProductsScalar(short* a, short* b)
    {
        Span<int> lanes = stackalloc int[8];
        for (var i = 0; i < 8; i++) lanes[i] = a[2 * i] * b[2 * i] + a[2 * i + 1] * b[2 * i + 1];
        return Vector256.Create<int>(lanes);
    }

    private static Vector256<int> QuadProductsScalar<TCode>(TCode* values, sbyte* qs) where TCode : unmanaged, IBinaryInteger<TCode>
    {
        Span<int> lanes = stackalloc int[8];
        for (var i = 0; i < 32; i++) lanes[i / 4] += int.CreateTruncating(values[i]) * qs[i];
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

    internal static Vector256<int> UnsignedLanesScalar(byte* values, short* scales, sbyte* qs) => LanesScalar(values, scales, qs);

    /// <summary>Reference for the vector lanes: Σ scale·(w·q) per pair of products, as the two MultiplyAddAdjacent do.</summary>
    private static Vector256<int> LanesScalar<TCode>(TCode* values, short* scales, sbyte* qs) where TCode : unmanaged, IBinaryInteger<TCode>
    {
        Span<int> lanes = stackalloc int[8];
        for (var k = 0; k < 8; k++)
        {
            for (var i = 0; i < 8; i++)
            {
                var b = 32 * k + 4 * i;
                lanes[i] += scales[16 * k + 2 * i] * (int.CreateTruncating(values[b]) * qs[b] + int.CreateTruncating(values[b + 1]) * qs[b + 1])
                    + scales[16 * k + 2 * i + 1] * (int.CreateTruncating(values[b + 2]) * qs[b + 2] + int.CreateTruncating(values[b + 3]) * qs[b + 3]);
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

    internal static Vector256<int> SignedLanesScalar(DecodedSignedSuperBlock* w, sbyte* qs) => LanesScalar(w->Signed, w->Scales, qs);

    /// <summary>Lanes of one 32-weight block: Σ w·q per four bytes, signed weights (sign trick).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> SignedBlockLanes(DecodedBlock32* w, sbyte* qs)
    {
        if (Vectorized)
        {
            var q = Avx2.Sign(Avx.LoadVector256(qs), Avx.LoadVector256(w->Signed));
            return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx.LoadVector256(w->Magnitudes), q), Vector256.Create((short)1));
        }
        return QuadProductsScalar(w->Signed, qs);
    }

    /// <summary>Lanes of one 32-weight block with unsigned weights.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> UnsignedBlockLanes(DecodedBlock32* w, sbyte* qs)
    {
        if (Vectorized)
            return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx.LoadVector256(w->Magnitudes), Avx.LoadVector256(qs)), Vector256.Create((short)1));
        return QuadProductsScalar(w->Magnitudes, qs);
    }

    // ---- float tails: super-blocks against Q8_K -------------------------------------------------------------------

    /// <summary>ggml_vec_dot_q6_K_q8_K (and any format whose offset is a multiple of its scale): the offset is taken
    /// from the integer lanes, then acc += d·lanes; result hsum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float RepackedSuperBlocks(DecodedSuperBlock* w, BlockQ8K* a, int count)
    {
        float acc = 0, accMins = 0;
        for (var i = 0; i < count; i++, w++, a++)
        {
            var dw = w->D * a->D;
            var dmin = w->DMin * a->D;
            var sums = PairSums(w, a);
            var mins = MinPairSums(w, a);
            for (var p = 0; p < 4; p++)
            {
                acc = MathF.FusedMultiplyAdd(sums[p], dw, acc);
                accMins = MathF.FusedMultiplyAdd(mins[p], dmin, accMins);
            }
        }
        return acc - accMins;
    }

    /// <summary>The integer sum of each 64 weights (two 32-weight slices) of a super-block.</summary>
    private static Vector128<int> PairSums(DecodedSuperBlock* w, BlockQ8K* a)
    {
        var qs = (sbyte*)&a->Qs;
        if (!Vectorized) return PairSumsScalar(w, qs);
        var pair0 = SliceLanes(w, qs, 0) + SliceLanes(w, qs, 1);
        var pair1 = SliceLanes(w, qs, 2) + SliceLanes(w, qs, 3);
        var pair2 = SliceLanes(w, qs, 4) + SliceLanes(w, qs, 5);
        var pair3 = SliceLanes(w, qs, 6) + SliceLanes(w, qs, 7);
        // Three horizontal adds leave each pair's lanes summed, halves apart: [p0 p1 p2 p3 | p0 p1 p2 p3].
        var h = Avx2.HorizontalAdd(Avx2.HorizontalAdd(pair0, pair1), Avx2.HorizontalAdd(pair2, pair3));
        return h.GetLower() + h.GetUpper();
    }

    private static Vector128<int> PairSumsScalar(DecodedSuperBlock* w, sbyte* qs)
    {
        Span<int> pairs = stackalloc int[4];
        for (var b = 0; b < 256; b++) pairs[b / 64] += w->Scales[b / 2] * w->Values[b] * qs[b];
        return Vector128.Create<int>(pairs);
    }

    /// <summary>Σ min·bsum of each 64 weights of a super-block.</summary>
    private static Vector128<int> MinPairSums(DecodedSuperBlock* w, BlockQ8K* a)
    {
        var mins = MinLanes(w, a);
        return Vector128.Create(mins[0] + mins[1], mins[2] + mins[3], mins[4] + mins[5], mins[6] + mins[7]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SliceLanes(DecodedSuperBlock* w, sbyte* qs, int k) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx.LoadVector256(w->Values + 32 * k), Avx.LoadVector256(qs + 32 * k)),
            Avx.LoadVector256(w->Scales + 16 * k));

    /// <summary>ggml's panel kernel for IQ4_XS (iqp.cpp; matrices whose row count is a multiple of 8, batches of eight
    /// tokens or more): one FMA of each super-block's whole integer sum with d_w·d_a.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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

/// <summary>The dot products of <see cref="IntegerDot"/> for one decoded weight row and four consecutive tokens at once:
/// each weight vector is loaded once for the four, and four independent accumulations keep the FMA units busy. Every
/// token's result is computed with exactly the operations of the single-token kernel.</summary>
internal static unsafe class IntegerDot4
{
    /// <summary>Q8_K blocks of four tokens, <paramref name="stride"/> bytes apart.</summary>
    private readonly struct Tokens(byte* first, nint stride)
    {
        public BlockQ8K* this[int t] => (BlockQ8K*)(first + t * stride);
    }

    /// <summary>Calls a single-token kernel four times (kernels without a four-token form).</summary>
    public static void Each(delegate*<byte*, byte*, int, float> dot, byte* decoded, byte* activations, nint stride, int blocks, float* results)
    {
        for (var t = 0; t < 4; t++) results[t] = dot(decoded, activations + t * stride, blocks);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Lanes(Vector256<byte> values, Vector256<short> scales, sbyte* qs) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(values, Avx.LoadVector256(qs)), scales);

    /// <summary>Four tokens' integer totals from their lanes: [Σ l0, Σ l1, Σ l2, Σ l3] by three horizontal adds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> Totals(Vector256<int> l0, Vector256<int> l1, Vector256<int> l2, Vector256<int> l3)
    {
        var h = Avx2.HorizontalAdd(Avx2.HorizontalAdd(l0, l1), Avx2.HorizontalAdd(l2, l3));
        return h.GetLower() + h.GetUpper();
    }

    /// <summary><see cref="IntegerDot.OffsetInLanes"/> (Q6_K) for four tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void OffsetInLanes(DecodedSuperBlock* w, byte* activations, nint stride, int count, float* results)
    {
        if (!IntegerDot.Vectorized)
        {
            for (var t = 0; t < 4; t++) results[t] = IntegerDot.OffsetInLanes(w, (BlockQ8K*)(activations + t * stride), count);
            return;
        }
        var tokens = new Tokens(activations, stride);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (var i = 0; i < count; i++, w++)
        {
            var offset = i * (nint)BlockQ8K.Size;
            BlockQ8K* a0 = (BlockQ8K*)((byte*)tokens[0] + offset), a1 = (BlockQ8K*)((byte*)tokens[1] + offset),
                a2 = (BlockQ8K*)((byte*)tokens[2] + offset), a3 = (BlockQ8K*)((byte*)tokens[3] + offset);
            Vector256<int> l0 = default, l1 = default, l2 = default, l3 = default;
            for (var k = 0; k < 8; k++)
            {
                var values = Avx.LoadVector256(w->Values + 32 * k);
                var scales = Avx.LoadVector256(w->Scales + 16 * k);
                l0 += Lanes(values, scales, (sbyte*)&a0->Qs + 32 * k);
                l1 += Lanes(values, scales, (sbyte*)&a1->Qs + 32 * k);
                l2 += Lanes(values, scales, (sbyte*)&a2->Qs + 32 * k);
                l3 += Lanes(values, scales, (sbyte*)&a3->Qs + 32 * k);
            }
            acc0 = Vector256.FusedMultiplyAdd(Vector256.Create(a0->D * w->D), Vector256.ConvertToSingle(l0 - IntegerDot.MinLanes(w, a0)), acc0);
            acc1 = Vector256.FusedMultiplyAdd(Vector256.Create(a1->D * w->D), Vector256.ConvertToSingle(l1 - IntegerDot.MinLanes(w, a1)), acc1);
            acc2 = Vector256.FusedMultiplyAdd(Vector256.Create(a2->D * w->D), Vector256.ConvertToSingle(l2 - IntegerDot.MinLanes(w, a2)), acc2);
            acc3 = Vector256.FusedMultiplyAdd(Vector256.Create(a3->D * w->D), Vector256.ConvertToSingle(l3 - IntegerDot.MinLanes(w, a3)), acc3);
        }
        results[0] = Kernels.Lanes.Sum8(acc0);
        results[1] = Kernels.Lanes.Sum8(acc1);
        results[2] = Kernels.Lanes.Sum8(acc2);
        results[3] = Kernels.Lanes.Sum8(acc3);
    }

    /// <summary><see cref="IntegerDot.MinsScalar"/> (Q5_K) for four tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void MinsScalar(DecodedSuperBlock* w, byte* activations, nint stride, int count, float* results)
    {
        if (!IntegerDot.Vectorized)
        {
            for (var t = 0; t < 4; t++) results[t] = IntegerDot.MinsScalar(w, (BlockQ8K*)(activations + t * stride), count);
            return;
        }
        var tokens = new Tokens(activations, stride);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        float mins0 = 0, mins1 = 0, mins2 = 0, mins3 = 0;
        for (var i = 0; i < count; i++, w++)
        {
            var offset = i * (nint)BlockQ8K.Size;
            BlockQ8K* a0 = (BlockQ8K*)((byte*)tokens[0] + offset), a1 = (BlockQ8K*)((byte*)tokens[1] + offset),
                a2 = (BlockQ8K*)((byte*)tokens[2] + offset), a3 = (BlockQ8K*)((byte*)tokens[3] + offset);
            Vector256<int> l0 = default, l1 = default, l2 = default, l3 = default;
            for (var k = 0; k < 8; k++)
            {
                var values = Avx.LoadVector256(w->Values + 32 * k);
                var scales = Avx.LoadVector256(w->Scales + 16 * k);
                l0 += Lanes(values, scales, (sbyte*)&a0->Qs + 32 * k);
                l1 += Lanes(values, scales, (sbyte*)&a1->Qs + 32 * k);
                l2 += Lanes(values, scales, (sbyte*)&a2->Qs + 32 * k);
                l3 += Lanes(values, scales, (sbyte*)&a3->Qs + 32 * k);
            }
            mins0 = MathF.FusedMultiplyAdd(-a0->D * w->DMin, Vector256.Sum(IntegerDot.MinLanes(w, a0)), mins0);
            mins1 = MathF.FusedMultiplyAdd(-a1->D * w->DMin, Vector256.Sum(IntegerDot.MinLanes(w, a1)), mins1);
            mins2 = MathF.FusedMultiplyAdd(-a2->D * w->DMin, Vector256.Sum(IntegerDot.MinLanes(w, a2)), mins2);
            mins3 = MathF.FusedMultiplyAdd(-a3->D * w->DMin, Vector256.Sum(IntegerDot.MinLanes(w, a3)), mins3);
            acc0 = Vector256.FusedMultiplyAdd(Vector256.Create(a0->D * w->D), Vector256.ConvertToSingle(l0), acc0);
            acc1 = Vector256.FusedMultiplyAdd(Vector256.Create(a1->D * w->D), Vector256.ConvertToSingle(l1), acc1);
            acc2 = Vector256.FusedMultiplyAdd(Vector256.Create(a2->D * w->D), Vector256.ConvertToSingle(l2), acc2);
            acc3 = Vector256.FusedMultiplyAdd(Vector256.Create(a3->D * w->D), Vector256.ConvertToSingle(l3), acc3);
        }
        results[0] = Kernels.Lanes.Sum8(acc0) + mins0;
        results[1] = Kernels.Lanes.Sum8(acc1) + mins1;
        results[2] = Kernels.Lanes.Sum8(acc2) + mins2;
        results[3] = Kernels.Lanes.Sum8(acc3) + mins3;
    }

    /// <summary><see cref="IntegerDot.RepackedSuperBlocks"/> (Q4_K gemm) for four tokens: the per-64-weight FMAs of the
    /// four tokens run side by side in the lanes of one 128-bit vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RepackedSuperBlocks(DecodedSuperBlock* w, byte* activations, nint stride, int count, float* results)
    {
        if (!IntegerDot.Vectorized)
        {
            for (var t = 0; t < 4; t++) results[t] = IntegerDot.RepackedSuperBlocks(w, (BlockQ8K*)(activations + t * stride), count);
            return;
        }
        var tokens = new Tokens(activations, stride);
        var acc = Vector128<float>.Zero;
        var accMins = Vector128<float>.Zero;
        for (var i = 0; i < count; i++, w++)
        {
            var offset = i * (nint)BlockQ8K.Size;
            BlockQ8K* a0 = (BlockQ8K*)((byte*)tokens[0] + offset), a1 = (BlockQ8K*)((byte*)tokens[1] + offset),
                a2 = (BlockQ8K*)((byte*)tokens[2] + offset), a3 = (BlockQ8K*)((byte*)tokens[3] + offset);
            var da = Vector128.Create(a0->D, a1->D, a2->D, a3->D);
            var dw = Vector128.Create(w->D) * da;
            var dmin = Vector128.Create(w->DMin) * da;
            // Mins of each 64 weights, per token: lanes (2p, 2p+1) of MinLanes. After the horizontal adds the lower
            // halves hold [t0p0 t0p1 t1p0 t1p1] and [t2p0 t2p1 t3p0 t3p1], the upper ones the same for p = 2, 3;
            // the shuffles gather [t0 t1 t2 t3] of one p.
            var m01 = Avx2.HorizontalAdd(IntegerDot.MinLanes(w, a0), IntegerDot.MinLanes(w, a1));
            var m23 = Avx2.HorizontalAdd(IntegerDot.MinLanes(w, a2), IntegerDot.MinLanes(w, a3));
            Vector128<float> low01 = m01.GetLower().AsSingle(), low23 = m23.GetLower().AsSingle();
            Vector128<float> high01 = m01.GetUpper().AsSingle(), high23 = m23.GetUpper().AsSingle();
            // The four 64-weight pairs unrolled by hand: the JIT keeps the loop over them, and its spills, otherwise.
            acc = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(PairTotals(w, a0, a1, a2, a3, 0)), dw, acc);
            accMins = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(Sse.Shuffle(low01, low23, 0b10_00_10_00).AsInt32()), dmin, accMins);
            acc = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(PairTotals(w, a0, a1, a2, a3, 2)), dw, acc);
            accMins = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(Sse.Shuffle(low01, low23, 0b11_01_11_01).AsInt32()), dmin, accMins);
            acc = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(PairTotals(w, a0, a1, a2, a3, 4)), dw, acc);
            accMins = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(Sse.Shuffle(high01, high23, 0b10_00_10_00).AsInt32()), dmin, accMins);
            acc = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(PairTotals(w, a0, a1, a2, a3, 6)), dw, acc);
            accMins = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(Sse.Shuffle(high01, high23, 0b11_01_11_01).AsInt32()), dmin, accMins);
        }
        (acc - accMins).Store(results);
    }

    /// <summary>The integer sums of 32-weight slices <paramref name="k"/> and k + 1 for four tokens, [t0 t1 t2 t3].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> PairTotals(DecodedSuperBlock* w, BlockQ8K* a0, BlockQ8K* a1, BlockQ8K* a2, BlockQ8K* a3, int k)
    {
        var values = Avx.LoadVector256(w->Values + 32 * k);
        var scales = Avx.LoadVector256(w->Scales + 16 * k);
        var l0 = Lanes(values, scales, (sbyte*)&a0->Qs + 32 * k);
        var l1 = Lanes(values, scales, (sbyte*)&a1->Qs + 32 * k);
        var l2 = Lanes(values, scales, (sbyte*)&a2->Qs + 32 * k);
        var l3 = Lanes(values, scales, (sbyte*)&a3->Qs + 32 * k);
        values = Avx.LoadVector256(w->Values + 32 * k + 32);
        scales = Avx.LoadVector256(w->Scales + 16 * k + 16);
        l0 += Lanes(values, scales, (sbyte*)&a0->Qs + 32 * k + 32);
        l1 += Lanes(values, scales, (sbyte*)&a1->Qs + 32 * k + 32);
        l2 += Lanes(values, scales, (sbyte*)&a2->Qs + 32 * k + 32);
        l3 += Lanes(values, scales, (sbyte*)&a3->Qs + 32 * k + 32);
        return Totals(l0, l1, l2, l3);
    }

    /// <summary><see cref="IntegerDot.SignedPanel"/> (IQ4_XS batched) for four tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SignedPanel(DecodedSignedSuperBlock* w, byte* activations, nint stride, int count, float* results)
    {
        if (!IntegerDot.Vectorized)
        {
            for (var t = 0; t < 4; t++) results[t] = IntegerDot.SignedPanel(w, (BlockQ8K*)(activations + t * stride), count);
            return;
        }
        var tokens = new Tokens(activations, stride);
        var acc = Vector128<float>.Zero;
        for (var i = 0; i < count; i++, w++)
        {
            var offset = i * (nint)BlockQ8K.Size;
            BlockQ8K* a0 = (BlockQ8K*)((byte*)tokens[0] + offset), a1 = (BlockQ8K*)((byte*)tokens[1] + offset),
                a2 = (BlockQ8K*)((byte*)tokens[2] + offset), a3 = (BlockQ8K*)((byte*)tokens[3] + offset);
            Vector256<int> l0 = default, l1 = default, l2 = default, l3 = default;
            for (var k = 0; k < 8; k++)
            {
                var magnitudes = Avx.LoadVector256(w->Magnitudes + 32 * k);
                var signs = Avx.LoadVector256(w->Signed + 32 * k);
                var scales = Avx.LoadVector256(w->Scales + 16 * k);
                l0 += SignedLanes(magnitudes, signs, scales, (sbyte*)&a0->Qs + 32 * k);
                l1 += SignedLanes(magnitudes, signs, scales, (sbyte*)&a1->Qs + 32 * k);
                l2 += SignedLanes(magnitudes, signs, scales, (sbyte*)&a2->Qs + 32 * k);
                l3 += SignedLanes(magnitudes, signs, scales, (sbyte*)&a3->Qs + 32 * k);
            }
            var dw = Vector128.Create(w->D) * Vector128.Create(a0->D, a1->D, a2->D, a3->D);
            acc = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(Totals(l0, l1, l2, l3)), dw, acc);
        }
        acc.Store(results);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SignedLanes(Vector256<byte> magnitudes, Vector256<sbyte> signs, Vector256<short> scales, sbyte* qs) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(magnitudes, Avx2.Sign(Avx.LoadVector256(qs), signs)), scales);

    /// <summary><see cref="IntegerDot.SignedBlocks"/> (tinyBLAS_Q0) for four tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SignedBlocks(DecodedBlock32* w, byte* activations, nint stride, int count, float* results)
    {
        if (!IntegerDot.Vectorized)
        {
            for (var t = 0; t < 4; t++) results[t] = IntegerDot.SignedBlocks(w, (BlockQ80*)(activations + t * stride), count);
            return;
        }
        var ones = Vector256.Create((short)1);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        var a0 = (BlockQ80*)activations;
        var a1 = (BlockQ80*)(activations + stride);
        var a2 = (BlockQ80*)(activations + 2 * stride);
        var a3 = (BlockQ80*)(activations + 3 * stride);
        for (var i = 0; i < count; i++, w++, a0++, a1++, a2++, a3++)
        {
            var magnitudes = Avx.LoadVector256(w->Magnitudes);
            var signs = Avx.LoadVector256(w->Signed);
            acc0 = Vector256.FusedMultiplyAdd(Vector256.Create(w->D * Fp16.ToFloat(a0->D)), Block(magnitudes, signs, a0, ones), acc0);
            acc1 = Vector256.FusedMultiplyAdd(Vector256.Create(w->D * Fp16.ToFloat(a1->D)), Block(magnitudes, signs, a1, ones), acc1);
            acc2 = Vector256.FusedMultiplyAdd(Vector256.Create(w->D * Fp16.ToFloat(a2->D)), Block(magnitudes, signs, a2, ones), acc2);
            acc3 = Vector256.FusedMultiplyAdd(Vector256.Create(w->D * Fp16.ToFloat(a3->D)), Block(magnitudes, signs, a3, ones), acc3);
        }
        results[0] = Kernels.Lanes.Sum8(acc0);
        results[1] = Kernels.Lanes.Sum8(acc1);
        results[2] = Kernels.Lanes.Sum8(acc2);
        results[3] = Kernels.Lanes.Sum8(acc3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Block(Vector256<byte> magnitudes, Vector256<sbyte> signs, BlockQ80* a, Vector256<short> ones) =>
        Vector256.ConvertToSingle(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(magnitudes, Avx2.Sign(Avx.LoadVector256((sbyte*)&a->Qs), signs)), ones));

    /// <summary><see cref="IntegerDot.RepackedBlocks"/> (Q4_0 / IQ4_NL repacked) for four tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RepackedBlocks(DecodedBlock32* w, byte* activations, nint stride, int count, float* results)
    {
        if (!IntegerDot.Vectorized)
        {
            for (var t = 0; t < 4; t++) results[t] = IntegerDot.RepackedBlocks(w, (BlockQ80*)(activations + t * stride), count);
            return;
        }
        var ones = Vector256.Create((short)1);
        var acc = Vector128<float>.Zero;
        var a0 = (BlockQ80*)activations;
        var a1 = (BlockQ80*)(activations + stride);
        var a2 = (BlockQ80*)(activations + 2 * stride);
        var a3 = (BlockQ80*)(activations + 3 * stride);
        for (var i = 0; i < count; i++, w++, a0++, a1++, a2++, a3++)
        {
            var magnitudes = Avx.LoadVector256(w->Magnitudes);
            var signs = Avx.LoadVector256(w->Signed);
            var totals = Totals(BlockLanes(magnitudes, signs, a0, ones), BlockLanes(magnitudes, signs, a1, ones),
                BlockLanes(magnitudes, signs, a2, ones), BlockLanes(magnitudes, signs, a3, ones));
            var d = Vector128.Create(w->D) * Vector128.Create(Fp16.ToFloat(a0->D), Fp16.ToFloat(a1->D), Fp16.ToFloat(a2->D), Fp16.ToFloat(a3->D));
            acc = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(totals), d, acc);
        }
        acc.Store(results);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> BlockLanes(Vector256<byte> magnitudes, Vector256<sbyte> signs, BlockQ80* a, Vector256<short> ones) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(magnitudes, Avx2.Sign(Avx.LoadVector256((sbyte*)&a->Qs), signs)), ones);
}
