using System.Runtime.InteropServices;
using System.Text;

namespace KQuant.Tests.Reference;

public static unsafe partial class LlamaReference
{
    /// <summary>How a reference context is set up: llama-perplexity's defaults (fp16 KV cache, flash attention as
    /// llama.cpp decides, which on the CPU is on).</summary>
    public sealed record ContextOptions(int ContextSize)
    {
        public int BatchSize { get; init; } = 2048;
        public int Threads { get; init; } = 1;
        public int Sequences { get; init; } = 1;
        /// <summary>Copies every F32 tensor the graph computes, by name (e.g. "attn_norm-0"), into
        /// <see cref="Inference.Captured"/>: for locating where two forward passes part.</summary>
        public bool CaptureTensors { get; init; }
    }

    /// <summary>A model and one context of llama.cpp: tokenizes, decodes batches and returns logits.</summary>
    public sealed class Inference : IDisposable
    {
        private IntPtr _model;
        private IntPtr _context;
        private readonly IntPtr _vocab;
        private GCHandle _self;

        public Inference(string path, ContextOptions options)
        {
            lock (LoadLock)
            {
                Initialize();
                Log.Clear();
                var mp = ModelDefaultParams();
                mp.NGpuLayers = 0;
                _model = ModelLoadFromFile(path, mp);
                if (_model == IntPtr.Zero) throw new InvalidOperationException($"llama.cpp refused {path}:\n{Log}");
                var cp = ContextDefaultParams();
                cp.NCtx = (uint)(options.ContextSize * options.Sequences);
                cp.NBatch = (uint)Math.Min(options.BatchSize, options.ContextSize * options.Sequences);
                cp.NUbatch = cp.NBatch;
                cp.NSeqMax = (uint)options.Sequences;
                cp.NThreads = options.Threads;
                cp.NThreadsBatch = options.Threads;
                cp.NoPerf = 1;
                if (options.CaptureTensors)
                {
                    _self = GCHandle.Alloc(this);
                    cp.CbEval = (IntPtr)(delegate* unmanaged[Cdecl]<IntPtr, byte, IntPtr, byte>)&OnTensor;
                    cp.CbEvalUserData = GCHandle.ToIntPtr(_self);
                }
                _context = InitFromModel(_model, cp);
                if (_context == IntPtr.Zero)
                {
                    ModelFree(_model);
                    throw new InvalidOperationException($"llama.cpp could not create a context for {path}:\n{Log}");
                }
                _vocab = ModelGetVocab(_model);
                VocabSize = VocabNTokens(_vocab);
                AddBos = VocabGetAddBos(_vocab) != 0;
                Bos = VocabBos(_vocab);
                ContextSize = (int)ContextNCtx(_context);
            }
        }

        public int VocabSize { get; }

        /// <summary>Tensors captured during the last decodes when <see cref="ContextOptions.CaptureTensors"/> is set.</summary>
        public Dictionary<string, float[]> Captured { get; } = new(StringComparer.Ordinal);

        /// <summary>Every captured tensor in the order llama.cpp computed them (names repeat: e.g. Qcur before and after RoPE).</summary>
        public List<(string Name, float[] Values)> CapturedInOrder { get; } = [];

        [UnmanagedCallersOnly(CallConvs = [typeof(System.Runtime.CompilerServices.CallConvCdecl)])]
        private static byte OnTensor(IntPtr tensor, byte ask, IntPtr userData)
        {
            if (ask != 0) return 1;
            var self = (Inference)GCHandle.FromIntPtr(userData).Target!;
            // struct ggml_tensor starts with its type; F32 only, which is what the graph's activations are.
            if (Marshal.ReadInt32(tensor) != 0 || TensorIsContiguous(tensor) == 0) return 1;
            var name = Marshal.PtrToStringUTF8(TensorName(tensor))!;
            var values = new ReadOnlySpan<float>((void*)TensorData(tensor), (int)TensorElements(tensor)).ToArray();
            self.Captured[name] = values;
            self.CapturedInOrder.Add((name, values));
            return 1;
        }

        /// <summary>llama_vocab_get_add_bos: whether tokenizing with special tokens puts BOS first.</summary>
        public bool AddBos { get; }

        public int Bos { get; }

        public int ContextSize { get; }

        /// <summary>llama_tokenize as common_tokenize calls it (llama-perplexity: add_special true, parse_special false).</summary>
        public int[] Tokenize(string text, bool addSpecial = true, bool parseSpecial = false)
        {
            var bytes = Encoding.UTF8.GetBytes(text);
            var capacity = bytes.Length + 2;
            while (true)
            {
                var tokens = new int[capacity];
                int n;
                fixed (byte* t = bytes)
                fixed (int* o = tokens)
                {
                    n = LlamaTokenize(_vocab, t, bytes.Length, o, capacity, addSpecial ? (byte)1 : (byte)0, parseSpecial ? (byte)1 : (byte)0);
                }
                if (n >= 0) return tokens[..n];
                capacity = -n;
            }
        }

        /// <summary>Forgets every sequence's cache (llama_memory_clear with data).</summary>
        public void ClearMemory() => MemoryClear(GetMemory(_context), 1);

        /// <summary>Decodes <paramref name="tokens"/> at positions <paramref name="firstPosition"/>... of sequence
        /// <paramref name="sequence"/> in one llama_decode; <paramref name="wantsLogits"/>(i) marks the outputs.
        /// Returns the logits of the marked tokens, in order, as one array of rows.</summary>
        public float[][] Decode(ReadOnlySpan<int> tokens, int firstPosition, Func<int, bool> wantsLogits, int sequence = 0)
        {
            var batch = BatchInit(tokens.Length, 0, 1);
            try
            {
                var outputs = new List<int>();
                for (var i = 0; i < tokens.Length; i++)
                {
                    batch.Token[i] = tokens[i];
                    batch.Pos[i] = firstPosition + i;
                    batch.NSeqId[i] = 1;
                    batch.SeqId[i][0] = sequence;
                    var wants = wantsLogits(i);
                    batch.Logits[i] = wants ? (sbyte)1 : (sbyte)0;
                    if (wants) outputs.Add(i);
                }
                batch.NTokens = tokens.Length;
                var rc = LlamaDecode(_context, batch);
                if (rc != 0) throw new InvalidOperationException($"llama_decode failed ({rc})");
                var result = new float[outputs.Count][];
                for (var k = 0; k < outputs.Count; k++)
                {
                    var row = GetLogitsIth(_context, outputs[k]);
                    result[k] = new ReadOnlySpan<float>(row, VocabSize).ToArray();
                }
                return result;
            }
            finally
            {
                BatchFree(batch);
            }
        }

        public void Dispose()
        {
            if (_context != IntPtr.Zero) ContextFree(_context);
            if (_model != IntPtr.Zero) ModelFree(_model);
            if (_self.IsAllocated) _self.Free();
            _context = IntPtr.Zero;
            _model = IntPtr.Zero;
        }
    }

    /// <summary>struct llama_context_params of llama.h in the v0.5.0 bundle: 160 bytes.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct ContextParams
    {
        public uint NCtx;
        public uint NBatch;
        public uint NUbatch;
        public uint NSeqMax;
        public uint NRsSeq;
        public uint NOutputsMax;
        public uint NOutputsMaxPerSeq;
        public int NThreads;
        public int NThreadsBatch;
        public int CtxType;
        public int RopeScalingType;
        public int PoolingType;
        public int AttentionType;
        public int FlashAttnType;
        public float RopeFreqBase;
        public float RopeFreqScale;
        public float YarnExtFactor;
        public float YarnAttnFactor;
        public float YarnBetaFast;
        public float YarnBetaSlow;
        public uint YarnOrigCtx;
        public float DefragThold;
        public IntPtr CbEval;
        public IntPtr CbEvalUserData;
        public int TypeK;
        public int TypeV;
        public IntPtr AbortCallback;
        public IntPtr AbortCallbackData;
        public byte Embeddings;
        public byte OffloadKqv;
        public byte NoPerf;
        public byte OpOffload;
        public byte SwaFull;
        public byte KvUnified;
        public IntPtr Samplers;
        public nuint NSamplers;
        public IntPtr CtxOther;
    }

    /// <summary>struct llama_batch (llama.h).</summary>
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

    [LibraryImport(GgmlReference.GgmlBase, EntryPoint = "ggml_get_name")]
    private static partial IntPtr TensorName(IntPtr tensor);

    [LibraryImport(GgmlReference.GgmlBase, EntryPoint = "ggml_get_data")]
    private static partial IntPtr TensorData(IntPtr tensor);

    [LibraryImport(GgmlReference.GgmlBase, EntryPoint = "ggml_nelements")]
    private static partial long TensorElements(IntPtr tensor);

    [LibraryImport(GgmlReference.GgmlBase, EntryPoint = "ggml_is_contiguous")]
    private static partial byte TensorIsContiguous(IntPtr tensor);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_context_default_params")]
    internal static partial ContextParams ContextDefaultParams();

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_init_from_model")]
    private static partial IntPtr InitFromModel(IntPtr model, ContextParams parameters);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_free")]
    private static partial void ContextFree(IntPtr context);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_n_ctx")]
    private static partial uint ContextNCtx(IntPtr context);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_get_memory")]
    private static partial IntPtr GetMemory(IntPtr context);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_memory_clear")]
    private static partial void MemoryClear(IntPtr memory, byte data);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_batch_init")]
    private static partial Batch BatchInit(int tokens, int embedding, int sequencesMax);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_batch_free")]
    private static partial void BatchFree(Batch batch);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_decode")]
    private static partial int LlamaDecode(IntPtr context, Batch batch);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_get_logits_ith")]
    private static partial float* GetLogitsIth(IntPtr context, int index);
}
