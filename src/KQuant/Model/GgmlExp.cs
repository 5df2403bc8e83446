using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KQuant.Model;

/// <summary>The exponential ggml-cpu uses in its vectorized softmax and SiLU on AVX2 machines (ggml_v_expf of vec.h in
/// llama.cpp v0.5.0, after ARM's optimized-routines expf: max error 1.45 ulp), computed with the same operations so the
/// results are the same floats. It matters more than its accuracy suggests: SwiGLU and attention outputs are rounded
/// to int8 (or fp16) before the next matrix product, and a one-ulp difference occasionally flips that rounding.</summary>
internal static class GgmlExp
{
    public static bool Vectorized => Avx2.IsSupported && Fma.IsSupported;

    private static readonly Vector256<float> Shift = Constant(0x4b400000);        // 0x1.8p23
    private static readonly Vector256<float> Log2E = Constant(0x3fb8aa3b);        // 0x1.715476p+0
    private static readonly Vector256<float> Ln2Low = Constant(0x35bfbe8e);       // 0x1.7f7d1cp-20
    private static readonly Vector256<float> Ln2High = Constant(0x3f317200);      // 0x1.62e4p-1
    private static readonly Vector256<float> C5 = Constant(0x3c072010);           // 0x1.0e4020p-7
    private static readonly Vector256<float> C4 = Constant(0x3d2b9f17);           // 0x1.573e2ep-5
    private static readonly Vector256<float> C3 = Constant(0x3e2aaf33);           // 0x1.555e66p-3
    private static readonly Vector256<float> C2 = Constant(0x3efffedb);           // 0x1.fffdb6p-2
    private static readonly Vector256<float> C1 = Constant(0x3f7ffff6);           // 0x1.ffffecp-1

    /// <summary>e^x on 8 lanes (needs <see cref="Vectorized"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        // x = n·ln2 + b with n an integer (rounded through the 1.5·2^23 shift), e^b by a polynomial, 2^n by exponent bits.
        var z = Fma.MultiplyAdd(x, Log2E, Shift);
        var n = z - Shift;
        var b = Fma.MultiplyAddNegated(n, Ln2Low, Fma.MultiplyAddNegated(n, Ln2High, x));
        var e = Avx2.ShiftLeftLogical(z.AsInt32(), 23);
        var k = (e + Vector256.Create(1f).AsInt32()).AsSingle();
        var absN = Vector256.Abs(n);
        var large = Avx.CompareGreaterThan(absN, Vector256.Create(126f));
        var u = b * b;
        var j = Fma.MultiplyAdd(Fma.MultiplyAdd(Fma.MultiplyAdd(C5, b, C4), u, Fma.MultiplyAdd(C3, b, C2)), u, C1 * b);
        if (Avx.MoveMask(large) == 0) return Fma.MultiplyAdd(j, k, k);
        // |n| > 126: 2^n in two factors so it neither overflows early nor loses subnormal results; beyond 192, ±∞ or 0.
        var g = (Avx.CompareLessThanOrEqual(n, Vector256<float>.Zero).AsInt32() & Vector256.Create(unchecked((int)0x82000000)));
        var s1 = (g + Vector256.Create(0x7f000000)).AsSingle();
        var s2 = (e - g).AsSingle();
        var huge = Avx.CompareGreaterThan(absN, Vector256.Create(192f));
        var scaled = Vector256.ConditionalSelect(large, Fma.MultiplyAdd(s2, j, s2) * s1, Fma.MultiplyAdd(k, j, k));
        return Vector256.ConditionalSelect(huge, s1 * s1, scaled);
    }

    /// <summary>ggml_vec_swiglu_f32: gate[i] = silu(gate[i])·up[i], silu(x) = x / (1 + e^−x); ggml_v_expf on whole
    /// vectors, expf on the tail.</summary>
    public static void SwiGlu(Span<float> gate, ReadOnlySpan<float> up)
    {
        var i = 0;
        if (Vectorized)
        {
            var one = Vector256.Create(1f);
            for (; i + 8 <= gate.Length; i += 8)
            {
                var x = Vector256.Create(gate.Slice(i, 8));
                var silu = x / (one + Exp(Vector256<float>.Zero - x));
                (silu * Vector256.Create(up.Slice(i, 8))).CopyTo(gate.Slice(i, 8));
            }
        }
        for (; i < gate.Length; i++) gate[i] = gate[i] / (1f + MathF.Exp(-gate[i])) * up[i];
    }

    /// <summary>ggml_vec_soft_max_f32: values[i] = e^(values[i] − max); returns their sum in double, each group of
    /// eight added as ggml adds a vector's lanes ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)), the tail with expf.</summary>
    public static double ExpSum(Span<float> values, float max)
    {
        double sum = 0;
        var i = 0;
        if (Vectorized)
        {
            var m = Vector256.Create(max);
            for (; i + 8 <= values.Length; i += 8)
            {
                var y = Exp(Vector256.Create(values.Slice(i, 8)) - m);
                y.CopyTo(values.Slice(i, 8));
                sum += Kernels.Lanes.Sum8(y);
            }
        }
        for (; i < values.Length; i++)
        {
            values[i] = MathF.Exp(values[i] - max);
            sum += values[i];
        }
        return sum;
    }

    /// <summary>ggml_compute_forward_soft_max_f32 without mask: y = e^(x − max) / Σ, the sum from <see cref="ExpSum"/>.</summary>
    public static void Softmax(Span<float> values)
    {
        var max = float.NegativeInfinity;
        foreach (var v in values) max = MathF.Max(max, v);
        var scale = (float)(1.0 / ExpSum(values, max));
        foreach (ref var v in values) v *= scale;
    }

    private static Vector256<float> Constant(uint bits) => Vector256.Create(BitConverter.UInt32BitsToSingle(bits));
}
