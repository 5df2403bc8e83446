using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using KQuant.Gguf;
using KQuant.Quants.Float;
using static KQuant.Quants.Legacy.LegacyBlockMath;

namespace KQuant.Quants.Legacy;

/// <summary>GGML_TYPE_Q8_0 as llama.cpp v0.5.0 writes it (quantize_row_q8_0_ref; ggml ignores an importance matrix for this
/// type): scale = max|x| / 127, code = roundf(x/scale), rounding halves away from zero.</summary>
internal sealed class Q80Codec : LegacyCodec<BlockQ80>, IOptimalRowCodec
{
    private const int Nmax = 127;

    public Q80Codec() : this(VectorizedByDefault) { }

    internal Q80Codec(bool vectorized) : base(vectorized) { }

    public override GgmlType Type => GgmlType.Q8_0;

    public override bool UsesImportance => false;

    /// <summary>Trial scales against the reference computed in lanes (<see cref="ScaleTrialLaneSearch"/>), with and without
    /// importance: the reference ignores it, so it is as cheap either way.</summary>
    public void QuantizeOptimal(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance, RowRole role) =>
        ScaleTrialLaneSearch.Quantize<BlockQ80, TrialFormat>(this, source, destination, importance, WriteLevels);

    /// <summary>quantize_row_q8_0_ref in lanes: d = max|x|/127, level = roundf(x/d). A searched block may use every signed
    /// byte (−128 decodes fine).</summary>
    private readonly struct TrialFormat : IScaleTrialFormat
    {
        public static int Lowest => sbyte.MinValue;

        public static int Highest => sbyte.MaxValue;

        public static int ReferenceSpan => Nmax;

        public static Vector256<float> ReferenceScale(Vector256<float> signedMax, Vector256<float> absMax) =>
            absMax / Vector256.Create((float)Nmax);

        public static Vector256<float> ReferenceLevel(Vector256<float> x, Vector256<float> inverse) => RoundHalfAwayFromZero(x * inverse);
    }

    private static void WriteLevels(ref BlockQ80 block, ReadOnlySpan<float> levels, ushort scale, ushort offset)
    {
        block.D = scale;
        if (!Avx2.IsSupported)
        {
            for (var j = 0; j < BlockWeights; j++) block.Qs[j] = (byte)(sbyte)levels[j];
            return;
        }
        // The levels are integers in −128..127: their low bytes are the codes.
        NibblePacking.LowBytes(Vector256.ConvertToInt32(Vector256.Create(levels)), Vector256.ConvertToInt32(Vector256.Create(levels[8..])))
            .StoreUnsafe(ref block.Qs[0]);
        NibblePacking.LowBytes(Vector256.ConvertToInt32(Vector256.Create(levels[16..])), Vector256.ConvertToInt32(Vector256.Create(levels[24..])))
            .StoreUnsafe(ref block.Qs[16]);
    }

    protected override void QuantizeScalar(ReadOnlySpan<float> source, Span<BlockQ80> blocks)
    {
        for (var ib = 0; ib < blocks.Length; ib++)
        {
            var x = source.Slice(ib * BlockWeights, BlockWeights);
            ref var block = ref blocks[ib];
            float amax = 0;
            foreach (var v in x) amax = Math.Max(amax, MathF.Abs(v));
            var d = amax / Nmax;
            var id = d != 0 ? 1f / d : 0f;
            block.D = Fp16.FromFloat(d);
            for (var j = 0; j < BlockWeights; j++)
            {
                block.Qs[j] = (byte)TruncateLikeX86(MathF.Round(x[j] * id, MidpointRounding.AwayFromZero));
            }
        }
    }

    protected override void QuantizeVector256(ReadOnlySpan<float> source, Span<BlockQ80> blocks)
    {
        ref var x = ref MemoryMarshal.GetReference(source);
        for (var ib = 0; ib < blocks.Length; ib++, x = ref Unsafe.Add(ref x, BlockWeights))
        {
            ref var block = ref blocks[ib];
            var v0 = Vector256.LoadUnsafe(ref x);
            var v1 = Vector256.LoadUnsafe(ref x, 8);
            var v2 = Vector256.LoadUnsafe(ref x, 16);
            var v3 = Vector256.LoadUnsafe(ref x, 24);
            var amax = HorizontalMax(Vector256.MaxNative(
                Vector256.MaxNative(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.MaxNative(Vector256.Abs(v2), Vector256.Abs(v3))));
            var d = amax / Nmax;
            var id = Vector256.Create(d != 0 ? 1f / d : 0f);
            block.D = Fp16.FromFloat(d);
            NibblePacking.LowBytes(Code(v0, id), Code(v1, id)).StoreUnsafe(ref block.Qs[0]);
            NibblePacking.LowBytes(Code(v2, id), Code(v3, id)).StoreUnsafe(ref block.Qs[16]);
        }

        static Vector256<int> Code(Vector256<float> v, Vector256<float> id) => TruncateLikeX86(RoundHalfAwayFromZero(v * id));
    }

    /// <summary>C's roundf on 8 lanes, exactly: truncate, then step one away from zero when the dropped fraction is ≥ ½.
    /// (The fraction is exact; ±Inf and NaN pass through unchanged.)</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> RoundHalfAwayFromZero(Vector256<float> v)
    {
        var truncated = Avx.RoundToZero(v);
        var roundsAway = Vector256.GreaterThanOrEqual(Vector256.Abs(v - truncated), Vector256.Create(0.5f));
        var step = Vector256.CopySign(Vector256<float>.One, v) & roundsAway;
        return truncated + step;
    }

    protected override void DequantizeScalar(ReadOnlySpan<BlockQ80> blocks, Span<float> destination)
    {
        for (var ib = 0; ib < blocks.Length; ib++)
        {
            var d = Fp16.ToFloat(blocks[ib].D);
            ReadOnlySpan<byte> qs = blocks[ib].Qs;
            var y = destination.Slice(ib * BlockWeights, BlockWeights);
            for (var j = 0; j < BlockWeights; j++) y[j] = (sbyte)qs[j] * d;
        }
    }

    protected override void DequantizeVector256(ReadOnlySpan<BlockQ80> blocks, Span<float> destination)
    {
        ref var y = ref MemoryMarshal.GetReference(destination);
        for (var ib = 0; ib < blocks.Length; ib++, y = ref Unsafe.Add(ref y, BlockWeights))
        {
            var d = Vector256.Create(Fp16.ToFloat(blocks[ib].D));
            var low = Vector128.LoadUnsafe(in blocks[ib].Qs[0]).AsSByte();
            var high = Vector128.LoadUnsafe(in blocks[ib].Qs[16]).AsSByte();
            (Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(low)) * d).StoreUnsafe(ref y);
            (Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(low, 8))) * d).StoreUnsafe(ref y, 8);
            (Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(high)) * d).StoreUnsafe(ref y, 16);
            (Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(high, 8))) * d).StoreUnsafe(ref y, 24);
        }
    }
}
