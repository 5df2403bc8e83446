using System.Text.Json;

namespace KQuant.Conversion;

/// <summary>Chooses <c>tokenizer.ggml.pre</c> for a byte-level BPE <c>tokenizer.json</c>.</summary>
/// <remarks>convert_hf_to_gguf.py runs the Hugging Face tokenizer on a fixed text and looks the hash of the token ids up
/// in a table of known models. That needs the model's own tokenizer implementation; KQuant instead recognizes the
/// pre-tokenizer by the split regex in tokenizer.json, which is what the pre type stands for in llama.cpp (each type is a
/// set of split regexes in llama-vocab.cpp). This is a documented subset: the pre-tokenizers of GPT-2, Llama 3 and Qwen2
/// and Mistral's Tekken. Anything else is refused with a message naming the regex; --vocab-from is the way around.</remarks>
public static class BpePreTokenizers
{
    /// <summary>Known Split regexes (as tokenizer.json spells them, which llama-vocab.cpp quotes) and their pre type.</summary>
    private static readonly (string Regex, string Pre)[] SplitPatterns =
    [
        (@"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+", "llama-bpe"),
        (@"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+", "qwen2"),
        (@"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+", "tekken"),
    ];

    /// <summary>The pre types this recognizes, for messages and documentation.</summary>
    public static string Supported => "gpt-2 (ByteLevel with its built-in regex), " + string.Join(", ", SplitPatterns.Select(p => p.Pre));

    /// <summary>The pre type for tokenizer.json's "pre_tokenizer"; throws naming <paramref name="path"/> when unknown.</summary>
    public static string Identify(JsonElement tokenizerJson, string path)
    {
        if (!tokenizerJson.TryGetProperty("pre_tokenizer", out var pre) || pre.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{path}: no pre_tokenizer; KQuant recognizes {Supported} (or pass --vocab-from)");
        var steps = pre.GetString("type") == "Sequence" && pre.TryGetProperty("pretokenizers", out var list) && list.ValueKind == JsonValueKind.Array
            ? list.EnumerateArray().ToList()
            : [pre];
        var regexes = new List<string>();
        var byteLevelRegex = false;
        foreach (var step in steps)
        {
            switch (step.GetString("type"))
            {
                case "Split":
                    if (step.TryGetProperty("pattern", out var pattern) && pattern.GetString("Regex") is { } regex) regexes.Add(regex);
                    else throw new InvalidDataException($"{path}: a Split pre-tokenizer without a regex pattern is not recognized ({Supported})");
                    break;
                case "ByteLevel":
                    byteLevelRegex |= step.GetBool("use_regex") ?? true;
                    break;
                default:
                    throw new InvalidDataException($"{path}: pre-tokenizer step {step.GetString("type") ?? "(untyped)"} is not recognized; KQuant recognizes {Supported} (or pass --vocab-from)");
            }
        }
        if (regexes.Count == 0 && byteLevelRegex) return "gpt-2";
        if (regexes.Count == 1 && !byteLevelRegex)
        {
            foreach (var (known, name) in SplitPatterns)
            {
                if (regexes[0] == known) return name;
            }
            throw new InvalidDataException($"{path}: the pre-tokenizer regex {regexes[0]} is not one KQuant recognizes ({Supported}); pass --vocab-from with a GGUF of this tokenizer");
        }
        throw new InvalidDataException($"{path}: a pre-tokenizer of {regexes.Count} split regex(es){(byteLevelRegex ? " plus ByteLevel's own" : "")} is not recognized; KQuant recognizes {Supported} (or pass --vocab-from)");
    }
}
