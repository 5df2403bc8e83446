using System.Runtime.InteropServices;

namespace KQuant.Tests.Reference;

// llama.cpp's tokenizer: the oracle for KQuant.Model.Tokenizers.
public static unsafe partial class LlamaReference
{
    private static readonly Dictionary<string, Vocab> Vocabs = new(StringComparer.Ordinal);

    /// <summary>The vocabulary of <paramref name="path"/> as llama.cpp loads it (vocab_only). Loaded once per test run
    /// and kept; throws with llama.cpp's log when it refuses the file.</summary>
    public static Vocab LoadVocab(string path)
    {
        lock (LoadLock)
        {
            if (Vocabs.TryGetValue(path, out var cached)) return cached;
            Initialize();
            Log.Clear();
            var p = ModelDefaultParams();
            p.NGpuLayers = 0;
            p.VocabOnly = 1;
            var model = ModelLoadFromFile(path, p);
            if (model == IntPtr.Zero) throw new InvalidOperationException($"llama.cpp refused {path}:\n{Log}");
            var vocab = new Vocab(ModelGetVocab(model));
            Vocabs.Add(path, vocab);
            return vocab;
        }
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
