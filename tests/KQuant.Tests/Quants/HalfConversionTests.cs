using KQuant.Quants;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Quants;

/// <summary>The codecs store scales through GgmlFp16 (System.Half but for NaN payloads) and read them with System.Half;
/// ggml uses its own software conversion. They must agree bit for bit.</summary>
public class HalfConversionTests
{
    [SkippableFact]
    public void HalfToFloatMatchesGgmlForEveryHalf()
    {
        GgmlReference.Require();
        var halves = new ushort[65536];
        for (var i = 0; i < halves.Length; i++) halves[i] = (ushort)i;
        var expected = new float[halves.Length];
        GgmlReference.HalfBitsToFloat(halves, expected);
        for (var i = 0; i < halves.Length; i++)
        {
            var actual = (float)BitConverter.UInt16BitsToHalf(halves[i]);
            Assert.True(BitConverter.SingleToUInt32Bits(expected[i]) == BitConverter.SingleToUInt32Bits(actual),
                $"fp16 0x{i:x4}: ggml 0x{BitConverter.SingleToUInt32Bits(expected[i]):x8}, System.Half 0x{BitConverter.SingleToUInt32Bits(actual):x8}");
        }
    }

    /// <summary>Every float whose low 8 bits are 0x00, 0x7f, 0x80, 0xff or 0x01 (all exponents, signs and the rounding
    /// boundaries of the 13 dropped bits). KQUANT_EXHAUSTIVE=1 sweeps all 2^32 floats (about a minute).</summary>
    [SkippableFact]
    public void FloatToHalfMatchesGgmlOnEveryExponentAndRoundingBoundary()
    {
        GgmlReference.Require();
        const int chunk = 1 << 22;
        var floats = new float[chunk];
        var expected = new ushort[chunk];
        var lowBytes = Environment.GetEnvironmentVariable("KQUANT_EXHAUSTIVE") == "1"
            ? Enumerable.Range(0, 256).Select(b => (uint)b).ToArray()
            : [0x00, 0x01, 0x7f, 0x80, 0xff];
        foreach (var low in lowBytes)
        {
            for (var start = 0L; start < 1L << 24; start += chunk)
            {
                for (var i = 0; i < chunk; i++) floats[i] = BitConverter.UInt32BitsToSingle((uint)((start + i) << 8) | low);
                GgmlReference.FloatToHalfBits(floats, expected);
                for (var i = 0; i < chunk; i++)
                {
                    var actual = BitConverter.HalfToUInt16Bits(GgmlFp16.FromSingle(floats[i]));
                    if (actual != expected[i])
                    {
                        Assert.Fail($"float 0x{BitConverter.SingleToUInt32Bits(floats[i]):x8}: ggml 0x{expected[i]:x4}, ours 0x{actual:x4}");
                    }
                }
            }
        }
    }
}
