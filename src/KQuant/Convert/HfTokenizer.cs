using System.Text;
using System.Text.Json;
using KQuant.Gguf;

namespace KQuant.Conversion;

/// <summary>Builds the tokenizer.* metadata of a Hugging Face folder as convert_hf_to_gguf.py (llama.cpp v0.5.0) writes
/// it: a SentencePiece <c>tokenizer.model</c> (TextModel._create_vocab_sentencepiece) or a byte-level BPE
/// <c>tokenizer.json</c> (get_vocab_base), then the special tokens, add_bos/add_eos flags and chat template (gguf-py's
/// SpecialVocab). Keys come in the converter's order.</summary>
public static class HfTokenizer
{
    public const string SentencePieceFile = "tokenizer.model";
    public const string TokenizerJsonFile = "tokenizer.json";
    public const string TokenizerConfigFile = "tokenizer_config.json";

    // llama.cpp's token types (gguf-py TokenType): what llama_vocab does with each token.
    private const int Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6;

    private static readonly string[] SpecialTokenTypes = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"];

    // SpecialVocab writes ids only for types GGUFWriter has a setter for (not cls), and add_* flags for bos, eos, sep.
    private static readonly Dictionary<string, string> SpecialIdKeys = new(StringComparer.Ordinal)
    {
        ["bos"] = "tokenizer.ggml.bos_token_id",
        ["eos"] = "tokenizer.ggml.eos_token_id",
        ["unk"] = "tokenizer.ggml.unknown_token_id",
        ["sep"] = "tokenizer.ggml.seperator_token_id",
        ["pad"] = "tokenizer.ggml.padding_token_id",
        ["mask"] = "tokenizer.ggml.mask_token_id",
    };

    private static readonly Dictionary<string, string> AddFlagKeys = new(StringComparer.Ordinal)
    {
        ["bos"] = "tokenizer.ggml.add_bos_token",
        ["eos"] = "tokenizer.ggml.add_eos_token",
        ["sep"] = "tokenizer.ggml.add_sep_token",
    };

    /// <summary>The tokenizer metadata of <paramref name="folder"/>. <paramref name="vocabSize"/> is config.json's
    /// vocab_size (the embedding's row count), which the token list is padded or cut to.</summary>
    public static GgufMetadata Read(string folder, HfConfig config, int vocabSize)
    {
        var metadata = new GgufMetadata();
        var tokenizerConfig = HfJson.ReadOptional(folder, TokenizerConfigFile);
        // LlamaModel.set_vocab writes this before anything else.
        if (config.Architecture.GgufName == "llama" && tokenizerConfig?.GetBool("add_prefix_space") is { } addPrefix)
            metadata.Add("tokenizer.ggml.add_space_prefix", GgufValue.FromBool(addPrefix));

        if (File.Exists(Path.Combine(folder, SentencePieceFile)))
        {
            var (tokens, scores, types) = ReadSentencePiece(folder, vocabSize, tokenizerConfig);
            metadata.Add("tokenizer.ggml.model", GgufValue.FromString("llama"));
            metadata.Add("tokenizer.ggml.pre", GgufValue.FromString("default"));
            metadata.Add("tokenizer.ggml.tokens", GgufValue.FromStrings(tokens));
            metadata.Add("tokenizer.ggml.scores", GgufValue.FromArray<float>(scores));
            metadata.Add("tokenizer.ggml.token_type", GgufValue.FromArray<int>(types));
            AddSpecialVocabulary(metadata, folder, tokenizerConfig, loadMerges: false, vocabularySize: tokens.Length);
            return metadata;
        }

        var jsonPath = Path.Combine(folder, TokenizerJsonFile);
        if (!File.Exists(jsonPath))
            throw new FileNotFoundException($"{folder} has no tokenizer ({SentencePieceFile} or {TokenizerJsonFile}); pass --vocab-from FILE.gguf to take the tokenizer from a GGUF file", Path.Combine(folder, SentencePieceFile));
        var json = HfJson.ReadObject(jsonPath);
        var model = json.TryGetProperty("model", out var m) && m.ValueKind == JsonValueKind.Object ? m
            : throw new InvalidDataException($"{jsonPath}: no \"model\" object");
        if (model.GetString("type") != "BPE")
            throw new InvalidDataException($"{jsonPath}: a {model.GetString("type") ?? "untyped"} tokenizer model is not supported (KQuant converts SentencePiece {SentencePieceFile} and byte-level BPE {TokenizerJsonFile}); pass --vocab-from");
        // A BPE with byte fallback is SentencePiece in tokenizer.json form (convert_hf_to_gguf.py reads it with
        // transformers' LlamaTokenizerFast, which KQuant does not reimplement).
        if (config.Architecture.GgufName == "llama" && model.GetBool("byte_fallback") == true)
            throw new InvalidDataException($"{jsonPath}: a SentencePiece-style BPE (byte_fallback) without {SentencePieceFile} is not supported; add {SentencePieceFile} or pass --vocab-from");

        var pre = BpePreTokenizers.Identify(json, jsonPath);
        var (bpeTokens, bpeTypes) = ReadBpeTokens(jsonPath, json, model, vocabSize);
        metadata.Add("tokenizer.ggml.model", GgufValue.FromString("gpt2"));
        metadata.Add("tokenizer.ggml.pre", GgufValue.FromString(pre));
        metadata.Add("tokenizer.ggml.tokens", GgufValue.FromStrings(bpeTokens));
        metadata.Add("tokenizer.ggml.token_type", GgufValue.FromArray<int>(bpeTypes));
        AddSpecialVocabulary(metadata, folder, tokenizerConfig, loadMerges: true, vocabularySize: null);
        return metadata;
    }

    /// <summary>_create_vocab_sentencepiece: pieces by id, then added_tokens.json and tokenizer_config's
    /// added_tokens_decoder on top; ids the model does not fill stay [PAD{i}] with score -10000, type unused.</summary>
    private static (string[] Tokens, float[] Scores, int[] Types) ReadSentencePiece(string folder, int vocabSize, JsonElement? tokenizerConfig)
    {
        var model = SentencePieceModel.Load(Path.Combine(folder, SentencePieceFile));
        var tokens = new string[vocabSize];
        var scores = new float[vocabSize];
        var types = new int[vocabSize];
        for (var i = 0; i < vocabSize; i++)
        {
            tokens[i] = $"[PAD{i}]";
            scores[i] = -10000f;
            types[i] = Unused;
        }
        for (var id = 0; id < Math.Min(vocabSize, model.Pieces.Count); id++)
        {
            var piece = model.Pieces[id];
            tokens[id] = Encoding.UTF8.GetString(piece.Text);
            scores[id] = piece.Score;
            // sentencepiece's IsUnknown / IsControl / IsUnused / IsByte; user-defined pieces count as normal here.
            types[id] = piece.Type switch
            {
                SentencePieceModel.PieceType.Unknown => Unknown,
                SentencePieceModel.PieceType.Control => Control,
                SentencePieceModel.PieceType.Unused => Unused,
                SentencePieceModel.PieceType.Byte => Byte,
                _ => Normal,
            };
        }

        if (HfJson.ReadOptional(folder, "added_tokens.json") is { } added)
        {
            foreach (var entry in added.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out var id) || id < 0 || id >= vocabSize) continue;
                tokens[id] = entry.Name;
                scores[id] = -1000f;
                types[id] = UserDefined;
            }
        }
        if (tokenizerConfig is { } tc && tc.TryGetProperty("added_tokens_decoder", out var decoder) && decoder.ValueKind == JsonValueKind.Object)
        {
            foreach (var entry in decoder.EnumerateObject())
            {
                if (!int.TryParse(entry.Name, out var id) || id < 0 || id >= vocabSize) continue;
                if (entry.Value.GetString("content") is not { } content) continue;
                if (entry.Value.GetBool("special") == true || LooksSpecial(content))
                {
                    types[id] = Control;
                }
                else
                {
                    content = content.Replace('\u2581', ' '); // user-defined tokens are matched pre-normalized
                    types[id] = UserDefined;
                }
                scores[id] = -1000f;
                tokens[id] = content;
            }
        }
        return (tokens, scores, types);
    }

    /// <summary>get_vocab_base: the vocabulary by id (model vocab plus added_tokens), [PAD{i}] for unfilled ids; added
    /// tokens are control tokens when special (or when they look special), otherwise user-defined.</summary>
    private static (string[] Tokens, int[] Types) ReadBpeTokens(string path, JsonElement json, JsonElement model, int vocabSize)
    {
        var byId = new Dictionary<int, string>();
        if (!model.TryGetProperty("vocab", out var vocab) || vocab.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{path}: the BPE model has no \"vocab\" object");
        foreach (var entry in vocab.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out var id) || id < 0)
                throw new InvalidDataException($"{path}: vocab entry {entry.Name} has id {entry.Value.GetRawText()}, expected a non-negative integer");
            byId[id] = entry.Name;
        }
        var addedSpecial = new Dictionary<int, bool>();
        if (json.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
        {
            foreach (var token in added.EnumerateArray())
            {
                if (!token.TryGetProperty("id", out var idElement) || !idElement.TryGetInt32(out var id) || id < 0 || token.GetString("content") is not { } content)
                    throw new InvalidDataException($"{path}: an added_tokens entry lacks an id or content");
                byId[id] = content;
                addedSpecial[id] = token.GetBool("special") == true;
            }
        }
        var maxId = byId.Count == 0 ? -1 : byId.Keys.Max();
        if (maxId >= vocabSize)
            throw new InvalidDataException($"{path}: token id {maxId} is outside config.json's vocab_size {vocabSize}");

        var tokens = new string[vocabSize];
        var types = new int[vocabSize];
        for (var i = 0; i < vocabSize; i++)
        {
            if (!byId.TryGetValue(i, out var token))
            {
                tokens[i] = $"[PAD{i}]";
                types[i] = Unused;
            }
            else if (addedSpecial.TryGetValue(i, out var special))
            {
                if (special || LooksSpecial(token)) types[i] = Control;
                else
                {
                    token = token.Replace('\u2581', ' ');
                    types[i] = UserDefined;
                }
                tokens[i] = token;
            }
            else
            {
                tokens[i] = token;
                types[i] = Normal;
            }
        }
        return (tokens, types);
    }

    /// <summary>does_token_look_special: added tokens some models fail to mark as special.</summary>
    private static bool LooksSpecial(string token) =>
        token is "<pad>" or "<mask>" or "<2mass>" or "[@BOS@]"
        || (token.StartsWith("<|", StringComparison.Ordinal) && token.EndsWith("|>", StringComparison.Ordinal))
        || (token.StartsWith("<\uFF5C", StringComparison.Ordinal) && token.EndsWith("\uFF5C>", StringComparison.Ordinal))
        || (token.StartsWith("<unused", StringComparison.Ordinal) && token.EndsWith('>'));

    /// <summary>gguf-py's SpecialVocab: merges, special token ids (tokenizer_config names resolved through tokenizer.json's
    /// added tokens first, then config.json's *_token_id), add_* flags and the chat template.</summary>
    private static void AddSpecialVocabulary(GgufMetadata metadata, string folder, JsonElement? tokenizerConfig, bool loadMerges, int? vocabularySize)
    {
        var ids = new List<(string Type, int Id)>();
        var flags = new List<(string Type, bool Value)>();
        void SetId(string type, JsonElement? value, string source)
        {
            if (value is not { ValueKind: JsonValueKind.Number } v || !v.TryGetInt64(out var id)) return;
            if (id < 0) throw new InvalidDataException($"{source}: {type} token id {id} is negative");
            if (vocabularySize is { } n && id >= n) return; // the converter skips out-of-range ids with a warning
            if (ids.Any(e => e.Type == type)) return;
            ids.Add((type, checked((int)id)));
        }
        void SetFlag(string type, bool value)
        {
            var i = flags.FindIndex(f => f.Type == type);
            if (i >= 0) flags[i] = (type, value);
            else flags.Add((type, value));
        }

        var tokenizerJsonPath = Path.Combine(folder, TokenizerJsonFile);
        var tokenizerJson = HfJson.ReadOptional(folder, TokenizerJsonFile);
        List<string>? merges = null;
        var addedTokens = new List<(string Content, JsonElement Id)>();
        if (tokenizerJson is { } tj)
        {
            if (loadMerges) merges = ReadMerges(tokenizerJsonPath, tj);
            if (tj.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
            {
                foreach (var token in added.EnumerateArray())
                {
                    if (token.GetString("content") is { } content && token.TryGetProperty("id", out var id)) addedTokens.Add((content, id));
                }
            }
            ReadPostProcessorFlags(tj, tokenizerConfig, SetFlag);
        }
        if (loadMerges && merges is null) merges = ReadMergesTxt(folder);

        string? chatTemplate = null;
        if (tokenizerConfig is { } tc)
        {
            chatTemplate = tc.GetString("chat_template") ?? ReadChatTemplateFile(folder);
            foreach (var type in SpecialTokenTypes)
            {
                if (tc.GetBool($"add_{type}_token") is { } add) SetFlag(type, add);
                var content = tc.TryGetProperty($"{type}_token", out var entry)
                    ? entry.ValueKind == JsonValueKind.String ? entry.GetString() : entry.ValueKind == JsonValueKind.Object ? entry.GetString("content") : null
                    : null;
                if (content is null) continue;
                var match = addedTokens.FirstOrDefault(a => a.Content == content);
                if (match.Content is not null) SetId(type, match.Id, tokenizerJsonPath);
            }
        }
        if (HfJson.ReadOptional(folder, "config.json") is { } config)
        {
            foreach (var type in SpecialTokenTypes)
            {
                SetId(type, config.TryGetProperty($"{type}_token_id", out var id) ? id : null, Path.Combine(folder, "config.json"));
            }
        }

        if (merges is { Count: > 0 }) metadata.Add("tokenizer.ggml.merges", GgufValue.FromStrings(merges));
        else if (loadMerges) throw new InvalidDataException($"{tokenizerJsonPath}: a BPE tokenizer without merges would not work in llama.cpp");
        foreach (var (type, id) in ids)
        {
            if (SpecialIdKeys.TryGetValue(type, out var key)) metadata.Set(key, GgufValue.FromUInt32((uint)id));
        }
        foreach (var (type, value) in flags)
        {
            if (AddFlagKeys.TryGetValue(type, out var key)) metadata.Set(key, GgufValue.FromBool(value));
        }
        if (chatTemplate is not null) metadata.Set("tokenizer.chat_template", GgufValue.FromString(chatTemplate));
    }

    /// <summary>Merges as "left right" strings; the pair form of newer tokenizers encodes a space inside a part as U+0120.</summary>
    private static List<string>? ReadMerges(string path, JsonElement tokenizerJson)
    {
        if (!tokenizerJson.TryGetProperty("model", out var model) || !model.TryGetProperty("merges", out var merges) || merges.ValueKind != JsonValueKind.Array)
            return null;
        var result = new List<string>(merges.GetArrayLength());
        foreach (var merge in merges.EnumerateArray())
        {
            if (merge.ValueKind == JsonValueKind.String) result.Add(merge.GetString()!);
            else if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2 && merge[0].ValueKind == JsonValueKind.String && merge[1].ValueKind == JsonValueKind.String)
                result.Add($"{merge[0].GetString()!.Replace(' ', '\u0120')} {merge[1].GetString()!.Replace(' ', '\u0120')}");
            else throw new InvalidDataException($"{path}: merge {merge.GetRawText()} is neither \"a b\" nor [\"a\", \"b\"]");
        }
        return result;
    }

    private static List<string>? ReadMergesTxt(string folder)
    {
        var path = Path.Combine(folder, "merges.txt");
        if (!File.Exists(path)) return null;
        var result = new List<string>();
        foreach (var raw in File.ReadLines(path))
        {
            var line = raw.Trim();
            if (line.Length == 0 || (result.Count == 0 && line.StartsWith('#'))) continue;
            var parts = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 2) result.Add($"{parts[0]} {parts[1]}");
        }
        return result;
    }

    private static string? ReadChatTemplateFile(string folder)
    {
        var jinja = Path.Combine(folder, "chat_template.jinja");
        if (File.Exists(jinja)) return File.ReadAllText(jinja);
        return HfJson.ReadOptional(folder, "chat_template.json")?.GetString("chat_template");
    }

    /// <summary>SpecialVocab's reading of a TemplateProcessing post-processor: a leading special token that is the BOS
    /// means add_bos, a trailing one that is the EOS means add_eos (a subset: pair templates and the EOT/EOM juggling for
    /// unusual trailing tokens are not reproduced).</summary>
    private static void ReadPostProcessorFlags(JsonElement tokenizerJson, JsonElement? tokenizerConfig, Action<string, bool> setFlag)
    {
        if (!tokenizerJson.TryGetProperty("post_processor", out var post) || post.ValueKind != JsonValueKind.Object) return;
        var processors = post.TryGetProperty("processors", out var list) && list.ValueKind == JsonValueKind.Array ? list.EnumerateArray().ToList() : [post];
        var bos = TokenContent(tokenizerConfig, "bos_token") ?? TokenContent(tokenizerConfig, "cls_token");
        var eos = TokenContent(tokenizerConfig, "eos_token") ?? TokenContent(tokenizerConfig, "sep_token");
        foreach (var processor in processors)
        {
            if (processor.GetString("type") != "TemplateProcessing") continue;
            if (!processor.TryGetProperty("single", out var single) || single.ValueKind != JsonValueKind.Array || single.GetArrayLength() < 2) continue;
            if (SpecialTokenId(single[0]) is { } first) setFlag("bos", tokenizerConfig is null || bos is null || first == bos);
            if (SpecialTokenId(single[single.GetArrayLength() - 1]) is { } last) setFlag("eos", tokenizerConfig is null || eos is null || last == eos);
        }
    }

    private static string? SpecialTokenId(JsonElement item) =>
        item.TryGetProperty("SpecialToken", out var special) ? special.GetString("id") : null;

    private static string? TokenContent(JsonElement? config, string key)
    {
        if (config is not { } c || !c.TryGetProperty(key, out var entry)) return null;
        return entry.ValueKind == JsonValueKind.String ? entry.GetString() : entry.ValueKind == JsonValueKind.Object ? entry.GetString("content") : null;
    }
}
