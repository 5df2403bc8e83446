using System.Text.RegularExpressions;
using KQuant.Gguf;

namespace KQuant.Recipes;

/// <summary>A tensor as the planner sees it: name, shape (ggml order, Shape[0] = row length) and stored type.</summary>
public sealed record PlannerTensor(string Name, long[] Shape, GgmlType Type);

/// <summary>A user's override of the recipe for tensors whose name matches a regular expression (searched, not anchored).</summary>
public sealed record TensorTypeOverride(string Pattern, GgmlType Type)
{
    internal Regex Regex { get; } = new(Pattern, RegexOptions.ECMAScript | RegexOptions.CultureInvariant);
}

/// <summary>Everything besides the model that decides tensor types.</summary>
public sealed record RecipeOptions(LlamaFileType FileType)
{
    /// <summary>Every quantizable tensor gets the default type: no mixture, no per-layer bumps.</summary>
    public bool Pure { get; init; }
    public GgmlType? OutputTensorType { get; init; }
    public GgmlType? TokenEmbeddingType { get; init; }
    /// <summary>In order; the first matching pattern wins.</summary>
    public IReadOnlyList<TensorTypeOverride> TensorTypeOverrides { get; init; } = [];
    /// <summary>False keeps output.weight as stored (llama-quantize's --leave-output-tensor).</summary>
    public bool QuantizeOutputTensor { get; init; } = true;
    public bool HasImportanceMatrix { get; init; }
}

/// <summary>The type chosen for one tensor, and why it differs from the recipe's default where that is worth telling.</summary>
public sealed record TensorPlan(PlannerTensor Tensor, GgmlType TargetType, bool Quantizable, bool RequiresImportanceMatrix,
    TensorCategory Category, string? Note)
{
    /// <summary>The tensor's bytes change (it is quantized, dequantized or converted).</summary>
    public bool Converts => TargetType != Tensor.Type;
}

/// <summary>The plan for a whole model: tensors in the order llama.cpp writes them, and the warnings it would print.</summary>
public sealed record ModelPlan(IReadOnlyList<TensorPlan> Tensors, int FallbackCount, IReadOnlyList<string> Warnings)
{
    public bool RequiresImportanceMatrix => Tensors.Any(t => t.Quantizable && t.RequiresImportanceMatrix);
}

/// <summary>Chooses the type of every tensor for a recipe, exactly as llama.cpp v0.5.0's llama-quantize does
/// (llama_tensor_get_type and its helpers in src/llama-quant.cpp): which tensors are quantized at all, the output and
/// token-embedding rules, extra bits for attn_v and some ffn_down layers, the GQA / expert / 70B cases, and fallbacks
/// to a compatible type when a row length is not a multiple of the block size.</summary>
public sealed class TensorTypePlanner
{
    private readonly ModelHyperparameters _model;
    private readonly RecipeOptions _options;
    private readonly GgmlType _defaultType;
    private readonly List<string> _warnings = [];

    // Running state: the recipes depend on how many value-projection / FFN tensors came before this one.
    private int _attentionVCount;
    private int _attentionVIndex;
    private int _ffnDownIndex;
    private int _ffnGateIndex;
    private int _ffnUpIndex;
    private int _fallbacks;
    private bool _tiedEmbeddings;

    private TensorTypePlanner(ModelHyperparameters model, RecipeOptions options)
    {
        _model = model;
        _options = options;
        _defaultType = DefaultTypeOf(options.FileType);
    }

    /// <summary>Plans every tensor. The result is in llama.cpp's write order (see <see cref="LlamaTensorOrder"/>), which the
    /// per-layer rules depend on.</summary>
    public static ModelPlan Plan(ModelHyperparameters model, IEnumerable<PlannerTensor> tensors, RecipeOptions options)
    {
        var planner = new TensorTypePlanner(model, options);
        var ordered = tensors.OrderBy(t => t.Name, LlamaTensorOrder.Instance).ToList();
        planner._attentionVCount = ordered.Count(t => TensorCategories.Of(t.Name).IsAttentionValueLike());
        planner._tiedEmbeddings = !ordered.Any(t => t.Name == "output.weight");
        var plans = ordered.Select(planner.PlanOne).ToList();
        return new ModelPlan(plans, planner._fallbacks, planner._warnings);
    }

    /// <summary>The tensor type a file type's bulk weights get (llama_ftype_get_default_type).</summary>
    public static GgmlType DefaultTypeOf(LlamaFileType fileType) => fileType switch
    {
        LlamaFileType.AllF32 => GgmlType.F32,
        LlamaFileType.MostlyF16 => GgmlType.F16,
        LlamaFileType.MostlyBF16 => GgmlType.BF16,
        LlamaFileType.MostlyQ4_0 => GgmlType.Q4_0,
        LlamaFileType.MostlyQ4_1 => GgmlType.Q4_1,
        LlamaFileType.MostlyQ5_0 => GgmlType.Q5_0,
        LlamaFileType.MostlyQ5_1 => GgmlType.Q5_1,
        LlamaFileType.MostlyQ8_0 => GgmlType.Q8_0,
        LlamaFileType.MostlyQ1_0 => GgmlType.Q1_0,
        LlamaFileType.MostlyQ2_0 => GgmlType.Q2_0,
        LlamaFileType.MostlyMXFP4_MoE => GgmlType.MXFP4,
        LlamaFileType.MostlyQ2_K or LlamaFileType.MostlyQ2_K_S => GgmlType.Q2_K,
        LlamaFileType.MostlyQ3_K_S or LlamaFileType.MostlyQ3_K_M or LlamaFileType.MostlyQ3_K_L => GgmlType.Q3_K,
        LlamaFileType.MostlyQ4_K_S or LlamaFileType.MostlyQ4_K_M => GgmlType.Q4_K,
        LlamaFileType.MostlyQ5_K_S or LlamaFileType.MostlyQ5_K_M => GgmlType.Q5_K,
        LlamaFileType.MostlyQ6_K => GgmlType.Q6_K,
        LlamaFileType.MostlyTQ1_0 => GgmlType.TQ1_0,
        LlamaFileType.MostlyTQ2_0 => GgmlType.TQ2_0,
        LlamaFileType.MostlyIQ2_XXS => GgmlType.IQ2_XXS,
        LlamaFileType.MostlyIQ2_XS or LlamaFileType.MostlyIQ2_S => GgmlType.IQ2_XS,
        LlamaFileType.MostlyIQ2_M => GgmlType.IQ2_S,
        LlamaFileType.MostlyIQ3_XXS => GgmlType.IQ3_XXS,
        LlamaFileType.MostlyIQ3_XS or LlamaFileType.MostlyIQ3_S or LlamaFileType.MostlyIQ3_M => GgmlType.IQ3_S,
        LlamaFileType.MostlyIQ1_S => GgmlType.IQ1_S,
        LlamaFileType.MostlyIQ1_M => GgmlType.IQ1_M,
        LlamaFileType.MostlyIQ4_NL => GgmlType.IQ4_NL,
        LlamaFileType.MostlyIQ4_XS => GgmlType.IQ4_XS,
        _ => throw new ArgumentOutOfRangeException(nameof(fileType), fileType, "no default tensor type for this file type"),
    };

    // Tensors that are never quantized: vectors, non-weights, norms, routers, and small or position-like tables.
    private static readonly string[] NeverQuantizedFragments =
    [
        "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
        "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
        "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_v0.weight",
        "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight",
        "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_",
        ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
    ];

    /// <summary>Whether llama-quantize would quantize this tensor at all (tensor_allows_quantization).</summary>
    public static bool AllowsQuantization(PlannerTensor tensor, bool quantizeOutputTensor)
    {
        if (NDims(tensor.Shape) < 2) return false;
        var name = tensor.Name;
        if (!name.EndsWith("weight", StringComparison.Ordinal)) return false;
        if (!quantizeOutputTensor && name == "output.weight") return false;
        if (name is "position_embd.weight" or "token_types.weight") return false;
        foreach (var fragment in NeverQuantizedFragments)
        {
            if (name.Contains(fragment, StringComparison.Ordinal)) return false;
        }
        return true;
    }

    // ggml_n_dims: trailing dimensions of size 1 do not count.
    private static int NDims(long[] shape)
    {
        var n = shape.Length;
        while (n > 1 && shape[n - 1] == 1) n--;
        return n;
    }

    private TensorPlan PlanOne(PlannerTensor tensor)
    {
        var category = TensorCategories.Of(tensor.Name);
        var quantizable = AllowsQuantization(tensor, _options.QuantizeOutputTensor);
        string? note = null;
        var target = quantizable ? ChooseType(tensor, category, ref note) : tensor.Type;
        return new TensorPlan(tensor, target, quantizable, RequiresImportance(tensor.Name, target), category, note);
    }

    private bool RequiresImportance(string name, GgmlType target)
    {
        if (TensorCategories.IsTokenEmbedding(name) || name == "output.weight") return false;
        return target switch
        {
            GgmlType.IQ3_XXS or GgmlType.IQ2_XXS or GgmlType.IQ2_XS or GgmlType.IQ2_S or GgmlType.IQ1_M or GgmlType.IQ1_S => true,
            // K-quants do not need one, except the Q2_K tensors of a Q2_K_S file.
            GgmlType.Q2_K => _options.FileType == LlamaFileType.MostlyQ2_K_S,
            _ => false,
        };
    }

    private GgmlType ChooseType(PlannerTensor tensor, TensorCategory category, ref string? note)
    {
        if (_options.TokenEmbeddingType is { } embeddingType && category == TensorCategory.TokenEmbedding)
        {
            // per_layer_token_embd follows the embedding type unless a --tensor-type pattern names it explicitly.
            var named = tensor.Name == "per_layer_token_embd.weight" && _options.TensorTypeOverrides.Any(o => o.Regex.IsMatch(tensor.Name));
            if (!named) return embeddingType;
        }
        if (_options.OutputTensorType is { } outputType && category == TensorCategory.Output) return outputType;

        var type = _defaultType;
        if (!GgmlTypeTraits.Of(_defaultType).IsQuantized) return type;

        var manual = false;
        foreach (var o in _options.TensorTypeOverrides)
        {
            if (!o.Regex.IsMatch(tensor.Name)) continue;
            if (o.Type != type)
            {
                _warnings.Add($"{tensor.Name}: applying manual override: {Name(type)} -> {Name(o.Type)}");
                note = $"override /{o.Pattern}/";
                type = o.Type;
            }
            manual = true;
            break;
        }
        if (!manual && !_options.Pure) type = RecipeType(type, tensor, category);
        return Fallback(tensor, type, ref note);
    }

    // tensor_type_fallback: a type whose block does not divide the row length is replaced by a compatible one.
    private GgmlType Fallback(PlannerTensor tensor, GgmlType target, ref string? note)
    {
        var columns = tensor.Shape[0];
        var block = GgmlTypeTraits.Of(target).BlockSize;
        if (columns % block == 0) return target;
        _fallbacks++;
        var replacement = target switch
        {
            GgmlType.IQ1_S or GgmlType.IQ1_M or GgmlType.IQ2_XXS or GgmlType.IQ2_XS or GgmlType.IQ2_S or GgmlType.IQ3_XXS
                or GgmlType.IQ3_S or GgmlType.IQ4_XS => GgmlType.IQ4_NL,
            GgmlType.Q2_0 or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.TQ1_0 or GgmlType.TQ2_0 => GgmlType.Q4_0,
            GgmlType.Q4_K => GgmlType.Q5_0,
            GgmlType.Q5_K => GgmlType.Q5_1,
            GgmlType.Q6_K => GgmlType.Q8_0,
            _ when block <= 32 => target, // already a 32-weight block; only F16 can follow
            _ => throw new NotSupportedException($"{tensor.Name}: no fallback type is defined for {Name(target)}"),
        };
        var message = $"{tensor.Name}: {columns} columns not divisible by {block} (required for {Name(target)})";
        if (columns % GgmlTypeTraits.Of(replacement).BlockSize != 0)
        {
            message += " (must use F16 due to unusual shape)";
            replacement = GgmlType.F16;
        }
        _warnings.Add($"{message} -> falling back to {Name(replacement)}");
        note = $"fallback from {Name(target)}";
        return replacement;
    }

    private static string Name(GgmlType t) => GgmlTypeTraits.Of(t).Name;

    // llama.cpp's use_more_bits: the first and last eighth of the layers, and every third layer in between.
    private static bool UseMoreBits(int layer, int layers) =>
        layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;

    private bool IsOneOf(params LlamaFileType[] fileTypes) => fileTypes.Contains(_options.FileType);

    private bool IsVeryLowBitIQ => IsOneOf(LlamaFileType.MostlyIQ2_XXS, LlamaFileType.MostlyIQ2_XS, LlamaFileType.MostlyIQ1_S,
        LlamaFileType.MostlyIQ2_S, LlamaFileType.MostlyIQ2_M, LlamaFileType.MostlyIQ1_M);

    private bool IsIQ2SOrM => IsOneOf(LlamaFileType.MostlyIQ2_S, LlamaFileType.MostlyIQ2_M);

    /// <summary>The layer a per-layer rule applies to: the running count for dense models; for mixtures of experts the
    /// block number in the name, since expert tensors need not come one per layer in order.</summary>
    private (int Layer, int Layers) LayerOf(int runningIndex, string name)
    {
        var layers = _model.LayerCount;
        if (Math.Max(1, _model.ExpertCount) <= 1) return (runningIndex, layers);
        var layer = LlamaTensorOrder.BlockNumber(name)
            ?? throw new InvalidDataException($"cannot tell the layer of tensor {name}: expected a name starting with blk.N.");
        if (layer < 0 || layer >= layers)
            throw new InvalidDataException($"tensor {name} names layer {layer}, but the model has {layers} layers");
        return (layer, layers);
    }

    // llama_tensor_get_type_impl: the recipe proper.
    private GgmlType RecipeType(GgmlType type, PlannerTensor tensor, TensorCategory category)
    {
        var ft = _options.FileType;
        var gqa = _model.GroupedQueryFactor;
        var experts = _model.ExpertCount;

        if (category == TensorCategory.Output || (_tiedEmbeddings && category == TensorCategory.TokenEmbedding))
        {
            if (_options.OutputTensorType is { } outputType) return outputType;
            var block = GgmlTypeTraits.Of(type).BlockSize;
            if (ft == LlamaFileType.MostlyMXFP4_MoE) return GgmlType.Q8_0;
            if (_model.IsFalcon || tensor.Shape[0] % block != 0) return GgmlType.Q8_0;
            if (IsOneOf(LlamaFileType.MostlyIQ2_XXS, LlamaFileType.MostlyIQ2_XS, LlamaFileType.MostlyIQ3_XXS, LlamaFileType.MostlyIQ1_S,
                    LlamaFileType.MostlyIQ2_S, LlamaFileType.MostlyIQ2_M, LlamaFileType.MostlyIQ1_M)) return GgmlType.Q5_K;
            return type != GgmlType.Q8_0 ? GgmlType.Q6_K : type;
        }
        if (ft == LlamaFileType.MostlyMXFP4_MoE)
        {
            var isBailingExpert = category is TensorCategory.FfnUp or TensorCategory.FfnGate or TensorCategory.FfnDown;
            var isExpertTensor = tensor.Shape.Length > 2 && tensor.Shape[2] > 1;
            return isExpertTensor && (_model.Architecture != "bailingmoe3" || isBailingExpert) ? GgmlType.MXFP4 : GgmlType.Q8_0;
        }
        if (category == TensorCategory.TokenEmbedding)
        {
            if (_options.TokenEmbeddingType is { } embeddingType) return embeddingType;
            if (IsOneOf(LlamaFileType.MostlyIQ2_XXS, LlamaFileType.MostlyIQ2_XS, LlamaFileType.MostlyIQ1_S, LlamaFileType.MostlyIQ1_M)) return GgmlType.Q2_K;
            if (IsOneOf(LlamaFileType.MostlyIQ2_S, LlamaFileType.MostlyIQ2_M, LlamaFileType.MostlyIQ3_XXS)) return GgmlType.IQ3_S;
            if (IsOneOf(LlamaFileType.MostlyTQ1_0, LlamaFileType.MostlyTQ2_0, LlamaFileType.MostlyQ2_0)) return GgmlType.Q4_K;
            return type;
        }
        if (IsVeryLowBitIQ) return VeryLowBitIQType(type, category);
        if (category.IsAttentionValueLike()) return AttentionValueType(type, ft, gqa, experts);

        switch (category)
        {
            case TensorCategory.AttentionK:
                if (experts == 8) return GgmlType.Q8_0;
                if (ft == LlamaFileType.MostlyIQ3_XS) return GgmlType.IQ3_XXS;
                if (ft == LlamaFileType.MostlyIQ3_XXS) return GgmlType.IQ2_S;
                return type;
            case TensorCategory.AttentionQ:
                if (ft == LlamaFileType.MostlyIQ3_XS) return GgmlType.IQ3_XXS;
                if (ft == LlamaFileType.MostlyIQ3_XXS) return GgmlType.IQ2_S;
                return type;
            case TensorCategory.FfnDown:
            {
                var (layer, layers) = LayerOf(_ffnDownIndex, tensor.Name);
                _ffnDownIndex++;
                return FfnDownType(type, ft, layer, layers, experts);
            }
            case TensorCategory.AttentionOutput:
                return AttentionOutputType(type, ft, experts);
            case TensorCategory.AttentionQkv:
                if (IsOneOf(LlamaFileType.MostlyQ3_K_M, LlamaFileType.MostlyQ3_K_L, LlamaFileType.MostlyIQ3_M)) return GgmlType.Q4_K;
                if (ft == LlamaFileType.MostlyQ4_K_M) return GgmlType.Q5_K;
                if (ft == LlamaFileType.MostlyQ5_K_M) return GgmlType.Q6_K;
                return type;
            case TensorCategory.FfnGate:
            case TensorCategory.FfnUp:
            {
                ref var index = ref category == TensorCategory.FfnGate ? ref _ffnGateIndex : ref _ffnUpIndex;
                var (layer, layers) = LayerOf(index, tensor.Name);
                index++;
                var middle = layer >= layers / 8 && layer < 7 * layers / 8;
                return ft == LlamaFileType.MostlyIQ3_XS && middle ? GgmlType.IQ3_XXS : type;
            }
            default:
                return type;
        }
    }

    private GgmlType VeryLowBitIQType(GgmlType type, TensorCategory category)
    {
        var experts = _model.ExpertCount;
        if (category.IsAttentionValueLike())
        {
            _attentionVIndex++;
            if (_model.GroupedQueryFactor >= 4 || experts >= 4) return GgmlType.Q4_K;
            return IsIQ2SOrM ? GgmlType.IQ3_S : GgmlType.Q2_K;
        }
        if (experts == 8 && category == TensorCategory.AttentionK) return GgmlType.Q4_K;
        if (category == TensorCategory.FfnDown)
        {
            var firstEighth = _ffnDownIndex < _model.LayerCount / 8;
            _ffnDownIndex++;
            return firstEighth ? (IsIQ2SOrM ? GgmlType.IQ3_S : GgmlType.Q2_K) : type;
        }
        if (category == TensorCategory.AttentionOutput)
        {
            if (experts == 8) return GgmlType.Q5_K;
            if (IsOneOf(LlamaFileType.MostlyIQ1_S, LlamaFileType.MostlyIQ1_M)) return GgmlType.IQ2_XXS;
            if (IsIQ2SOrM) return GgmlType.IQ3_S;
        }
        return type;
    }

    private GgmlType AttentionValueType(GgmlType type, LlamaFileType ft, int gqa, int experts)
    {
        var index = _attentionVIndex++;
        type = ft switch
        {
            LlamaFileType.MostlyQ2_K => gqa >= 4 ? GgmlType.Q4_K : GgmlType.Q3_K,
            LlamaFileType.MostlyQ2_K_S when gqa >= 4 => GgmlType.Q4_K,
            LlamaFileType.MostlyIQ3_XXS => gqa >= 4 ? GgmlType.Q4_K : !_options.HasImportanceMatrix ? GgmlType.IQ3_S : GgmlType.IQ3_XXS,
            LlamaFileType.MostlyIQ3_XS or LlamaFileType.MostlyIQ3_S when gqa >= 4 => GgmlType.Q4_K,
            LlamaFileType.MostlyIQ3_M => GgmlType.Q4_K,
            LlamaFileType.MostlyQ3_K_M => index < 2 ? GgmlType.Q5_K : GgmlType.Q4_K,
            LlamaFileType.MostlyQ3_K_L => GgmlType.Q5_K,
            LlamaFileType.MostlyIQ4_NL or LlamaFileType.MostlyIQ4_XS when gqa >= 4 => GgmlType.Q5_K,
            LlamaFileType.MostlyQ4_K_M or LlamaFileType.MostlyQ5_K_M when UseMoreBits(index, _attentionVCount) => GgmlType.Q6_K,
            LlamaFileType.MostlyQ4_K_S when index < 4 => GgmlType.Q5_K,
            _ => type,
        };
        // In a 70B model eight query heads share each attn_v, so it is small: more bits cost little.
        if (_model.Is70B && type is GgmlType.Q3_K or GgmlType.Q4_K) type = GgmlType.Q5_K;
        if (experts == 8) type = GgmlType.Q8_0;
        return type;
    }

    private GgmlType FfnDownType(GgmlType type, LlamaFileType ft, int layer, int layers, int experts)
    {
        var falcon = _model.IsFalcon;
        var imatrix = _options.HasImportanceMatrix;
        return ft switch
        {
            LlamaFileType.MostlyQ2_K => GgmlType.Q3_K,
            LlamaFileType.MostlyQ2_K_S => layer < layers / 8 ? GgmlType.Q4_K : type,
            LlamaFileType.MostlyIQ3_XXS when !imatrix => layer < layers / 8 ? GgmlType.Q4_K : GgmlType.Q3_K,
            LlamaFileType.MostlyQ3_K_M => layer < layers / 16 ? GgmlType.Q5_K
                : !falcon || UseMoreBits(layer, layers) ? GgmlType.Q4_K
                : GgmlType.Q3_K,
            LlamaFileType.MostlyIQ3_M when layer < layers / 8 || (experts == 8 && UseMoreBits(layer, layers)) => GgmlType.Q4_K,
            LlamaFileType.MostlyQ3_K_L => falcon ? GgmlType.Q4_K : GgmlType.Q5_K,
            LlamaFileType.MostlyQ4_K_M when falcon => layer < layers / 16 ? GgmlType.Q6_K
                : UseMoreBits(layer, layers) ? GgmlType.Q5_K
                : GgmlType.Q4_K,
            LlamaFileType.MostlyQ4_K_M => UseMoreBits(layer, layers) ? GgmlType.Q6_K : type,
            LlamaFileType.MostlyIQ4_NL or LlamaFileType.MostlyIQ4_XS when layer < layers / 8 && !imatrix => GgmlType.Q5_K,
            LlamaFileType.MostlyQ5_K_M when UseMoreBits(layer, layers) => GgmlType.Q6_K,
            LlamaFileType.MostlyQ4_K_S when !falcon && layer < layers / 8 => GgmlType.Q5_K,
            // Guards the first ffn_down layers of Q4_0/Q5_0, only with an imatrix so that plain files stay as they were.
            LlamaFileType.MostlyQ4_0 when imatrix && layer < layers / 8 => GgmlType.Q4_1,
            LlamaFileType.MostlyQ5_0 when imatrix && layer < layers / 8 => GgmlType.Q5_1,
            _ => type,
        };
    }

    private GgmlType AttentionOutputType(GgmlType type, LlamaFileType ft, int experts)
    {
        if (_model.IsFalcon) return ft == LlamaFileType.MostlyQ3_K_L ? GgmlType.Q4_K : type;
        if (experts == 8)
        {
            return IsOneOf(LlamaFileType.MostlyQ2_K, LlamaFileType.MostlyIQ3_XS, LlamaFileType.MostlyIQ3_XXS, LlamaFileType.MostlyQ3_K_S,
                LlamaFileType.MostlyQ3_K_M, LlamaFileType.MostlyIQ4_NL, LlamaFileType.MostlyQ4_K_S, LlamaFileType.MostlyQ4_K_M,
                LlamaFileType.MostlyIQ3_S, LlamaFileType.MostlyIQ3_M, LlamaFileType.MostlyIQ4_XS) ? GgmlType.Q5_K : type;
        }
        return ft switch
        {
            LlamaFileType.MostlyQ2_K => GgmlType.Q3_K,
            LlamaFileType.MostlyIQ3_XXS => GgmlType.IQ3_S,
            LlamaFileType.MostlyQ3_K_M => GgmlType.Q4_K,
            LlamaFileType.MostlyQ3_K_L => GgmlType.Q5_K,
            LlamaFileType.MostlyIQ3_M => GgmlType.Q4_K,
            _ => type,
        };
    }
}
