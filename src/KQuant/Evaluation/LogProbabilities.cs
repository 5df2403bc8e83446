using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using KQuant.Quants;

namespace KQuant.Evaluation;

/// <summary>Log-softmax of one row of logits the ways llama-perplexity computes it (tools/perplexity/perplexity.cpp of
/// llama.cpp v0.5.0): e^(l − max) summed in double. The exponentials are vectorized here (llama.cpp calls expf per
/// value); they differ by an ulp at most, which moves a perplexity by far less than its printed digits.</summary>
public static class LogProbabilities
{
    /// <summary>Σ e^(l − max) in double, <paramref name="scratch"/> (at least as long as the row) receiving the terms.</summary>
    public static double SumExp(ReadOnlySpan<float> logits, float max, Span<float> scratch)
    {
        var terms = scratch[..logits.Length];
        TensorPrimitives.Subtract(logits, max, terms);
        TensorPrimitives.Exp(terms, terms);
        var i = 0;
        double sum = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var acc = Vector256<double>.Zero;
            ref var t = ref MemoryMarshal.GetReference(terms);
            for (; i + 8 <= terms.Length; i += 8)
            {
                var (low, high) = Vector256.Widen(Vector256.LoadUnsafe(ref t, (nuint)i));
                acc += low + high;
            }
            sum = Vector256.Sum(acc);
        }
        for (; i < terms.Length; i++) sum += terms[i];
        return sum;
    }

    /// <summary>−log p(<paramref name="token"/>): llama-perplexity's log_softmax for the plain perplexity.</summary>
    public static double NegativeLogLikelihood(ReadOnlySpan<float> logits, int token, Span<float> scratch)
    {
        var max = TensorPrimitives.Max(logits);
        var sumExp = SumExp(logits, max, scratch);
        return -(logits[token] - max - Math.Log(sumExp));
    }

    /// <summary>Writes the compressed log-probabilities of one row (<see cref="LogitsFile.RowLength"/> values) and
    /// returns −log p(<paramref name="token"/>), as llama-perplexity's log_softmax for --kl-divergence-base: log-probs
    /// within 16 of the most likely are stored as round((l − min)/scale) with scale = (max − min)/65535.</summary>
    public static double Compress(ReadOnlySpan<float> logits, int token, Span<ushort> row, Span<float> scratch)
    {
        var max = TensorPrimitives.Max(logits);
        var min = MathF.Max(TensorPrimitives.Min(logits), max - 16);
        var logSumExp = (float)Math.Log(SumExp(logits, max, scratch));
        var minLogProb = min - max - logSumExp;
        var scale = (max - min) / 65535f;
        var header = MemoryMarshal.Cast<ushort, float>(row[..4]);
        header[0] = scale;
        header[1] = minLogProb;
        var codes = row.Slice(4, logits.Length);
        if (scale != 0)
        {
            var inverse = 1 / scale;
            var i = 0;
            if (Avx2.IsSupported)
            {
                ref var l = ref MemoryMarshal.GetReference(logits);
                ref var q = ref MemoryMarshal.GetReference(codes);
                var vmin = Vector256.Create(min);
                var vinv = Vector256.Create(inverse);
                for (; i + 8 <= logits.Length; i += 8)
                {
                    var v = Vector256.LoadUnsafe(ref l, (nuint)i);
                    var code = Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(vinv * (v - vmin)));
                    code &= Vector256.GreaterThan(v, vmin).AsInt32();
                    // Codes are 0..65535: pack to unsigned 16 bits, restoring lane order across the two halves.
                    var packed = Avx2.PackUnsignedSaturate(code, code).AsUInt64();
                    Avx2.Permute4x64(packed, 0b11_01_10_00).GetLower().AsUInt16().StoreUnsafe(ref q, (nuint)i);
                }
            }
            for (; i < logits.Length; i++) codes[i] = logits[i] > min ? (ushort)BlockSolvers.NearestInt(inverse * (logits[i] - min)) : (ushort)0;
        }
        else
        {
            codes.Clear();
        }
        row[(4 + logits.Length)..].Clear();
        return max + logSumExp - logits[token];
    }
}
