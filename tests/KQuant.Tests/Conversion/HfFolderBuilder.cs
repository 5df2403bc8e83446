using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using KQuant.Conversion;
using KQuant.Quants.Float;

namespace KQuant.Tests.Conversion;

/// <summary>Writes small Hugging Face model folders for tests: config.json, safetensors (one file or shards with an
/// index), and a SentencePiece tokenizer.model.</summary>
public static class HfFolderBuilder
{
    public sealed record Tensor(string Name, SafetensorsDtype Dtype, long[] Shape, float[] Values);

    /// <summary>A tiny Llama-architecture checkpoint with random weights: <paramref name="dim"/> wide, GQA, untied output.</summary>
    public static List<Tensor> LlamaTensors(int layers, int dim, int heads, int kvHeads, int ffn, int vocab, SafetensorsDtype dtype, int seed, bool biases = false)
    {
        var rng = new Random(seed);
        var headDim = dim / heads;
        Tensor T(string name, params long[] shape)
        {
            var values = new float[shape.Aggregate(1L, (a, b) => a * b)];
            for (var i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() * 2 - 1) * 0.1f;
            return new Tensor(name, dtype, shape, values);
        }
        var tensors = new List<Tensor> { T("model.embed_tokens.weight", vocab, dim), T("model.norm.weight", dim), T("lm_head.weight", vocab, dim) };
        for (var l = 0; l < layers; l++)
        {
            var p = $"model.layers.{l}.";
            tensors.Add(T(p + "input_layernorm.weight", dim));
            tensors.Add(T(p + "self_attn.q_proj.weight", heads * headDim, dim));
            tensors.Add(T(p + "self_attn.k_proj.weight", kvHeads * headDim, dim));
            tensors.Add(T(p + "self_attn.v_proj.weight", kvHeads * headDim, dim));
            if (biases)
            {
                tensors.Add(T(p + "self_attn.q_proj.bias", heads * headDim));
                tensors.Add(T(p + "self_attn.k_proj.bias", kvHeads * headDim));
                tensors.Add(T(p + "self_attn.v_proj.bias", kvHeads * headDim));
            }
            tensors.Add(T(p + "self_attn.o_proj.weight", dim, heads * headDim));
            tensors.Add(T(p + "post_attention_layernorm.weight", dim));
            tensors.Add(T(p + "mlp.gate_proj.weight", ffn, dim));
            tensors.Add(T(p + "mlp.up_proj.weight", ffn, dim));
            tensors.Add(T(p + "mlp.down_proj.weight", dim, ffn));
        }
        return tensors;
    }

    public static string Config(string architecture, int layers, int dim, int heads, int kvHeads, int ffn, int vocab, string extra = "") =>
        $$"""
        {"architectures": ["{{architecture}}"], "hidden_size": {{dim}}, "intermediate_size": {{ffn}}, "num_hidden_layers": {{layers}},
         "num_attention_heads": {{heads}}, "num_key_value_heads": {{kvHeads}}, "vocab_size": {{vocab}}, "max_position_embeddings": 256,
         "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "bos_token_id": 1, "eos_token_id": 2{{extra}}}
        """;

    /// <summary>Writes the folder; with <paramref name="shards"/> &gt; 1 the tensors are spread over
    /// model-0000i-of-0000n.safetensors files with an index.</summary>
    public static string Write(string folder, string config, IReadOnlyList<Tensor> tensors, int shards = 1, byte[]? tokenizerModel = null)
    {
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "config.json"), config);
        if (tokenizerModel is not null) File.WriteAllBytes(Path.Combine(folder, "tokenizer.model"), tokenizerModel);
        if (shards == 1)
        {
            File.WriteAllBytes(Path.Combine(folder, "model.safetensors"), Safetensors(tensors));
            return folder;
        }
        var map = new Dictionary<string, string>();
        for (var s = 0; s < shards; s++)
        {
            var name = $"model-{s + 1:00000}-of-{shards:00000}.safetensors";
            var part = tensors.Where((_, i) => i % shards == s).ToList();
            File.WriteAllBytes(Path.Combine(folder, name), Safetensors(part));
            foreach (var t in part) map[t.Name] = name;
        }
        File.WriteAllText(Path.Combine(folder, SafetensorsCheckpoint.IndexFileName), JsonSerializer.Serialize(new { metadata = new { total_size = 0 }, weight_map = map }));
        return folder;
    }

    /// <summary>A safetensors image: header (padded to 8 bytes, as the reference writer does) and data in tensor order.</summary>
    public static byte[] Safetensors(IReadOnlyList<Tensor> tensors, string? headerOverride = null)
    {
        var data = new MemoryStream();
        var header = new Dictionary<string, object> { ["__metadata__"] = new Dictionary<string, string> { ["format"] = "pt" } };
        foreach (var t in tensors)
        {
            var begin = data.Length;
            data.Write(Encode(t.Dtype, t.Values));
            header[t.Name] = new { dtype = t.Dtype.Name(), shape = t.Shape, data_offsets = new[] { begin, data.Length } };
        }
        var json = Encoding.UTF8.GetBytes(headerOverride ?? JsonSerializer.Serialize(header));
        var padded = (json.Length + 7) / 8 * 8;
        var image = new byte[8 + padded + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(image, (ulong)padded);
        image.AsSpan(8, padded).Fill((byte)' ');
        json.CopyTo(image, 8);
        data.ToArray().CopyTo(image, 8 + padded);
        return image;
    }

    public static byte[] Encode(SafetensorsDtype dtype, float[] values)
    {
        var size = dtype.ElementSize();
        var bytes = new byte[values.Length * size];
        for (var i = 0; i < values.Length; i++)
        {
            var slot = bytes.AsSpan(i * size);
            switch (dtype)
            {
                case SafetensorsDtype.F32: BinaryPrimitives.WriteSingleLittleEndian(slot, values[i]); break;
                case SafetensorsDtype.F16: BinaryPrimitives.WriteHalfLittleEndian(slot, (Half)values[i]); break;
                case SafetensorsDtype.BF16: BinaryPrimitives.WriteUInt16LittleEndian(slot, Bf16.FromFloat(values[i])); break;
                default: throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "tests write float tensors only");
            }
        }
        return bytes;
    }

    /// <summary>A serialized sentencepiece ModelProto: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, the 256 byte pieces, then
    /// normal pieces up to <paramref name="vocab"/> with decreasing scores (a BPE model's layout), plus a normalizer
    /// spec the parser has to skip.</summary>
    public static byte[] SentencePieceModel(int vocab)
    {
        var pieces = new List<(string Text, float Score, int Type)> { ("<unk>", 0, 2), ("<s>", 0, 3), ("</s>", 0, 3) };
        for (var b = 0; b < 256; b++) pieces.Add(($"<0x{b:X2}>", 0, 6));
        for (var i = 0; pieces.Count < vocab; i++) pieces.Add(("\u2581" + Word(i), -i, 1));
        var model = new MemoryStream();
        foreach (var (text, score, type) in pieces)
        {
            var piece = new MemoryStream();
            Field(piece, 1, Encoding.UTF8.GetBytes(text));
            piece.WriteByte(2 << 3 | 5);
            piece.Write(BitConverter.GetBytes(score));
            if (type != 1)
            {
                piece.WriteByte(3 << 3);
                piece.WriteByte((byte)type);
            }
            Field(model, 1, piece.ToArray());
        }
        Field(model, 3, [1 << 3 | 2, 4, (byte)'n', (byte)'m', (byte)'f', (byte)'c', 3 << 3, 1]); // normalizer: name "nmfc", add_dummy_prefix
        return model.ToArray();
    }

    private static string Word(int i)
    {
        var sb = new StringBuilder();
        do
        {
            sb.Append((char)('a' + i % 26));
            i /= 26;
        } while (i > 0);
        return sb.ToString();
    }

    private static void Field(Stream s, int field, byte[] payload)
    {
        WriteVarint(s, (ulong)(field << 3 | 2));
        WriteVarint(s, (ulong)payload.Length);
        s.Write(payload);
    }

    private static void WriteVarint(Stream s, ulong v)
    {
        while (v >= 0x80)
        {
            s.WriteByte((byte)(v | 0x80));
            v >>= 7;
        }
        s.WriteByte((byte)v);
    }
}
