using System.Diagnostics.CodeAnalysis;
using KQuant.Gguf;

namespace KQuant.Recipes;

/// <summary>A named quantization recipe as llama-quantize offers it: the file type it writes and the tensor type most
/// weights get. Which tensors deviate from the default is <see cref="TensorTypePlanner"/>'s business.</summary>
public sealed record QuantRecipe(string Name, LlamaFileType FileType, GgmlType DefaultType, string Description)
{
    /// <summary>Nominal bits per weight of the default tensor type (a mixture's file comes out somewhat above it).</summary>
    public double NominalBitsPerWeight => GgmlTypeTraits.Of(DefaultType).BitsPerWeight;

    /// <summary>True for recipes that keep some tensors at higher precision than the default (K-quant and IQ4 mixtures).</summary>
    public bool IsMixture => FileType is not (LlamaFileType.AllF32 or LlamaFileType.MostlyF16 or LlamaFileType.MostlyBF16
        or LlamaFileType.MostlyQ8_0 or LlamaFileType.MostlyQ4_0 or LlamaFileType.MostlyQ4_1 or LlamaFileType.MostlyQ5_0
        or LlamaFileType.MostlyQ5_1);

    /// <summary>The recipes KQuant writes, in llama-quantize's order; aliases (Q3_K, Q4_K, Q5_K) name the same file type.
    /// Descriptions quote llama.cpp's published size and perplexity change for Llama-3-8B where it gives one.</summary>
    public static IReadOnlyList<QuantRecipe> All { get; } =
    [
        new("Q4_0", LlamaFileType.MostlyQ4_0, GgmlType.Q4_0, "4.34G, +0.4685 ppl @ Llama-3-8B"),
        new("Q4_1", LlamaFileType.MostlyQ4_1, GgmlType.Q4_1, "4.78G, +0.4511 ppl @ Llama-3-8B"),
        new("Q5_0", LlamaFileType.MostlyQ5_0, GgmlType.Q5_0, "5.21G, +0.1316 ppl @ Llama-3-8B"),
        new("Q5_1", LlamaFileType.MostlyQ5_1, GgmlType.Q5_1, "5.65G, +0.1062 ppl @ Llama-3-8B"),
        new("Q2_K", LlamaFileType.MostlyQ2_K, GgmlType.Q2_K, "2.96G, +3.5199 ppl @ Llama-3-8B"),
        new("Q2_K_S", LlamaFileType.MostlyQ2_K_S, GgmlType.Q2_K, "2.96G, +3.1836 ppl @ Llama-3-8B (needs an imatrix)"),
        new("Q3_K", LlamaFileType.MostlyQ3_K_M, GgmlType.Q3_K, "alias for Q3_K_M"),
        new("Q3_K_S", LlamaFileType.MostlyQ3_K_S, GgmlType.Q3_K, "3.41G, +1.6321 ppl @ Llama-3-8B"),
        new("Q3_K_M", LlamaFileType.MostlyQ3_K_M, GgmlType.Q3_K, "3.74G, +0.6569 ppl @ Llama-3-8B"),
        new("Q3_K_L", LlamaFileType.MostlyQ3_K_L, GgmlType.Q3_K, "4.03G, +0.5562 ppl @ Llama-3-8B"),
        new("IQ4_NL", LlamaFileType.MostlyIQ4_NL, GgmlType.IQ4_NL, "4.50 bpw non-linear quantization"),
        new("IQ4_XS", LlamaFileType.MostlyIQ4_XS, GgmlType.IQ4_XS, "4.25 bpw non-linear quantization"),
        new("Q4_K", LlamaFileType.MostlyQ4_K_M, GgmlType.Q4_K, "alias for Q4_K_M"),
        new("Q4_K_S", LlamaFileType.MostlyQ4_K_S, GgmlType.Q4_K, "4.37G, +0.2689 ppl @ Llama-3-8B"),
        new("Q4_K_M", LlamaFileType.MostlyQ4_K_M, GgmlType.Q4_K, "4.58G, +0.1754 ppl @ Llama-3-8B"),
        new("Q5_K", LlamaFileType.MostlyQ5_K_M, GgmlType.Q5_K, "alias for Q5_K_M"),
        new("Q5_K_S", LlamaFileType.MostlyQ5_K_S, GgmlType.Q5_K, "5.21G, +0.1049 ppl @ Llama-3-8B"),
        new("Q5_K_M", LlamaFileType.MostlyQ5_K_M, GgmlType.Q5_K, "5.33G, +0.0569 ppl @ Llama-3-8B"),
        new("Q6_K", LlamaFileType.MostlyQ6_K, GgmlType.Q6_K, "6.14G, +0.0217 ppl @ Llama-3-8B"),
        new("Q8_0", LlamaFileType.MostlyQ8_0, GgmlType.Q8_0, "7.96G, +0.0026 ppl @ Llama-3-8B"),
        new("F16", LlamaFileType.MostlyF16, GgmlType.F16, "14.00G, +0.0020 ppl @ Mistral-7B"),
        new("BF16", LlamaFileType.MostlyBF16, GgmlType.BF16, "14.00G, -0.0050 ppl @ Mistral-7B"),
        new("F32", LlamaFileType.AllF32, GgmlType.F32, "26.00G @ 7B"),
    ];

    /// <summary>Finds a recipe by name, case-insensitively, or by its numeric file type as llama-quantize accepts it.</summary>
    public static bool TryParse(string text, [NotNullWhen(true)] out QuantRecipe? recipe)
    {
        recipe = All.FirstOrDefault(r => string.Equals(r.Name, text, StringComparison.OrdinalIgnoreCase));
        if (recipe is null && int.TryParse(text, out var id))
        {
            recipe = All.FirstOrDefault(r => (int)r.FileType == id);
        }
        return recipe is not null;
    }

    /// <summary>The canonical recipe writing <paramref name="fileType"/> (not an alias).</summary>
    public static QuantRecipe? ForFileType(LlamaFileType fileType) =>
        All.FirstOrDefault(r => r.FileType == fileType && !r.Description.StartsWith("alias", StringComparison.Ordinal));
}
