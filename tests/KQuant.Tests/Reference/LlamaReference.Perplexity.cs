using System.Runtime.InteropServices;

namespace KQuant.Tests.Reference;

// llama-perplexity's measurement (tools/perplexity/perplexity.cpp of v0.5.0: perplexity() and kl_divergence()) driven
// through libllama: its tokenizer, its llama_decode, its logits. The arithmetic on the logits is restated here plainly,
// independent of KQuant.Evaluation, so the two implementations check each other.
public static unsafe partial class LlamaReference
{
    public sealed record PerplexityRun(double Perplexity, double Uncertainty, double[] Running, int[] Tokens);

    /// <summary>Perplexity of <paramref name="model"/> on <paramref name="text"/> as llama-perplexity computes it (default
    /// context settings: F16 KV cache, flash attention as llama.cpp decides). With <paramref name="logitsPath"/> it also
    /// writes the --kl-divergence-base file.</summary>
    public static PerplexityRun Perplexity(string model, string text, int contextSize, int chunks, int threads = 1, string? logitsPath = null)
    {
        using var llama = new Inference(model, new ContextOptions(contextSize) { Threads = threads });
        var tokens = llama.Tokenize(text);
        var n = contextSize;
        chunks = Math.Min(chunks, tokens.Length / n);
        var first = n / 2;
        var vocab = llama.VocabSize;
        var rowLength = 2 * ((vocab + 1) / 2) + 4;
        using var file = logitsPath is null ? null : new BinaryWriter(File.Create(logitsPath));
        if (file is not null)
        {
            file.Write("_logits_"u8);
            file.Write(n);
            file.Write(vocab);
            file.Write(chunks);
            file.Write(MemoryMarshal.AsBytes(tokens.AsSpan(0, chunks * n)));
        }
        double nll = 0, nll2 = 0;
        var count = 0;
        var running = new double[chunks];
        var row = new ushort[rowLength];
        for (var c = 0; c < chunks; c++)
        {
            var logits = DecodeChunk(llama, tokens, c, n);
            for (var k = 0; k < n - 1 - first; k++)
            {
                var target = tokens[c * n + first + k + 1];
                var v = file is null ? PlainNll(logits[k], target) : CompressedNll(logits[k], target, row);
                file?.Write(MemoryMarshal.AsBytes(row.AsSpan()));
                nll += v;
                nll2 += v * v;
            }
            count += n - first - 1;
            running[c] = Math.Exp(nll / count);
        }
        nll /= count;
        nll2 = nll2 / count - nll * nll;
        var ppl = Math.Exp(nll);
        return new PerplexityRun(ppl, Math.Sqrt(nll2 / (count - 1)) * ppl, running, tokens);
    }

    /// <summary>llama-perplexity's chunk: fresh memory, first token replaced by BOS when the model adds one,
    /// logits of the second half.</summary>
    private static float[][] DecodeChunk(Inference llama, int[] tokens, int chunk, int n)
    {
        llama.ClearMemory();
        var input = tokens.AsSpan(chunk * n, n).ToArray();
        if (llama.AddBos) input[0] = llama.Bos;
        return llama.Decode(input, 0, i => i >= n / 2);
    }

    private static double PlainNll(float[] logits, int token)
    {
        var max = logits.Max();
        double sum = 0;
        foreach (var l in logits) sum += MathF.Exp(l - max);
        return -(logits[token] - max - Math.Log(sum));
    }

    private static double CompressedNll(float[] logits, int token, ushort[] row)
    {
        var max = logits.Max();
        var min = Math.Max(logits.Min(), max - 16);
        double sum = 0;
        foreach (var l in logits) sum += MathF.Exp(l - max);
        var logSumExp = (float)Math.Log(sum);
        var scale = (max - min) / 65535f;
        MemoryMarshal.Cast<ushort, float>(row.AsSpan(0, 4))[0] = scale;
        MemoryMarshal.Cast<ushort, float>(row.AsSpan(0, 4))[1] = min - max - logSumExp;
        Array.Clear(row, 4, row.Length - 4);
        if (scale != 0)
        {
            var inverse = 1 / scale;
            for (var i = 0; i < logits.Length; i++) row[4 + i] = logits[i] > min ? (ushort)MathF.Round(inverse * (logits[i] - min), MidpointRounding.ToEven) : (ushort)0;
        }
        return max + logSumExp - logits[token];
    }

    /// <summary>llama-perplexity --kl-divergence's statistics for <paramref name="model"/> against a base file.</summary>
    public sealed record KlRun(double PplQ, double PplBase, double MeanKld, double KldUncertainty, double MaxKld, double MedianKld,
        double Kld99, double Kld90, double Kld1, double MeanDeltaP, double RmsDeltaP, double SameTopP, double SameTopUncertainty,
        double PplRatio, double MaxDeltaP, double MedianDeltaP, double DeltaP99, double DeltaP1, long Count);

    public static KlRun KlDivergence(string model, string baseFile, int threads = 1)
    {
        using var reader = new BinaryReader(File.OpenRead(baseFile));
        if (!reader.ReadBytes(8).AsSpan().SequenceEqual("_logits_"u8)) throw new InvalidDataException("not a logits file");
        var n = reader.ReadInt32();
        var vocab = reader.ReadInt32();
        var chunks = reader.ReadInt32();
        var tokens = MemoryMarshal.Cast<byte, int>(reader.ReadBytes(n * chunks * sizeof(int))).ToArray();
        var rowLength = 2 * ((vocab + 1) / 2) + 4;
        using var llama = new Inference(model, new ContextOptions(n) { Threads = threads });
        var first = n / 2;
        double sumNll = 0, sumNll2 = 0, sumNllBase = 0, sumNllBase2 = 0, sumKld = 0, sumKld2 = 0, sumDp = 0, sumDp2 = 0, sumDp4 = 0;
        long same = 0, count = 0;
        var klds = new List<float>();
        var dps = new List<float>();
        for (var c = 0; c < chunks; c++)
        {
            var logits = DecodeChunk(llama, tokens, c, n);
            for (var k = 0; k < n - 1 - first; k++)
            {
                var row = MemoryMarshal.Cast<byte, ushort>(reader.ReadBytes(rowLength * 2));
                var scale = MemoryMarshal.Cast<ushort, float>(row[..4])[0];
                var minLogProb = MemoryMarshal.Cast<ushort, float>(row[..4])[1];
                var l = logits[k];
                var target = tokens[c * n + first + k + 1];
                var max = l.Max();
                var top = Array.IndexOf(l, max);
                double sum = 0;
                foreach (var x in l) sum += MathF.Exp(x - max);
                var logSumExp = (float)Math.Log(sum);
                var nll = max + logSumExp - l[target];
                var nllBase = -(scale * row[4 + target] + minLogProb);
                sumNll += nll; sumNll2 += nll * nll; sumNllBase += nllBase; sumNllBase2 += nllBase * nllBase;
                double kld = 0;
                var baseTop = 0;
                var baseMax = float.NegativeInfinity;
                for (var i = 0; i < vocab; i++)
                {
                    var lb = scale * row[4 + i] + minLogProb;
                    if (lb > baseMax) { baseMax = lb; baseTop = i; }
                    if (lb > -16f) kld += MathF.Exp(lb) * (lb - l[i] + max + logSumExp);
                }
                sumKld += kld; sumKld2 += kld * kld;
                if (top == baseTop) same++;
                var dp = MathF.Exp(-nll) - MathF.Exp(-nllBase);
                sumDp += dp; sumDp2 += dp * dp; sumDp4 += (double)dp * dp * dp * dp;
                klds.Add((float)kld);
                dps.Add(dp);
                count++;
            }
        }
        klds.Sort();
        dps.Sort();
        double Mean(double s) => s / count;
        double Uncertainty(double s, double s2) => Math.Sqrt((s2 / count - Mean(s) * Mean(s)) / (count - 1));
        double Percentile(List<float> v, double f) { var p = f * (v.Count - 1); var i = (int)p; p -= i; return (1 - p) * v[i] + p * v[Math.Min(i + 1, v.Count - 1)]; }
        double Median(List<float> v) => v.Count % 2 == 0 ? 0.5 * (v[v.Count / 2] + v[v.Count / 2 - 1]) : v[v.Count / 2];
        var sameTop = (double)same / count;
        return new KlRun(Math.Exp(Mean(sumNll)), Math.Exp(Mean(sumNllBase)), Mean(sumKld), Uncertainty(sumKld, sumKld2), klds[^1], Median(klds),
            Percentile(klds, 0.99), Percentile(klds, 0.90), Percentile(klds, 0.01), Mean(sumDp), Math.Sqrt(Mean(sumDp2)), sameTop,
            Math.Sqrt(sameTop * (1 - sameTop) / (count - 1)), Math.Exp(Mean(sumNll) - Mean(sumNllBase)), dps[^1], Median(dps),
            Percentile(dps, 0.99), Percentile(dps, 0.01), count);
    }
}
