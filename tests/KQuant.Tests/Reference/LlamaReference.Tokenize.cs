using System.Runtime.InteropServices;
using System.Text;

namespace KQuant.Tests.Reference;

/// <summary>llama.cpp's tokenizer (llama_tokenize of v0.5.0): what a model file's tokenizer metadata makes of a text,
/// and the oracle for KQuant.Model.Tokenizers. Two files tokenize alike when their token ids agree on the same texts.</summary>
public static unsafe partial class LlamaReference
{
    /// <summary>Loads <paramref name="path"/>'s vocabulary only and tokenizes each text as llama.cpp's tools do
    /// (special tokens added as the file says, special-token text not parsed).</summary>
    public static int[][] Tokenize(string path, IReadOnlyList<string> texts, bool addSpecial = true)
    {
        lock (LoadLock)
        {
            var model = LoadVocabOnly(path);
            try
            {
                var vocab = ModelGetVocab(model);
                return [.. texts.Select(t => TokenizeOne(vocab, t, addSpecial))];
            }
            finally
            {
                ModelFree(model);
            }
        }
    }

    private static int[] TokenizeOne(IntPtr vocab, string text, bool addSpecial)
    {
        var utf8 = Encoding.UTF8.GetBytes(text);
        var tokens = new int[utf8.Length + 8];
        fixed (byte* t = utf8)
        fixed (int* o = tokens)
        {
            var n = LlamaTokenize(vocab, t, utf8.Length, o, tokens.Length, addSpecial ? (byte)1 : (byte)0, 0);
            if (n < 0) throw new InvalidOperationException($"llama_tokenize needs {-n} tokens for a text of {utf8.Length} bytes");
            return tokens[..n];
        }
    }

    private static readonly Dictionary<string, Vocab> Vocabs = new(StringComparer.Ordinal);

    /// <summary>The vocabulary of <paramref name="path"/> as llama.cpp loads it (vocab_only). Loaded once per test run
    /// and kept; throws with llama.cpp's log when it refuses the file.</summary>
    public static Vocab LoadVocab(string path)
    {
        lock (LoadLock)
        {
            if (Vocabs.TryGetValue(path, out var cached)) return cached;
            var vocab = new Vocab(ModelGetVocab(LoadVocabOnly(path)));
            Vocabs.Add(path, vocab);
            return vocab;
        }
    }

    // Loads the model's vocabulary only; the caller holds LoadLock and frees the model.
    private static IntPtr LoadVocabOnly(string path)
    {
        Initialize();
        Log.Clear();
        var p = ModelDefaultParams();
        p.NGpuLayers = 0;
        p.VocabOnly = 1;
        var model = ModelLoadFromFile(path, p);
        return model != IntPtr.Zero ? model : throw new InvalidOperationException($"llama.cpp refused {path}:\n{Log}");
    }

    /// <summary>llama.cpp's classification of a codepoint (unicode_cpt_flags_from_cpt, a C++ export of libllama):
    /// category bits, whitespace 0x100, lowercase 0x200, uppercase 0x400, NFD 0x800.</summary>
    public static ushort CodepointFlags(int codepoint)
    {
        Initialize();
        return UnicodeCodepointFlags((uint)codepoint);
    }

    /// <summary>A llama_vocab. Its functions are thread-safe.</summary>
    public sealed class Vocab
    {
        private readonly IntPtr _vocab;

        internal Vocab(IntPtr vocab) => _vocab = vocab;

        public int Count => VocabNTokens(_vocab);

        public int Bos => VocabBos(_vocab);

        public int Eos => VocabEos(_vocab);

        public bool AddBos => VocabGetAddBos(_vocab) != 0;

        public bool AddEos => VocabGetAddEos(_vocab) != 0;

        public int Attributes(int token) => VocabGetAttr(_vocab, token);

        public bool IsEndOfGeneration(int token) => VocabIsEog(_vocab, token) != 0;

        /// <summary>llama_tokenize.</summary>
        public int[] Tokenize(ReadOnlySpan<byte> utf8, bool addSpecial, bool parseSpecial)
        {
            var tokens = new int[utf8.Length + 8];
            while (true)
            {
                int n;
                fixed (byte* text = utf8)
                fixed (int* t = tokens)
                {
                    n = LlamaTokenize(_vocab, text, utf8.Length, t, tokens.Length, Flag(addSpecial), Flag(parseSpecial));
                }
                if (n >= 0) return tokens[..n];
                if (n == int.MinValue) throw new InvalidOperationException("llama_tokenize overflowed");
                tokens = new int[-n];
            }
        }

        /// <summary>llama_detokenize.</summary>
        public byte[] Detokenize(ReadOnlySpan<int> tokens, bool removeSpecial, bool unparseSpecial)
        {
            var text = new byte[tokens.Length * 8 + 16];
            while (true)
            {
                int n;
                fixed (int* t = tokens)
                fixed (byte* buffer = text)
                {
                    n = LlamaDetokenize(_vocab, t, tokens.Length, buffer, text.Length, Flag(removeSpecial), Flag(unparseSpecial));
                }
                if (n >= 0) return text[..n];
                text = new byte[-n];
            }
        }

        /// <summary>llama_token_to_piece with no leading spaces skipped.</summary>
        public byte[] TokenToPiece(int token, bool special)
        {
            var piece = new byte[64];
            while (true)
            {
                int n;
                fixed (byte* buffer = piece) n = LlamaTokenToPiece(_vocab, token, buffer, piece.Length, 0, Flag(special));
                if (n >= 0) return piece[..n];
                piece = new byte[-n];
            }
        }

        private static byte Flag(bool value) => value ? (byte)1 : (byte)0;
    }

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_model_get_vocab")]
    private static partial IntPtr ModelGetVocab(IntPtr model);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_vocab_n_tokens")]
    private static partial int VocabNTokens(IntPtr vocab);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_vocab_bos")]
    private static partial int VocabBos(IntPtr vocab);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_vocab_eos")]
    private static partial int VocabEos(IntPtr vocab);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_vocab_get_add_bos")]
    private static partial byte VocabGetAddBos(IntPtr vocab);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_vocab_get_add_eos")]
    private static partial byte VocabGetAddEos(IntPtr vocab);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_vocab_get_attr")]
    private static partial int VocabGetAttr(IntPtr vocab, int token);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_vocab_is_eog")]
    private static partial byte VocabIsEog(IntPtr vocab, int token);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_tokenize")]
    private static partial int LlamaTokenize(IntPtr vocab, byte* text, int textLength, int* tokens, int maxTokens, byte addSpecial, byte parseSpecial);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_detokenize")]
    private static partial int LlamaDetokenize(IntPtr vocab, int* tokens, int count, byte* text, int maxLength, byte removeSpecial, byte unparseSpecial);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_token_to_piece")]
    private static partial int LlamaTokenToPiece(IntPtr vocab, int token, byte* buffer, int length, int lstrip, byte special);

    // unicode_cpt_flags_from_cpt(uint32_t): C++ linkage; its 2-byte result struct comes back in a register.
    [LibraryImport(GgmlReference.Llama, EntryPoint = "_Z26unicode_cpt_flags_from_cptj")]
    private static partial ushort UnicodeCodepointFlags(uint codepoint);
}
