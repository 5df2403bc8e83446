using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;

namespace KQuant.Benchmarks;

/// <summary>The few libllama calls the perplexity benchmark needs (llama.cpp v0.5.0 from the npm registry, fetched by
/// scripts/fetch-reference.sh): load a model, make a context like llama-perplexity's, tokenize, decode, read logits.</summary>
internal static unsafe partial class LlamaCpp
{
    private const string Llama = "llama";
    private const string Ggml = "ggml";
    private static string _libraryDirectory = "";

    /// <summary>Points the P/Invokes at <paramref name="directory"/> and loads the CPU backend <paramref name="cpu"/>
    /// ("haswell" is the AVX2 build; "best" lets llama.cpp pick the widest this CPU runs).</summary>
    public static void Initialize(string directory, string cpu)
    {
        _libraryDirectory = directory;
        NativeLibrary.SetDllImportResolver(typeof(LlamaCpp).Assembly, Resolve);
        LogSet(&Quiet, null);
        if (cpu == "best") BackendLoadAllFromPath(directory);
        else if (BackendLoad(Path.Combine(directory, $"libggml-cpu-{cpu}.so")) == IntPtr.Zero)
            throw new InvalidOperationException($"could not load llama.cpp's CPU backend {cpu} from {directory}");
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path) => name switch
    {
        Llama => NativeLibrary.Load(Path.Combine(_libraryDirectory, "libllama.v0.5.0.so")),
        Ggml => NativeLibrary.Load(Path.Combine(_libraryDirectory, "libggml.v0.5.0.so")),
        _ => IntPtr.Zero,
    };

    [UnmanagedCallersOnly(CallConvs = [typeof(System.Runtime.CompilerServices.CallConvCdecl)])]
    private static void Quiet(int level, byte* text, void* data)
    {
    }

    /// <summary>A model with one context of <paramref name="contextSize"/> tokens.</summary>
    public sealed class Session : IDisposable
    {
        private IntPtr _model;
        private IntPtr _context;
        private readonly IntPtr _vocab;

        public Session(string path, int contextSize, int threads)
        {
            var mp = ModelDefaultParams();
            _model = ModelLoadFromFile(path, mp);
            if (_model == IntPtr.Zero) throw new InvalidOperationException($"llama.cpp could not load {path}");
            var cp = ContextDefaultParams();
            cp.NCtx = (uint)contextSize;
            cp.NBatch = (uint)contextSize;
            cp.NUbatch = (uint)contextSize;
            cp.NThreads = threads;
            cp.NThreadsBatch = threads;
            cp.NoPerf = 1;
            _context = InitFromModel(_model, cp);
            if (_context == IntPtr.Zero) throw new InvalidOperationException("llama.cpp could not create a context");
            _vocab = ModelGetVocab(_model);
            Vocabulary = VocabNTokens(_vocab);
            Bos = VocabGetAddBos(_vocab) != 0 ? VocabBos(_vocab) : null;
        }

        public int Vocabulary { get; }

        public int? Bos { get; }

        public int[] Tokenize(string text)
        {
            var bytes = Encoding.UTF8.GetBytes(text);
            var tokens = new int[bytes.Length + 2];
            fixed (byte* t = bytes)
            fixed (int* o = tokens)
            {
                var n = LlamaTokenize(_vocab, t, bytes.Length, o, tokens.Length, 1, 0);
                return tokens[..n];
            }
        }

        /// <summary>Evaluates one chunk from an empty cache; copies the logits of positions ≥ <paramref name="first"/>.</summary>
        public void Evaluate(ReadOnlySpan<int> chunk, int first, float[] logits)
        {
            MemoryClear(GetMemory(_context), 1);
            var batch = BatchInit(chunk.Length, 0, 1);
            try
            {
                for (var i = 0; i < chunk.Length; i++)
                {
                    batch.Token[i] = chunk[i];
                    batch.Pos[i] = i;
                    batch.NSeqId[i] = 1;
                    batch.SeqId[i][0] = 0;
                    batch.Logits[i] = i >= first ? (sbyte)1 : (sbyte)0;
                }
                batch.NTokens = chunk.Length;
                if (Decode(_context, batch) != 0) throw new InvalidOperationException("llama_decode failed");
                for (var i = first; i < chunk.Length; i++)
                {
                    new ReadOnlySpan<float>(GetLogitsIth(_context, i), Vocabulary).CopyTo(logits.AsSpan((i - first) * Vocabulary, Vocabulary));
                }
            }
            finally
            {
                BatchFree(batch);
            }
        }

        public void Dispose()
        {
            if (_context != IntPtr.Zero) Free(_context);
            if (_model != IntPtr.Zero) ModelFree(_model);
            _context = _model = IntPtr.Zero;
        }
    }

    // struct llama_model_params (llama.h of the v0.5.0 bundle): 80 bytes.
    [StructLayout(LayoutKind.Sequential, Size = 80)]
    private struct ModelParams
    {
    }

    // struct llama_context_params: 160 bytes; only the leading fields are set here.
    [StructLayout(LayoutKind.Explicit, Size = 160)]
    private struct ContextParams
    {
        [FieldOffset(0)] public uint NCtx;
        [FieldOffset(4)] public uint NBatch;
        [FieldOffset(8)] public uint NUbatch;
        [FieldOffset(28)] public int NThreads;
        [FieldOffset(32)] public int NThreadsBatch;
        [FieldOffset(130)] public byte NoPerf;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Batch
    {
        public int NTokens;
        public int* Token;
        public float* Embd;
        public int* Pos;
        public int* NSeqId;
        public int** SeqId;
        public sbyte* Logits;
    }

    [LibraryImport(Ggml, EntryPoint = "ggml_backend_load_all_from_path", StringMarshalling = StringMarshalling.Utf8)]
    private static partial void BackendLoadAllFromPath(string directory);

    [LibraryImport(Ggml, EntryPoint = "ggml_backend_load", StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr BackendLoad(string path);

    [LibraryImport(Llama, EntryPoint = "llama_log_set")]
    private static partial void LogSet(delegate* unmanaged[Cdecl]<int, byte*, void*, void> callback, void* data);

    [LibraryImport(Llama, EntryPoint = "llama_model_default_params")]
    private static partial ModelParams ModelDefaultParams();

    [LibraryImport(Llama, EntryPoint = "llama_model_load_from_file", StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr ModelLoadFromFile(string path, ModelParams parameters);

    [LibraryImport(Llama, EntryPoint = "llama_model_free")]
    private static partial void ModelFree(IntPtr model);

    [LibraryImport(Llama, EntryPoint = "llama_context_default_params")]
    private static partial ContextParams ContextDefaultParams();

    [LibraryImport(Llama, EntryPoint = "llama_init_from_model")]
    private static partial IntPtr InitFromModel(IntPtr model, ContextParams parameters);

    [LibraryImport(Llama, EntryPoint = "llama_free")]
    private static partial void Free(IntPtr context);

    [LibraryImport(Llama, EntryPoint = "llama_model_get_vocab")]
    private static partial IntPtr ModelGetVocab(IntPtr model);

    [LibraryImport(Llama, EntryPoint = "llama_vocab_n_tokens")]
    private static partial int VocabNTokens(IntPtr vocab);

    [LibraryImport(Llama, EntryPoint = "llama_vocab_get_add_bos")]
    private static partial byte VocabGetAddBos(IntPtr vocab);

    [LibraryImport(Llama, EntryPoint = "llama_vocab_bos")]
    private static partial int VocabBos(IntPtr vocab);

    [LibraryImport(Llama, EntryPoint = "llama_tokenize")]
    private static partial int LlamaTokenize(IntPtr vocab, byte* text, int length, int* tokens, int maxTokens, byte addSpecial, byte parseSpecial);

    [LibraryImport(Llama, EntryPoint = "llama_get_memory")]
    private static partial IntPtr GetMemory(IntPtr context);

    [LibraryImport(Llama, EntryPoint = "llama_memory_clear")]
    private static partial void MemoryClear(IntPtr memory, byte data);

    [LibraryImport(Llama, EntryPoint = "llama_batch_init")]
    private static partial Batch BatchInit(int tokens, int embedding, int sequences);

    [LibraryImport(Llama, EntryPoint = "llama_batch_free")]
    private static partial void BatchFree(Batch batch);

    [LibraryImport(Llama, EntryPoint = "llama_decode")]
    private static partial int Decode(IntPtr context, Batch batch);

    [LibraryImport(Llama, EntryPoint = "llama_get_logits_ith")]
    private static partial float* GetLogitsIth(IntPtr context, int index);
}
