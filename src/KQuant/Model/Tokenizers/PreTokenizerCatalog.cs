namespace KQuant.Model.Tokenizers;

/// <summary>A pre-tokenizer of "gpt2" tokenizers: the steps that split text into words before BPE, and the settings
/// llama.cpp ties to the tokenizer.ggml.pre value.</summary>
internal sealed record PreTokenizerDefinition(
    IWordSplitter[] Steps,
    bool IgnoreMerges = false,
    bool CleanSpaces = true,
    bool AddBos = false,
    bool HasDefaultBos = true)
{
    /// <summary>Word lengths in codepoints, covering <paramref name="text"/> in order.</summary>
    public List<int> Split(SplitText text)
    {
        var pieces = new List<int>();
        if (text.Length == 0) return pieces;
        pieces.Add(text.Length);
        var next = new List<int>();
        foreach (var step in Steps)
        {
            next.Clear();
            step.Split(text, pieces, next);
            (pieces, next) = (next, pieces);
        }
        return pieces;
    }
}

/// <summary>The tokenizer.ggml.pre values KQuant runs, with what llama.cpp v0.5.0 does for each (llm_tokenizer_bpe and
/// llama_vocab::impl::load). Names that llama.cpp treats alike share a definition. The regexes are llama.cpp's, verbatim;
/// where it hand-codes one, so does KQuant (<see cref="ScanningWordSplitter"/>).</summary>
internal static class PreTokenizerCatalog
{
    public const string PreKey = "tokenizer.ggml.pre";

    /// <summary>What a "gpt2" tokenizer without tokenizer.ggml.pre gets (llama.cpp warns that quality suffers).</summary>
    public const string DefaultName = "default";

    private static readonly RegexWordSplitter EachDigit = new(@"\p{N}");
    private static readonly RegexWordSplitter Digits = new(@"\p{N}+");
    private static readonly RegexWordSplitter DigitTriples = new("[0-9][0-9][0-9]");
    private static readonly RegexWordSplitter PunctuationRuns = new(@"[\p{P}\$\+<=>\^~\|]+");
    private static readonly RegexWordSplitter LineBreaks = new("[\r\n]");
    private static readonly RegexWordSplitter CjkRuns = new("[一-龥ࠀ-一가-퟿]+");

    private static readonly PreTokenizerDefinition Gpt2 = new([Gpt2WordSplitter.Instance]);
    private static readonly PreTokenizerDefinition Llama3 = new([Llama3WordSplitter.Llama3], IgnoreMerges: true, AddBos: true);
    private static readonly PreTokenizerDefinition Llama3Regex = new([Llama3WordSplitter.Llama3]);
    private static readonly PreTokenizerDefinition DigitsThenGpt2 = new([EachDigit, Gpt2WordSplitter.Instance]);
    private static readonly PreTokenizerDefinition Qwen2 = new([Llama3WordSplitter.Qwen2], CleanSpaces: false);

    private static readonly Dictionary<string, PreTokenizerDefinition> Definitions = new(StringComparer.Ordinal)
    {
        [DefaultName] = new([PunctuationRuns, Gpt2WordSplitter.Instance, Digits, DigitTriples]),

        // Llama 3 and its relatives keep a word that is a whole token whole, and add BOS.
        ["llama3"] = Llama3,
        ["llama-v3"] = Llama3,
        ["llama-bpe"] = Llama3,
        ["falcon3"] = Llama3,
        ["falcon-h1"] = Llama3,
        ["pixtral"] = Llama3,
        ["midm-2.0"] = Llama3,
        ["lfm2"] = Llama3,
        ["jina-v5-nano"] = Llama3,
        ["dbrx"] = Llama3Regex,
        ["smaug-bpe"] = Llama3Regex,
        ["glm4"] = Llama3Regex with { HasDefaultBos = false },
        ["chatglm-bpe"] = Llama3Regex with { HasDefaultBos = false },

        ["qwen2"] = Qwen2,
        ["deepseek-r1-qwen"] = Qwen2,
        ["kormo"] = Qwen2,
        ["f2llmv2"] = Qwen2,
        ["hunyuan"] = Qwen2,
        ["solar-open"] = Qwen2,
        ["grok-2"] = Qwen2,
        ["megrez"] = Qwen2 with { CleanSpaces = true },
        ["stablelm2"] = Qwen2 with { CleanSpaces = true },
        ["qwen35"] = new([Llama3WordSplitter.Qwen35], CleanSpaces: false),

        ["gpt-2"] = Gpt2,
        ["phi-2"] = Gpt2,
        ["jina-es"] = Gpt2,
        ["jina-de"] = Gpt2,
        ["gigachat"] = Gpt2,
        ["jina-v2-es"] = Gpt2,
        ["jina-v2-de"] = Gpt2,
        ["jina-v1-en"] = Gpt2,
        ["jina-v2-code"] = Gpt2,
        ["roberta-bpe"] = Gpt2,
        ["a.x-4.0"] = Gpt2,
        ["mellum"] = Gpt2,
        ["modern-bert"] = Gpt2,
        ["exaone4"] = Gpt2,
        ["mpt"] = Gpt2,
        ["olmo"] = Gpt2,
        ["jais"] = Gpt2,
        ["trillion"] = Gpt2 with { CleanSpaces = false },
        ["granite-docling"] = Gpt2 with { CleanSpaces = false },

        ["starcoder"] = DigitsThenGpt2,
        ["refact"] = DigitsThenGpt2,
        ["codeshell"] = DigitsThenGpt2,
        ["exaone"] = DigitsThenGpt2,
        ["minerva-7b"] = DigitsThenGpt2,
        ["mellum2"] = DigitsThenGpt2,
        ["command-r"] = DigitsThenGpt2 with { CleanSpaces = false },
        ["smollm"] = DigitsThenGpt2 with { CleanSpaces = false },

        ["falcon"] = new([PunctuationRuns, Gpt2WordSplitter.Instance, DigitTriples]),
        ["deepseek-coder"] = new(
            [LineBreaks, new RegexWordSplitter(@"\s?\p{L}+"), new RegexWordSplitter(@"\s?\p{P}+"), CjkRuns, EachDigit],
            CleanSpaces: false),
        ["deepseek-llm"] = new(
            [
                LineBreaks,
                new RegexWordSplitter("\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"),
                new RegexWordSplitter("\\s?[!-/:-~！-／：-～‘-‟　-。]+"),
                new RegexWordSplitter(@"\s+$"),
                CjkRuns,
                Digits,
            ],
            CleanSpaces: false),
    };

    /// <summary>The supported tokenizer.ggml.pre values, sorted.</summary>
    public static IReadOnlyList<string> Names { get; } = Definitions.Keys.Order(StringComparer.Ordinal).ToArray();

    public static PreTokenizerDefinition? Find(string name) => Definitions.GetValueOrDefault(name);
}
