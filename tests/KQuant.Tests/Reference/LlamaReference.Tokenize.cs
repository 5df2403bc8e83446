using System.Runtime.InteropServices;
using System.Text;

namespace KQuant.Tests.Reference;

/// <summary>llama.cpp's tokenizer (llama_tokenize of v0.5.0): what a model file's tokenizer metadata makes of a text.
/// Two files tokenize alike when their token ids agree on the same texts.</summary>
public static unsafe partial class LlamaReference
{
    /// <summary>Loads <paramref name="path"/>'s vocabulary only and tokenizes each text as llama.cpp's tools do
    /// (special tokens added as the file says, special-token text not parsed).</summary>
    public static int[][] Tokenize(string path, IReadOnlyList<string> texts, bool addSpecial = true)
    {
        lock (LoadLock)
        {
            Initialize();
            Log.Clear();
            var p = ModelDefaultParams();
            p.NGpuLayers = 0;
            p.VocabOnly = 1;
            var model = ModelLoadFromFile(path, p);
            if (model == IntPtr.Zero) throw new InvalidOperationException($"llama.cpp refused {path}:\n{Log}");
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

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_model_get_vocab")]
    private static partial IntPtr ModelGetVocab(IntPtr model);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_tokenize")]
    private static partial int LlamaTokenize(IntPtr vocab, byte* text, int textLength, int* tokens, int maxTokens, byte addSpecial, byte parseSpecial);
}
