using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace KQuant.Quants.Float;

/// <summary>A 16-bit float encoding (<see cref="Fp16"/>, <see cref="Bf16"/>): scalar and 8-lane conversions to and from fp32.
/// The vector forms carry the 16-bit values in the low half of 32-bit lanes.</summary>
public interface IHalfFloatFormat
{
    static abstract ushort FromFloat(float f);
    static abstract float ToFloat(ushort h);
    static abstract Vector256<uint> FromFloat(Vector256<float> f);
    static abstract Vector256<float> ToFloat(Vector256<uint> h);
}

/// <summary>Whole-row conversions for any <see cref="IHalfFloatFormat"/>: 16 values per step with Vector256, scalar tail.
/// The JIT specializes each call per format, so there is no dispatch inside the loop.</summary>
public static class HalfFloatRows
{
    public static void FromFloat<TFormat>(ReadOnlySpan<float> source, Span<ushort> destination) where TFormat : IHalfFloatFormat
    {
        if (destination.Length < source.Length) throw new ArgumentException("destination is shorter than source");
        var i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref var src = ref MemoryMarshal.GetReference(source);
            ref var dst = ref MemoryMarshal.GetReference(destination);
            for (; i <= source.Length - 16; i += 16)
            {
                var lo = TFormat.FromFloat(Vector256.LoadUnsafe(ref src, (nuint)i));
                var hi = TFormat.FromFloat(Vector256.LoadUnsafe(ref src, (nuint)(i + 8)));
                Vector256.Narrow(lo, hi).StoreUnsafe(ref dst, (nuint)i);
            }
        }
        for (; i < source.Length; i++) destination[i] = TFormat.FromFloat(source[i]);
    }

    public static void ToFloat<TFormat>(ReadOnlySpan<ushort> source, Span<float> destination) where TFormat : IHalfFloatFormat
    {
        if (destination.Length < source.Length) throw new ArgumentException("destination is shorter than source");
        var i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref var src = ref MemoryMarshal.GetReference(source);
            ref var dst = ref MemoryMarshal.GetReference(destination);
            for (; i <= source.Length - 16; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.LoadUnsafe(ref src, (nuint)i));
                TFormat.ToFloat(lo).StoreUnsafe(ref dst, (nuint)i);
                TFormat.ToFloat(hi).StoreUnsafe(ref dst, (nuint)(i + 8));
            }
        }
        for (; i < source.Length; i++) destination[i] = TFormat.ToFloat(source[i]);
    }
}
