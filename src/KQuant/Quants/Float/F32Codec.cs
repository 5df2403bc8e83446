using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KQuant.Gguf;

namespace KQuant.Quants.Float;

/// <summary>GGML_TYPE_F32: the floats themselves, copied (ggml_quantize_chunk memcpys them). The copy also checks for
/// NaN/±Inf on the way, so a row is read once rather than scanned and then copied.</summary>
public sealed class F32Codec : IFiniteCheckingRowCodec
{
    public GgmlType Type => GgmlType.F32;

    public bool UsesImportance => false;

    public void Quantize(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance) =>
        MemoryMarshal.AsBytes(source).CopyTo(destination);

    public bool TryQuantizeFinite(ReadOnlySpan<float> source, Span<byte> destination, ReadOnlySpan<float> importance)
    {
        if (destination.Length < source.Length * sizeof(float)) throw new ArgumentException("destination is shorter than source");
        ref var src = ref MemoryMarshal.GetReference(source);
        ref var dstBytes = ref MemoryMarshal.GetReference(destination);
        var i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            // A float is non-finite iff its exponent bits are all ones; collect that over the row and test once.
            var exponent = Vector256.Create(0x7F800000u);
            var nonFinite = Vector256<uint>.Zero;
            for (; i <= source.Length - 32; i += 32)
            {
                var a = Vector256.LoadUnsafe(ref src, (nuint)i);
                var b = Vector256.LoadUnsafe(ref src, (nuint)(i + 8));
                var c = Vector256.LoadUnsafe(ref src, (nuint)(i + 16));
                var d = Vector256.LoadUnsafe(ref src, (nuint)(i + 24));
                nonFinite |= Vector256.Equals(a.AsUInt32() & exponent, exponent) | Vector256.Equals(b.AsUInt32() & exponent, exponent)
                    | Vector256.Equals(c.AsUInt32() & exponent, exponent) | Vector256.Equals(d.AsUInt32() & exponent, exponent);
                ref var to = ref Unsafe.Add(ref dstBytes, i * sizeof(float));
                a.AsByte().StoreUnsafe(ref to);
                b.AsByte().StoreUnsafe(ref to, 32);
                c.AsByte().StoreUnsafe(ref to, 64);
                d.AsByte().StoreUnsafe(ref to, 96);
            }
            if (nonFinite != Vector256<uint>.Zero) return false;
        }
        for (; i < source.Length; i++)
        {
            if (!float.IsFinite(source[i])) return false;
            Unsafe.WriteUnaligned(ref Unsafe.Add(ref dstBytes, i * sizeof(float)), source[i]);
        }
        return true;
    }

    public void Dequantize(ReadOnlySpan<byte> source, Span<float> destination) =>
        MemoryMarshal.Cast<byte, float>(source).CopyTo(destination);
}
