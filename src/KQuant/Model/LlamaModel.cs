using KQuant.Gguf;
using KQuant.Quants;

namespace KQuant.Model;

/// <summary>The weights of one transformer block. Optional tensors are null when the file has none.</summary>
internal sealed class LlamaLayer
{
    public required float[] AttentionNorm { get; init; }
    /// <summary>Separate Q, K and V projections, or null when the file fuses them into <see cref="Qkv"/>.</summary>
    public WeightMatrix? Query { get; init; }
    public WeightMatrix? Key { get; init; }
    public WeightMatrix? Value { get; init; }
    public WeightMatrix? Qkv { get; init; }
    /// <summary>Bias of the Q, K and V outputs concatenated (qwen2 has them), or null.</summary>
    public float[]? QkvBias { get; init; }
    public required WeightMatrix AttentionOutput { get; init; }
    public float[]? AttentionOutputBias { get; init; }
    public required float[] FeedForwardNorm { get; init; }
    public WeightMatrix? Gate { get; init; }
    public WeightMatrix? Up { get; init; }
    public WeightMatrix? Down { get; init; }
    public float[]? GateBias { get; init; }
    public float[]? UpBias { get; init; }
    public float[]? DownBias { get; init; }
    /// <summary>Mixture of experts: the router and the per-expert slices of the 3-D expert tensors.</summary>
    public WeightMatrix? Router { get; init; }
    public WeightMatrix[]? GateExperts { get; init; }
    public WeightMatrix[]? UpExperts { get; init; }
    public WeightMatrix[]? DownExperts { get; init; }
}

/// <summary>A llama-family model (llama incl. mistral-style GQA, qwen2; dense or llama mixture-of-experts) ready to run
/// from a memory-mapped GGUF file: weights stay in their stored type in the mapping, only norms and biases are read
/// into memory. The <see cref="GgufFile"/> must stay open while the model is used.</summary>
public sealed class LlamaModel
{
    private LlamaModel(GgufFile file, LlamaConfig config, int vocabularySize)
    {
        File = file;
        Config = config;
        VocabularySize = vocabularySize;
    }

    public GgufFile File { get; }

    public LlamaConfig Config { get; }

    public int VocabularySize { get; }

    internal GgufTensorInfo TokenEmbedding { get; private init; } = null!;
    internal float[] OutputNorm { get; private init; } = null!;
    internal WeightMatrix Output { get; private init; } = null!;
    internal float[]? OutputBias { get; private init; }
    internal float[]? RopeFrequencyFactors { get; private init; }
    internal LlamaLayer[] Layers { get; private init; } = null!;

    /// <summary>Reads the configuration and checks every tensor's presence and shape. Throws
    /// <see cref="ModelNotSupportedException"/> for an architecture, weight type or tensor the forward pass does not
    /// implement (the message names it and what is supported) and <see cref="InvalidDataException"/> for a model that
    /// is inconsistent (a missing tensor, a wrong shape).</summary>
    public static LlamaModel Load(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        var config = LlamaConfig.Read(file);
        var reader = new TensorReader(file);
        var e = config.EmbeddingLength;
        var embedding = reader.Require("token_embd.weight");
        if (embedding.Dimensions != 2 || embedding.Shape[0] != e)
            throw new InvalidDataException($"token_embd.weight has shape [{string.Join(", ", embedding.Shape)}]; expected [{e}, vocabulary]");
        var vocabulary = (int)embedding.Shape[1];
        if (!RowCodecs.TryGet(embedding.Type, out _))
            throw new ModelNotSupportedException($"token_embd.weight is {embedding.Traits.Name}, which KQuant cannot dequantize");

        var outputTensor = reader.Optional("output.weight") ?? embedding; // tied output: the embedding matrix
        var model = new LlamaModel(file, config, vocabulary)
        {
            TokenEmbedding = embedding,
            OutputNorm = reader.Vector("output_norm.weight", e),
            Output = reader.Matrix(outputTensor, e, vocabulary),
            OutputBias = config.Architecture == "qwen2" ? reader.OptionalVector("output.bias", vocabulary) : null,
            RopeFrequencyFactors = config.Architecture == "llama" ? reader.OptionalVector("rope_freqs.weight", config.Rope.Dimensions / 2) : null,
            Layers = Enumerable.Range(0, config.LayerCount).Select(i => ReadLayer(reader, config, i)).ToArray(),
        };
        reader.RefuseUnused();
        return model;
    }

    /// <summary>A context of <paramref name="contextSize"/> positions (its KV cache) for evaluating token batches.</summary>
    public InferenceSession CreateSession(int contextSize, InferenceOptions? options = null) =>
        new(this, contextSize, options ?? new InferenceOptions());

    private static LlamaLayer ReadLayer(TensorReader reader, LlamaConfig c, int layer)
    {
        string Name(string tensor) => $"blk.{layer}.{tensor}";
        var e = c.EmbeddingLength;
        var qkvLength = c.QueryLength + 2 * c.KvLength;
        var fused = reader.Optional(Name("attn_qkv.weight"));
        var qkvBias = reader.OptionalVector(Name("attn_qkv.bias"), qkvLength);
        float[]? separateBias = null;
        if (qkvBias is null)
        {
            var q = reader.OptionalVector(Name("attn_q.bias"), c.QueryLength);
            var k = reader.OptionalVector(Name("attn_k.bias"), c.KvLength);
            var v = reader.OptionalVector(Name("attn_v.bias"), c.KvLength);
            if ((q is null) != (k is null) || (k is null) != (v is null))
                throw new ModelNotSupportedException($"layer {layer} has biases on some of Q, K, V but not all, which KQuant does not run");
            if (q is not null) separateBias = [.. q, .. k!, .. v!];
        }
        var experts = c.ExpertCount;
        return new LlamaLayer
        {
            AttentionNorm = reader.Vector(Name("attn_norm.weight"), e),
            Qkv = fused is null ? null : reader.Matrix(fused, e, qkvLength),
            Query = fused is null ? reader.Matrix(Name("attn_q.weight"), e, c.QueryLength) : null,
            Key = fused is null ? reader.Matrix(Name("attn_k.weight"), e, c.KvLength) : null,
            Value = fused is null ? reader.Matrix(Name("attn_v.weight"), e, c.KvLength) : null,
            QkvBias = qkvBias ?? separateBias,
            AttentionOutput = reader.Matrix(Name("attn_output.weight"), c.QueryLength, e),
            AttentionOutputBias = reader.OptionalVector(Name("attn_output.bias"), e),
            FeedForwardNorm = reader.Vector(Name("ffn_norm.weight"), e),
            Gate = experts == 0 ? reader.Matrix(Name("ffn_gate.weight"), e, c.FeedForwardLength) : null,
            Up = experts == 0 ? reader.Matrix(Name("ffn_up.weight"), e, c.FeedForwardLength) : null,
            Down = experts == 0 ? reader.Matrix(Name("ffn_down.weight"), c.FeedForwardLength, e) : null,
            GateBias = experts == 0 ? reader.OptionalVector(Name("ffn_gate.bias"), c.FeedForwardLength) : null,
            UpBias = experts == 0 ? reader.OptionalVector(Name("ffn_up.bias"), c.FeedForwardLength) : null,
            DownBias = experts == 0 ? reader.OptionalVector(Name("ffn_down.bias"), e) : null,
            Router = experts > 0 ? reader.Matrix(Name("ffn_gate_inp.weight"), e, experts) : null,
            GateExperts = experts > 0 ? reader.Experts(Name("ffn_gate_exps.weight"), e, c.FeedForwardLength, experts) : null,
            UpExperts = experts > 0 ? reader.Experts(Name("ffn_up_exps.weight"), e, c.FeedForwardLength, experts) : null,
            DownExperts = experts > 0 ? reader.Experts(Name("ffn_down_exps.weight"), c.FeedForwardLength, e, experts) : null,
        };
    }

    /// <summary>Looks tensors up by name, checks their shapes and remembers which were used, so that a tensor the
    /// forward pass would silently ignore (a feature it lacks) is refused rather than giving wrong results.</summary>
    private sealed class TensorReader(GgufFile file)
    {
        private readonly HashSet<string> _used = new(StringComparer.Ordinal);

        public GgufTensorInfo Require(string name) =>
            Optional(name) ?? throw new InvalidDataException($"tensor '{name}' is missing from {file.Path}");

        public GgufTensorInfo? Optional(string name)
        {
            var tensor = file.FindTensor(name);
            if (tensor is not null) _used.Add(name);
            return tensor;
        }

        public WeightMatrix Matrix(string name, int columns, int rows) => Matrix(Require(name), columns, rows);

        public WeightMatrix Matrix(GgufTensorInfo tensor, int columns, int rows)
        {
            CheckShape(tensor, [columns, rows]);
            return WeightMatrix.FromTensor(file, tensor, repackable: tensor.Name != "token_embd.weight");
        }

        public WeightMatrix[] Experts(string name, int columns, int rows, int experts)
        {
            var tensor = Require(name);
            CheckShape(tensor, [columns, rows, experts]);
            var all = WeightMatrix.FromTensor(file, tensor, repackable: false);
            return Enumerable.Range(0, experts).Select(x => all.ExpertSlice(x, experts)).ToArray();
        }

        public float[] Vector(string name, int length) => ReadVector(Require(name), length);

        public float[]? OptionalVector(string name, int length) => Optional(name) is { } tensor ? ReadVector(tensor, length) : null;

        public void RefuseUnused()
        {
            var unused = file.Tensors.Where(t => !_used.Contains(t.Name)).Select(t => t.Name).ToList();
            if (unused.Count > 0)
            {
                throw new ModelNotSupportedException(
                    $"the model has tensors the {file.GetArchitecture()} forward pass does not use ({string.Join(", ", unused.Take(5))}{(unused.Count > 5 ? ", ..." : "")}); it needs a feature KQuant does not implement");
            }
        }

        private float[] ReadVector(GgufTensorInfo tensor, int length)
        {
            CheckShape(tensor, [length]);
            if (!RowCodecs.TryGet(tensor.Type, out var codec))
                throw new ModelNotSupportedException($"tensor '{tensor.Name}' is {tensor.Traits.Name}, which KQuant cannot read");
            var values = new float[length];
            codec.Dequantize(file.GetTensorBytes(tensor, 0, (int)tensor.ByteSize), values);
            return values;
        }

        private static void CheckShape(GgufTensorInfo tensor, long[] expected)
        {
            var shape = tensor.Shape;
            if (!shape.AsSpan().SequenceEqual(expected))
                throw new InvalidDataException($"tensor '{tensor.Name}' has shape [{string.Join(", ", shape)}]; expected [{string.Join(", ", expected)}]");
        }
    }
}
