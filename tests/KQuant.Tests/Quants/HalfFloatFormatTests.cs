using System.Runtime.Intrinsics;
using KQuant.Quants.Float;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Quants;

/// <summary><see cref="Fp16"/> and <see cref="Bf16"/> (scalar, 8-lane and row forms) against ggml's conversions, bit for bit:
/// every 16-bit pattern to float, and float to 16 bits on every sign/exponent/top-mantissa combination with the low byte
/// at each rounding boundary (KQUANT_EXHAUSTIVE=1: all 2^32 floats), NaN and ±Inf included.</summary>
public class HalfFloatFormatTests
{
    private delegate void Reference16To32(ReadOnlySpan<ushort> source, Span<float> destination);
    private delegate void Reference32To16(ReadOnlySpan<float> source, Span<ushort> destination);

    [SkippableFact]
    public void Fp16ToFloatMatchesGgmlForEveryPattern() => CheckEvery16BitPattern<Fp16>("fp16", GgmlReference.HalfBitsToFloat);

    [SkippableFact]
    public void Bf16ToFloatMatchesGgmlForEveryPattern() => CheckEvery16BitPattern<Bf16>("bf16", GgmlReference.Bf16BitsToFloat);

    [SkippableFact]
    public void FloatToFp16MatchesGgml() => CheckFloatsTo16Bits<Fp16>("fp16", GgmlReference.FloatToHalfBits);

    [SkippableFact]
    public void FloatToBf16MatchesGgml() => CheckFloatsTo16Bits<Bf16>("bf16", GgmlReference.FloatToBf16Bits);

    private static void CheckEvery16BitPattern<TFormat>(string name, Reference16To32 reference) where TFormat : IHalfFloatFormat
    {
        GgmlReference.Require();
        var patterns = new ushort[65536];
        for (var i = 0; i < patterns.Length; i++) patterns[i] = (ushort)i;
        var expected = new float[patterns.Length];
        reference(patterns, expected);
        var rows = new float[patterns.Length];
        HalfFloatRows.ToFloat<TFormat>(patterns, rows);
        for (var i = 0; i < patterns.Length; i++)
        {
            var lanes = TFormat.ToFloat(Vector256.Create((uint)i));
            AssertSameBits(name, $"0x{i:x4}", expected[i], TFormat.ToFloat((ushort)i), "scalar");
            AssertSameBits(name, $"0x{i:x4}", expected[i], lanes[i & 7], "Vector256");
            AssertSameBits(name, $"0x{i:x4}", expected[i], rows[i], "row");
        }
    }

    private static void CheckFloatsTo16Bits<TFormat>(string name, Reference32To16 reference) where TFormat : IHalfFloatFormat
    {
        GgmlReference.Require();
        // Odd length, so the scalar tail of the row conversion runs too.
        const int chunk = (1 << 22) + 7;
        var floats = new float[chunk];
        var expected = new ushort[chunk];
        var actual = new ushort[chunk];
        var lowBytes = Environment.GetEnvironmentVariable("KQUANT_EXHAUSTIVE") == "1"
            ? Enumerable.Range(0, 256).Select(b => (uint)b).ToArray()
            : [0x00, 0x01, 0x7f, 0x80, 0xff];
        foreach (var low in lowBytes)
        {
            for (var start = 0L; start < 1L << 24; start += chunk)
            {
                var count = (int)Math.Min(chunk, (1L << 24) - start);
                for (var i = 0; i < count; i++) floats[i] = BitConverter.UInt32BitsToSingle((uint)((start + i) << 8) | low);
                reference(floats.AsSpan(0, count), expected);
                HalfFloatRows.FromFloat<TFormat>(floats.AsSpan(0, count), actual);
                for (var i = 0; i < count; i++)
                {
                    if (actual[i] != expected[i])
                    {
                        Assert.Fail($"{name} of float 0x{BitConverter.SingleToUInt32Bits(floats[i]):x8} (row): ggml 0x{expected[i]:x4}, ours 0x{actual[i]:x4}");
                    }
                    if (TFormat.FromFloat(floats[i]) != expected[i])
                    {
                        Assert.Fail($"{name} of float 0x{BitConverter.SingleToUInt32Bits(floats[i]):x8} (scalar): ggml 0x{expected[i]:x4}, ours 0x{TFormat.FromFloat(floats[i]):x4}");
                    }
                }
            }
        }
    }

    private static void AssertSameBits(string name, string input, float expected, float actual, string form)
    {
        if (BitConverter.SingleToUInt32Bits(expected) != BitConverter.SingleToUInt32Bits(actual))
        {
            Assert.Fail($"{name} {input} ({form}): ggml 0x{BitConverter.SingleToUInt32Bits(expected):x8}, ours 0x{BitConverter.SingleToUInt32Bits(actual):x8}");
        }
    }
}
