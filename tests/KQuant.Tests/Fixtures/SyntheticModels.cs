using System.Runtime.InteropServices;
using KQuant.Gguf;
using KQuant.Tests.Quants;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Fixtures;

/// <summary>The shape of a synthetic llama model. <paramref name="Architecture"/> "qwen2" writes qwen2 keys; with
/// <paramref name="QkvBias"/> the Q, K and V projections get biases (as qwen2 has); <paramref name="RopeScaling"/>
/// ("linear", "yarn") and <paramref name="RopeFactor"/> set rope.scaling.*.</summary>
public sealed record SyntheticLlama(string Name, int Embedding, int FeedForward, int Layers, int Heads, int KvHeads,
    bool Untied = true, int Experts = 0, bool F16 = true, int Seed = 1, string Architecture = "llama", bool QkvBias = false,
    string? RopeScaling = null, float RopeFactor = 1);

/// <summary>Writes llama-architecture GGUF files with random weights, in any shape, so the recipes and codecs can be
/// compared with llama.cpp on models with GQA or not, tied or untied output, fallback-forcing rows and experts. The
/// tokenizer comes from the bundled sample model, so llama.cpp loads the result as a real model.</summary>
public static class SyntheticModels
{
    private static readonly Lock Gate = new();

    /// <summary>Creates (once per process) and returns the path of the model.</summary>
    public static string Get(SyntheticLlama spec)
    {
        var dir = Path.Combine(Path.GetTempPath(), "kquant-tests", "synthetic");
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, $"{spec.Name}-{Math.Abs(spec.GetHashCode()):x}.gguf");
        lock (Gate)
        {
            if (!File.Exists(path)) Write(spec, path);
        }
        return path;
    }

    private static void Write(SyntheticLlama s, string path)
    {
        using var vocab = GgufFile.Open(Path.Combine(TestPaths.Samples, "debdocs-tiny-F16.gguf"));
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

        var tensors = new List<(string Name, long[] Shape, GgmlType Type)>
        {
            ("token_embd.weight", [s.Embedding, vocabSize], weightType),
            ("output_norm.weight", [s.Embedding], GgmlType.F32),
        };
        if (s.Untied) tensors.Add(("output.weight", [s.Embedding, vocabSize], weightType));
        for (var l = 0; l < s.Layers; l++)
        {
            var b = $"blk.{l}.";
            tensors.Add((b + "attn_norm.weight", [s.Embedding], GgmlType.F32));
            tensors.Add((b + "attn_q.weight", [s.Embedding, s.Embedding], weightType));
            tensors.Add((b + "attn_k.weight", [s.Embedding, kv], weightType));
            tensors.Add((b + "attn_v.weight", [s.Embedding, kv], weightType));
            if (s.QkvBias)
            {
                tensors.Add((b + "attn_q.bias", [s.Embedding], GgmlType.F32));
                tensors.Add((b + "attn_k.bias", [kv], GgmlType.F32));
                tensors.Add((b + "attn_v.bias", [kv], GgmlType.F32));
            }
            tensors.Add((b + "attn_output.weight", [s.Embedding, s.Embedding], weightType));
            tensors.Add((b + "ffn_norm.weight", [s.Embedding], GgmlType.F32));
            if (s.Experts > 0)
            {
                tensors.Add((b + "ffn_gate_inp.weight", [s.Embedding, s.Experts], GgmlType.F32));
                tensors.Add((b + "ffn_gate_exps.weight", [s.Embedding, s.FeedForward, s.Experts], weightType));
                tensors.Add((b + "ffn_down_exps.weight", [s.FeedForward, s.Embedding, s.Experts], weightType));
                tensors.Add((b + "ffn_up_exps.weight", [s.Embedding, s.FeedForward, s.Experts], weightType));
            }
            else
            {
                tensors.Add((b + "ffn_gate.weight", [s.Embedding, s.FeedForward], weightType));
                tensors.Add((b + "ffn_down.weight", [s.FeedForward, s.Embedding], weightType));
                tensors.Add((b + "ffn_up.weight", [s.Embedding, s.FeedForward], weightType));
            }
        }

        var infos = tensors.Select(t => new GgufTensorInfo(t.Name, t.Type, t.Shape)).ToList();
        using var writer = new GgufWriter(path, metadata, infos, overwrite: true);
        var rng = new Random(s.Seed);
        foreach (var t in infos)
        {
            var values = new float[t.ElementCount];
            var norm = t.Dimensions == 1;
            for (var i = 0; i < values.Length; i++) values[i] = norm ? 1f + 0.1f * (float)TestRows.Gaussian(rng) : 0.02f * (float)TestRows.Gaussian(rng);
            if (t.Type == GgmlType.F32)
            {
                writer.WriteTensorData(MemoryMarshal.AsBytes(values.AsSpan()));
            }
            else
            {
                var halves = values.Select(v => (Half)v).ToArray();
                writer.WriteTensorData(MemoryMarshal.AsBytes(halves.AsSpan()));
            }
        }
        writer.Commit();
    }

    /// <summary>A synthetic importance matrix for the model's weight matrices (as llama-imatrix would record them: every
    /// 2-D weight except token_embd, per expert for 3-D ones), written in GGUF or legacy format. Returns the path and the
    /// per-tensor values llama-quantize would derive (sums / count), computed here independently of KQuant's loader.</summary>
    public static (string Path, Dictionary<string, float[]> Weights) Imatrix(string modelPath, bool legacy, int seed = 7)
    {
        using var model = GgufFile.Open(modelPath);
        var rng = new Random(seed);
        var entries = new List<(string Name, float[] Sums, float[] Counts)>();
        foreach (var t in model.Tensors.Where(t => t.Dimensions >= 2 && t.Name != "token_embd.weight" && !t.Name.Contains("ffn_gate_inp")))
        {
            var experts = t.Dimensions > 2 ? (int)t.Shape[2] : 1;
            var sums = new float[t.RowLength * experts];
            for (var i = 0; i < sums.Length; i++) sums[i] = (float)Math.Exp(1.5 * TestRows.Gaussian(rng)) * 100f;
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

        var path = Path.Combine(TestPaths.NewTempDir(), legacy ? "imatrix.dat" : "imatrix.gguf");
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
            f.Write(10); // chunk count
            var dataset = System.Text.Encoding.UTF8.GetBytes("synthetic.txt");
            f.Write(dataset.Length);
            f.Write(dataset);
        }
        else
        {
            var metadata = new GgufMetadata();
            metadata.Add("general.type", GgufValue.FromString("imatrix"));
            metadata.Add("imatrix.datasets", GgufValue.FromStrings(["synthetic.txt"]));
            metadata.Add("imatrix.chunk_count", GgufValue.FromUInt32(10));
            metadata.Add("imatrix.chunk_size", GgufValue.FromUInt32(512));
            var infos = new List<GgufTensorInfo>();
            foreach (var (name, sums, counts) in entries)
            {
                infos.Add(new GgufTensorInfo(name + ".in_sum2", GgmlType.F32, counts.Length > 1 ? [sums.Length / counts.Length, counts.Length] : [sums.Length, 1]));
                infos.Add(new GgufTensorInfo(name + ".counts", GgmlType.F32, [1, counts.Length]));
            }
            using var writer = new GgufWriter(path, metadata, infos);
            foreach (var (_, sums, counts) in entries)
            {
                writer.WriteTensorData(MemoryMarshal.AsBytes(sums.AsSpan()));
                writer.WriteTensorData(MemoryMarshal.AsBytes(counts.AsSpan()));
            }
            writer.Commit();
        }
        return (path, weights);
    }
}
