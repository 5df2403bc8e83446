using System.Diagnostics.CodeAnalysis;

namespace KQuant.Gguf;

/// <summary>Block geometry of one ggml type: how many weights a block holds and how many bytes it takes.</summary>
public readonly record struct GgmlTypeTraits(GgmlType Type, string Name, int BlockSize, int BytesPerBlock, bool IsQuantized)
{
    /// <summary>Bits per weight of the storage format itself.</summary>
    public double BitsPerWeight => 8.0 * BytesPerBlock / BlockSize;

    /// <summary>Bytes taken by a row of <paramref name="elements"/> weights; the row length must be a multiple of the block size.</summary>
    public long RowBytes(long elements) => elements / BlockSize * BytesPerBlock;

    // Values from ggml_blck_size / ggml_type_size of llama.cpp v0.5.0 (ggml 0.25.1).
    private static readonly GgmlTypeTraits[] Table =
    [
        new(GgmlType.F32, "F32", 1, 4, false),
        new(GgmlType.F16, "F16", 1, 2, false),
        new(GgmlType.Q4_0, "Q4_0", 32, 18, true),
        new(GgmlType.Q4_1, "Q4_1", 32, 20, true),
        new(GgmlType.Q5_0, "Q5_0", 32, 22, true),
        new(GgmlType.Q5_1, "Q5_1", 32, 24, true),
        new(GgmlType.Q8_0, "Q8_0", 32, 34, true),
        new(GgmlType.Q8_1, "Q8_1", 32, 36, true),
        new(GgmlType.Q2_K, "Q2_K", 256, 84, true),
        new(GgmlType.Q3_K, "Q3_K", 256, 110, true),
        new(GgmlType.Q4_K, "Q4_K", 256, 144, true),
        new(GgmlType.Q5_K, "Q5_K", 256, 176, true),
        new(GgmlType.Q6_K, "Q6_K", 256, 210, true),
        new(GgmlType.Q8_K, "Q8_K", 256, 292, true),
        new(GgmlType.IQ2_XXS, "IQ2_XXS", 256, 66, true),
        new(GgmlType.IQ2_XS, "IQ2_XS", 256, 74, true),
        new(GgmlType.IQ3_XXS, "IQ3_XXS", 256, 98, true),
        new(GgmlType.IQ1_S, "IQ1_S", 256, 50, true),
        new(GgmlType.IQ4_NL, "IQ4_NL", 32, 18, true),
        new(GgmlType.IQ3_S, "IQ3_S", 256, 110, true),
        new(GgmlType.IQ2_S, "IQ2_S", 256, 82, true),
        new(GgmlType.IQ4_XS, "IQ4_XS", 256, 136, true),
        new(GgmlType.I8, "I8", 1, 1, false),
        new(GgmlType.I16, "I16", 1, 2, false),
        new(GgmlType.I32, "I32", 1, 4, false),
        new(GgmlType.I64, "I64", 1, 8, false),
        new(GgmlType.F64, "F64", 1, 8, false),
        new(GgmlType.IQ1_M, "IQ1_M", 256, 56, true),
        new(GgmlType.BF16, "BF16", 1, 2, false),
        new(GgmlType.TQ1_0, "TQ1_0", 256, 54, true),
        new(GgmlType.TQ2_0, "TQ2_0", 256, 66, true),
        new(GgmlType.MXFP4, "MXFP4", 32, 17, true),
        new(GgmlType.NVFP4, "NVFP4", 64, 36, true),
        new(GgmlType.Q1_0, "Q1_0", 128, 18, true),
        new(GgmlType.Q2_0, "Q2_0", 64, 18, true),
    ];

    private static readonly GgmlTypeTraits?[] ById = BuildIndex();

    private static GgmlTypeTraits?[] BuildIndex()
    {
        var byId = new GgmlTypeTraits?[64];
        foreach (var t in Table) byId[(int)t.Type] = t;
        return byId;
    }

    /// <summary>Every type ggml v0.5.0 can store in a file.</summary>
    public static IReadOnlyList<GgmlTypeTraits> All => Table;

    /// <summary>Looks up a type id read from a file; false for ids ggml does not define (or has removed).</summary>
    public static bool TryGet(uint id, [NotNullWhen(true)] out GgmlTypeTraits? traits)
    {
        traits = id < ById.Length ? ById[id] : null;
        return traits is not null;
    }

    public static GgmlTypeTraits Of(GgmlType type) =>
        TryGet((uint)type, out var t) ? t.Value : throw new ArgumentOutOfRangeException(nameof(type), type, "not a ggml type");

    /// <summary>Parses a ggml type name such as "q4_K" or "IQ4_XS" (case-insensitive).</summary>
    public static bool TryParse(string name, out GgmlType type)
    {
        foreach (var t in Table)
        {
            if (string.Equals(t.Name, name, StringComparison.OrdinalIgnoreCase)) { type = t.Type; return true; }
        }
        type = default;
        return false;
    }
}
