using KQuant.Gguf;

namespace KQuant.Model.Tokenizers;

/// <summary>The special tokens of a vocabulary as llama.cpp v0.5.0 settles them at load time (llama_vocab::impl::load):
/// the ids given by the metadata or defaulted per tokenizer type, and llama.cpp's corrections by token text, which mark
/// end-of-turn and fill-in-the-middle markers as control tokens, collect the end-of-generation set and adjust a few
/// models' whitespace handling. These corrections decide which texts are matched as special tokens, so they are
/// reproduced exactly (except that where several tokens qualify for one role, the lowest id wins, where llama.cpp takes
/// whichever its hash map yields first).</summary>
internal sealed class SpecialTokens
{
    private enum Role { Bos, Eos, Eot, Eom, Unknown, Separator, Padding, Mask, FimPre, FimSuf, FimMid, FimPad, FimRep, FimSep }

    // Metadata keys in llama.cpp's reading order; the last three are deprecated names of the FIM ids.
    private static readonly (string Key, Role Role)[] IdKeys =
    [
        ("tokenizer.ggml.bos_token_id", Role.Bos), ("tokenizer.ggml.eos_token_id", Role.Eos),
        ("tokenizer.ggml.eot_token_id", Role.Eot), ("tokenizer.ggml.eom_token_id", Role.Eom),
        ("tokenizer.ggml.unknown_token_id", Role.Unknown), ("tokenizer.ggml.seperator_token_id", Role.Separator),
        ("tokenizer.ggml.padding_token_id", Role.Padding), ("tokenizer.ggml.mask_token_id", Role.Mask),
        ("tokenizer.ggml.fim_pre_token_id", Role.FimPre), ("tokenizer.ggml.fim_suf_token_id", Role.FimSuf),
        ("tokenizer.ggml.fim_mid_token_id", Role.FimMid), ("tokenizer.ggml.fim_pad_token_id", Role.FimPad),
        ("tokenizer.ggml.fim_rep_token_id", Role.FimRep), ("tokenizer.ggml.fim_sep_token_id", Role.FimSep),
        ("tokenizer.ggml.prefix_token_id", Role.FimPre), ("tokenizer.ggml.suffix_token_id", Role.FimSuf),
        ("tokenizer.ggml.middle_token_id", Role.FimMid),
    ];

    // Texts that identify a role when the metadata does not give its id; the token found becomes a control token.
    private static readonly (Role Role, string[] Texts)[] RolesByText =
    [
        (Role.Eot, ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
            "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"]),
        (Role.Eom, ["<|eom_id|>"]),
        (Role.FimPre, ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"]),
        (Role.FimSuf, ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"]),
        (Role.FimMid, ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"]),
        (Role.FimPad, ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]),
        (Role.FimRep, ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]),
        (Role.FimSep, ["<|file_sep|>"]),
    ];

    // Texts of tokens that end generation; each becomes a control token.
    private static readonly string[] EndOfGenerationTexts =
    [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
        "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>",
        "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
    ];

    // gpt-oss's channel markers are always rendered: llama.cpp makes them user-defined whatever the file says.
    private static readonly string[] AlwaysRenderedTexts = ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

    private readonly int?[] _ids = new int?[Enum.GetValues<Role>().Length];
    private readonly HashSet<int> _endOfGeneration = [];

    private SpecialTokens()
    {
    }

    public int? Bos => _ids[(int)Role.Bos];

    public int? Eos => _ids[(int)Role.Eos];

    public int? Unknown => _ids[(int)Role.Unknown];

    public IReadOnlySet<int> EndOfGeneration => _endOfGeneration;

    /// <summary>Control, user-defined and unknown tokens, longest text first: the order in which they are cut out of
    /// text (see <see cref="SpecialTokenSplitter"/>).</summary>
    public int[] MatchOrder { get; private set; } = [];

    /// <summary>Settles the special tokens of <paramref name="vocabulary"/> and corrects its attributes in place.
    /// <paramref name="defaults"/> are the tokenizer type's default BOS, EOS and unknown ids.</summary>
    public static SpecialTokens Settle(TokenVocabulary vocabulary, IGgufMetadataSource metadata, (int? Bos, int? Eos, int? Unknown) defaults)
    {
        var s = new SpecialTokens();
        s._ids[(int)Role.Bos] = defaults.Bos;
        s._ids[(int)Role.Eos] = defaults.Eos;
        s._ids[(int)Role.Unknown] = defaults.Unknown;
        s.ReadIds(vocabulary, metadata);
        s.FindRolesByText(vocabulary);
        MarkUnusedControlTokens(vocabulary);
        s.CollectEndOfGeneration(vocabulary);
        s.MatchOrder = SortForMatching(vocabulary);
        ApplyModelSpecificStripping(vocabulary, metadata, s.MatchOrder);
        return s;
    }

    private void ReadIds(TokenVocabulary vocabulary, IGgufMetadataSource metadata)
    {
        for (var r = 0; r < _ids.Length; r++)
        {
            if (_ids[r] is { } id && !vocabulary.IsValid(id)) _ids[r] = null; // a default outside the vocabulary
        }
        foreach (var (key, role) in IdKeys)
        {
            // An id outside the vocabulary is ignored (llama.cpp warns and keeps the default).
            if (metadata.GetInt64(key) is { } id && id is >= 0 and <= int.MaxValue && vocabulary.IsValid((int)id))
                _ids[(int)role] = (int)id;
        }
    }

    private void FindRolesByText(TokenVocabulary vocabulary)
    {
        foreach (var (role, texts) in RolesByText)
        {
            if (_ids[(int)role] is not null) continue;
            var found = texts.Select(vocabulary.FindId).Where(id => id is not null).Min();
            if (found is not { } id) continue;
            _ids[(int)role] = id;
            vocabulary.SetAttributes(id, vocabulary.Attributes(id) | TokenAttributes.Control);
        }
    }

    // Control tokens named like "<unused12>" are marked unused.
    private static void MarkUnusedControlTokens(TokenVocabulary vocabulary)
    {
        var unused = "unused"u8;
        for (var id = 0; id < vocabulary.Count; id++)
        {
            var attributes = vocabulary.Attributes(id);
            if ((attributes & TokenAttributes.Control) != 0 && vocabulary.Text(id).IndexOf(unused) >= 0)
                vocabulary.SetAttributes(id, attributes | TokenAttributes.Unused);
        }
    }

    private void CollectEndOfGeneration(TokenVocabulary vocabulary)
    {
        foreach (var role in (Role[])[Role.FimPad, Role.FimRep, Role.FimSep])
        {
            if (_ids[(int)role] is { } id) _endOfGeneration.Add(id);
        }
        foreach (var text in EndOfGenerationTexts)
        {
            if (vocabulary.FindId(text) is not { } id) continue;
            _endOfGeneration.Add(id);
            vocabulary.SetAttributes(id, vocabulary.Attributes(id) | TokenAttributes.Control);
        }
        foreach (var text in AlwaysRenderedTexts)
        {
            if (vocabulary.FindId(text) is { } id) vocabulary.SetAttributes(id, TokenAttributes.UserDefined);
        }
        foreach (var role in (Role[])[Role.Eos, Role.Eot, Role.Eom])
        {
            if (_ids[(int)role] is { } id) _endOfGeneration.Add(id);
        }

        bool Ends(string text) => vocabulary.FindId(text) is { } id && _endOfGeneration.Contains(id);

        // Harmony (gpt-oss) and Solar Open end a turn with <|end|> but keep generating after it: not an end, and rendered.
        var endsWithCall = Ends("<|call|>") || Ends("<|calls|>");
        if (Ends("<|end|>") && endsWithCall && (Ends("<|return|>") || Ends("<|flush|>")))
        {
            var end = vocabulary.FindId("<|end|>")!.Value;
            _endOfGeneration.Remove(end);
            vocabulary.SetAttributes(end, TokenAttributes.UserDefined);
        }
        // Gemma 4 and PaddleOCR use </s> as ordinary text.
        if (Ends("<|tool_response>") && Ends("</s>"))
        {
            var closing = vocabulary.FindId("</s>")!.Value;
            _endOfGeneration.Remove(closing);
            vocabulary.SetAttributes(closing, TokenAttributes.Normal);
        }
    }

    private static int[] SortForMatching(TokenVocabulary vocabulary)
    {
        const TokenAttributes matched = TokenAttributes.Control | TokenAttributes.UserDefined | TokenAttributes.Unknown;
        return Enumerable.Range(0, vocabulary.Count)
            .Where(id => (vocabulary.Attributes(id) & matched) != 0)
            .OrderByDescending(id => vocabulary.Text(id).Length)
            .ThenBy(id => id)
            .ToArray();
    }

    // llama.cpp sets these by model, tokenizer or architecture name, as the GGUF has no field for them.
    private static void ApplyModelSpecificStripping(TokenVocabulary vocabulary, IGgufMetadataSource metadata, int[] matchOrder)
    {
        var name = (metadata.GetString("general.name") ?? "").ToLowerInvariant();
        var pre = metadata.GetString(PreTokenizerCatalog.PreKey) ?? "";
        var architecture = metadata.GetArchitecture() ?? "";

        void Set(string text, TokenAttributes flag, bool on)
        {
            if (vocabulary.FindId(text) is not { } id) return;
            var attributes = vocabulary.Attributes(id);
            vocabulary.SetAttributes(id, on ? attributes | flag : attributes & ~flag);
        }

        if (ContainsAny(pre, "jina-v2-de", "jina-v2-es", "jina-v2-code") || ContainsAny(architecture, "nomic-bert-moe", "jina-bert-v3"))
        {
            Set("<mask>", TokenAttributes.LeftStrip, true);
        }
        else if (ContainsAny(name, "phi-3", "phi3"))
        {
            foreach (var id in matchOrder) vocabulary.SetAttributes(id, vocabulary.Attributes(id) | TokenAttributes.RightStrip);
            Set("</s>", TokenAttributes.RightStrip, true);
            foreach (var text in (string[])["<unk>", "<s>", "<|endoftext|>"]) Set(text, TokenAttributes.RightStrip, false);
        }
        else if (name.Contains("modern-bert", StringComparison.Ordinal))
        {
            Set("[MASK]", TokenAttributes.LeftStrip, true);
        }
    }

    private static bool ContainsAny(string value, params string[] parts) => parts.Any(p => value.Contains(p, StringComparison.Ordinal));
}
