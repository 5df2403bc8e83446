namespace KQuant.Model.Tokenizers;

/// <summary>What llama.cpp knows about a token (llama_token_attr, same values): its kind, from tokenizer.ggml.token_type
/// and llama.cpp's corrections by token text, and how special-token matching treats whitespace around it.</summary>
[Flags]
public enum TokenAttributes
{
    Undefined = 0,
    Unknown = 1 << 0,
    Unused = 1 << 1,
    Normal = 1 << 2,
    /// <summary>A control token (BOS, EOS, chat markers): matched in text only when special tokens are parsed, and
    /// rendered only on request.</summary>
    Control = 1 << 3,
    /// <summary>Added to the vocabulary by the model's authors: always matched in text as a whole.</summary>
    UserDefined = 1 << 4,
    /// <summary>A byte-fallback token such as &lt;0x0A&gt;.</summary>
    Byte = 1 << 5,
    Normalized = 1 << 6,
    /// <summary>Whitespace before the token is dropped when it is matched in text.</summary>
    LeftStrip = 1 << 7,
    /// <summary>Whitespace after the token is dropped when it is matched in text.</summary>
    RightStrip = 1 << 8,
    SingleWord = 1 << 9,
}
