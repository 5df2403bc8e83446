using System.Runtime.InteropServices;
using KQuant.Gguf;

namespace KQuant.Testing;

/// <summary>The shape of a synthetic llama model. <paramref name="Architecture"/> "qwen2" writes qwen2 keys; with
/// <paramref name="QkvBias"/> the Q, K and V projections get biases (as qwen2 has); <paramref name="RopeScaling"/>
/// ("linear", "yarn") and <paramref name="RopeFactor"/> set rope.scaling.*.</summary>
public sealed record SyntheticLlama(string Name, int Embedding, int FeedForward, int Layers, int Heads, int KvHeads,
    bool Untied = true, int Experts = 0, bool F16 = true, int Seed = 1, string Architecture = "llama", bool QkvBias = false,
    string? RopeScaling = null, float RopeFactor = 1)
{
    /// <summary>A file name that spells out the whole spec (string hash codes are randomized per process, so they
    /// cannot name a cache).</summary>
    public string FileName =>
        $"{Name}-{Architecture}-{Embedding}x{FeedForward}x{Layers}-h{Heads}-kv{KvHeads}-u{Untied}-e{Experts}-f16{F16}-s{Seed}" +
        $"-b{QkvBias}-r{RopeScaling ?? "none"}{RopeFactor.ToString(System.Globalization.CultureInfo.InvariantCulture)}-v3.gguf";
}

/// <summary>Writes llama-architecture GGUF files with random weights, in any shape, and matching importance matrices:
/// shared by the tests (recipes and codecs against llama.cpp on models with GQA or not, tied or untied output,
/// fallback-forcing rows, experts) and the benchmarks (a model of any size). The tokenizer metadata is copied from a
/// real model so that llama.cpp loads the result as a real model.</summary>
public static class SyntheticLlamaWriter
{
    public static void Write(SyntheticLlama s, string vocabSourcePath, string path)
    {
        using var vocab = GgufFile.Open(vocabSourcePath);
        var vocabSize = vocab.GetArray("tokenizer.ggml.tokens")!.Count;
        var headDim = s.Embedding / s.Heads;
        var kv = headDim * s.KvHeads;
        var weightType = s.F16 ? GgmlType.F16 : GgmlType.F32;

        var metadata = new GgufMetadata();
        var a = s.Architecture;
        metadata.Add("general.architecture", GgufValue.FromString(a));
        metadata.Add("general.name", GgufValue.FromString(s.Name));
        metadata.Add("general.file_type", GgufValue.FromUInt32(s.F16 ? 1u : 0u));
        metadata.Add($"{a}.context_length", GgufValue.FromUInt32(256));
        metadata.Add($"{a}.embedding_length", GgufValue.FromUInt32((uint)s.Embedding));
        metadata.Add($"{a}.block_count", GgufValue.FromUInt32((uint)s.Layers));
        metadata.Add($"{a}.feed_forward_length", GgufValue.FromUInt32((uint)s.FeedForward));
        metadata.Add($"{a}.attention.head_count", GgufValue.FromUInt32((uint)s.Heads));
        metadata.Add($"{a}.attention.head_count_kv", GgufValue.FromUInt32((uint)s.KvHeads));
        metadata.Add($"{a}.attention.layer_norm_rms_epsilon", GgufValue.FromFloat32(1e-5f));
        metadata.Add($"{a}.rope.dimension_count", GgufValue.FromUInt32((uint)headDim));
        metadata.Add($"{a}.rope.freq_base", GgufValue.FromFloat32(10000));
        metadata.Add($"{a}.vocab_size", GgufValue.FromUInt32((uint)vocabSize));
        if (s.Experts > 0)
        {
            metadata.Add($"{a}.expert_count", GgufValue.FromUInt32((uint)s.Experts));
            metadata.Add($"{a}.expert_used_count", GgufValue.FromUInt32(2));
        }
        if (s.RopeScaling is { } scaling)
        {
            metadata.Add($"{a}.rope.scaling.type", GgufValue.FromString(scaling));
            metadata.Add($"{a}.rope.scaling.factor", GgufValue.FromFloat32(s.RopeFactor));
            metadata.Add($"{a}.rope.scaling.original_context_length", GgufValue.FromUInt32(64));
        }
        foreach (var e in vocab.Metadata.Where(e => e.Key.StartsWith("tokenizer.", StringComparison.Ordinal))) metadata.Add(e.Key, e.Value);

        var tensors = new List<GgufTensorInfo>
        {
            new("token_embd.weight", weightType, [s.Embedding, vocabSize]),
            new("output_norm.weight", GgmlType.F32, [s.Embedding]),
        };
        if (s.Untied) tensors.Add(new("output.weight", weightType, [s.Embedding, vocabSize]));
        for (var l = 0; l < s.Layers; l++)
        {
            var b = $"blk.{l}.";
            tensors.Add(new(b + "attn_norm.weight", GgmlType.F32, [s.Embedding]));
            tensors.Add(new(b + "attn_q.weight", weightType, [s.Embedding, s.Embedding]));
            tensors.Add(new(b + "attn_k.weight", weightType, [s.Embedding, kv]));
            tensors.Add(new(b + "attn_v.weight", weightType, [s.Embedding, kv]));
            if (s.QkvBias)
            {
                tensors.Add(new(b + "attn_q.bias", GgmlType.F32, [s.Embedding]));
                tensors.Add(new(b + "attn_k.bias", GgmlType.F32, [kv]));
                tensors.Add(new(b + "attn_v.bias", GgmlType.F32, [kv]));
            }
            tensors.Add(new(b + "attn_output.weight", weightType, [s.Embedding, s.Embedding]));
            tensors.Add(new(b + "ffn_norm.weight", GgmlType.F32, [s.Embedding]));
            if (s.Experts > 0)
            {
                tensors.Add(new(b + "ffn_gate_inp.weight", GgmlType.F32, [s.Embedding, s.Experts]));
                tensors.Add(new(b + "ffn_gate_exps.weight", weightType, [s.Embedding, s.FeedForward, s.Experts]));
                tensors.Add(new(b + "ffn_down_exps.weight", weightType, [s.FeedForward, s.Embedding, s.Experts]));
                tensors.Add(new(b + "ffn_up_exps.weight", weightType, [s.Embedding, s.FeedForward, s.Experts]));
            }
            else
            {
                tensors.Add(new(b + "ffn_gate.weight", weightType, [s.Embedding, s.FeedForward]));
                tensors.Add(new(b + "ffn_down.weight", weightType, [s.FeedForward, s.Embedding]));
                tensors.Add(new(b + "ffn_up.weight", weightType, [s.Embedding, s.FeedForward]));
            }
        }

        using var writer = new GgufWriter(path, metadata, tensors, overwrite: true);
        var rng = new Random(s.Seed);
        foreach (var t in tensors)
        {
            var values = new float[t.ElementCount];
            var norm = t.Dimensions == 1;
            for (var i = 0; i < values.Length; i++) values[i] = norm ? 1f + 0.1f * (float)Gaussian(rng) : 0.02f * (float)Gaussian(rng);
            if (t.Type == GgmlType.F32)
            {
                writer.WriteTensorData(MemoryMarshal.AsBytes(values.AsSpan()));
            }
            else
            {
                var halves = new Half[values.Length];
                for (var i = 0; i < values.Length; i++) halves[i] = (Half)values[i];
                writer.WriteTensorData(MemoryMarshal.AsBytes(halves.AsSpan()));
            }
        }
        writer.Commit();
    }

    /// <summary>A synthetic importance matrix for the model's weight matrices (as llama-imatrix records them: every 2-D
    /// weight but token_embd and the expert router, per expert for 3-D ones; the last expert of each saw no tokens),
    /// written in GGUF or legacy format. Returns the per-tensor values llama-quantize derives from it (sums / count, 1
    /// where a count is 0), computed here independently of KQuant's loader.</summary>
    public static Dictionary<string, float[]> WriteImatrix(string modelPath, string path, bool legacy, int seed = 7)
    {
        using var model = GgufFile.Open(modelPath);
        var rng = new Random(seed);
        var entries = new List<(string Name, float[] Sums, float[] Counts)>();
        foreach (var t in model.Tensors.Where(t => t.Dimensions >= 2 && t.Name != "token_embd.weight" && !t.Name.Contains("ffn_gate_inp")))
        {
            var experts = t.Dimensions > 2 ? (int)t.Shape[2] : 1;
            var sums = new float[t.RowLength * experts];
            for (var i = 0; i < sums.Length; i++) sums[i] = (float)Math.Exp(1.5 * Gaussian(rng)) * 100f;
            var counts = Enumerable.Range(0, experts).Select(e => experts > 1 && e == experts - 1 ? 0f : 512f * (1 + rng.Next(4))).ToArray();
            entries.Add((t.Name, sums, counts));
        }
        var weights = new Dictionary<string, float[]>();
        foreach (var (name, sums, counts) in entries)
        {
            var columns = sums.Length / counts.Length;
            var w = new float[sums.Length];
            for (var e = 0; e < counts.Length; e++)
                for (var i = 0; i < columns; i++)
                    w[e * columns + i] = legacy ? sums[e * columns + i] / counts[0] : counts[e] > 0 ? sums[e * columns + i] / counts[e] : 1;
            weights[name] = w;
        }

        if (legacy)
        {
            using var f = new BinaryWriter(File.Create(path));
            f.Write(entries.Count);
            foreach (var (name, sums, counts) in entries)
            {
                var bytes = System.Text.Encoding.UTF8.GetBytes(name);
                f.Write(bytes.Length);
                f.Write(bytes);
                f.Write((int)counts[0]);
                f.Write(sums.Length);
                foreach (var v in sums) f.Write(v);
            }
            f.Write(ImatrixChunks);
            var dataset = System.Text.Encoding.UTF8.GetBytes(ImatrixDataset);
            f.Write(dataset.Length);
            f.Write(dataset);
        }
        else
        {
            var metadata = new GgufMetadata();
            metadata.Add("general.type", GgufValue.FromString("imatrix"));
            metadata.Add("imatrix.datasets", GgufValue.FromStrings([ImatrixDataset]));
            metadata.Add("imatrix.chunk_count", GgufValue.FromUInt32(ImatrixChunks));
            metadata.Add("imatrix.chunk_size", GgufValue.FromUInt32(512));
            var infos = new List<GgufTensorInfo>();
            foreach (var (name, sums, counts) in entries)
            {
                infos.Add(new GgufTensorInfo(name + ".in_sum2", GgmlType.F32, [sums.Length / counts.Length, counts.Length]));
                infos.Add(new GgufTensorInfo(name + ".counts", GgmlType.F32, [1, counts.Length]));
            }
            using var writer = new GgufWriter(path, metadata, infos, overwrite: true);
            foreach (var (_, sums, counts) in entries)
            {
                writer.WriteTensorData(MemoryMarshal.AsBytes(sums.AsSpan()));
                writer.WriteTensorData(MemoryMarshal.AsBytes(counts.AsSpan()));
            }
            writer.Commit();
        }
        return weights;
    }

    public const string ImatrixDataset = "synthetic.txt";
    public const uint ImatrixChunks = 10;

    private static double Gaussian(Random rng)
    {
        var u1 = 1.0 - rng.NextDouble();
        var u2 = rng.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}
