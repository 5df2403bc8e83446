using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace KQuant.Tests.Reference;

/// <summary>P/Invoke into libllama.v0.5.0.so of the reference (npm @node-llama-cpp/linux-x64@3.22.1): a real client that
/// must load every file KQuant writes. Library names resolve through <see cref="GgmlReference"/>'s resolver.</summary>
public static unsafe partial class LlamaReference
{
    private const string LibraryFile = "libllama.v0.5.0.so";

    private static readonly Lock LoadLock = new();
    private static readonly StringBuilder Log = new();
    private static bool _initialized;

    /// <summary>What llama.cpp reports about a model it loaded.</summary>
    public sealed record LoadedModel(ulong ParameterCount, string Description, string? Name);

    public static bool Available => File.Exists(Path.Combine(TestPaths.ReferenceLibDir, LibraryFile));

    /// <summary>Skips the calling test when the reference has not been fetched (run scripts/fetch-reference.sh).</summary>
    public static void Require() =>
        Skip.IfNot(Available, $"needs {LibraryFile} of the llama.cpp reference in {TestPaths.ReferenceLibDir}; run scripts/fetch-reference.sh");

    /// <summary>Loads <paramref name="path"/> as llama.cpp does (CPU only, every tensor's data checked by
    /// ggml_validate_row_data), reads a few facts and frees it. Throws with llama.cpp's log when it refuses the file.</summary>
    public static LoadedModel Load(string path, bool vocabOnly = false)
    {
        lock (LoadLock)
        {
            Initialize();
            Log.Clear();
            var p = ModelDefaultParams();
            p.NGpuLayers = 0;
            p.VocabOnly = vocabOnly ? (byte)1 : (byte)0;
            p.CheckTensors = 1;
            var model = ModelLoadFromFile(path, p);
            if (model == IntPtr.Zero)
                throw new InvalidOperationException($"llama.cpp refused {path}:\n{Log}");
            try
            {
                return new LoadedModel(ModelNParams(model), Describe(model), MetaString(model, "general.name"));
            }
            finally
            {
                ModelFree(model);
            }
        }
    }

    private static void Initialize()
    {
        if (_initialized) return;
        GgmlReference.EnsureResolver();
        LogSet(&Capture, null);
        // The CPU backend is a plug-in built per instruction set, and the builds do not compute alike (AVX-512 ones
        // use another exp and repack more weight types). KQuant's kernels are AVX2 ones, so the reference is llama.cpp's
        // AVX2 build, "haswell", the one it runs on an AVX2 machine, even where a wider one would load.
        // KQUANT_REFERENCE_CPU names another build ("best" lets llama.cpp choose).
        var variant = Environment.GetEnvironmentVariable("KQUANT_REFERENCE_CPU") is { Length: > 0 } v ? v
            : System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported ? "haswell" : "best";
        if (variant == "best") BackendLoadAllFromPath(TestPaths.ReferenceLibDir);
        else if (BackendLoad(Path.Combine(TestPaths.ReferenceLibDir, $"libggml-cpu-{variant}.so")) == IntPtr.Zero)
            throw new InvalidOperationException($"could not load llama.cpp's CPU backend '{variant}':\n{Log}");
        _initialized = true;
    }

    // llama.cpp logs to stderr by default; keep it for failure messages instead.
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Capture(int level, byte* text, void* userData)
    {
        if (text == null) return;
        lock (Log) Log.Append(Marshal.PtrToStringUTF8((IntPtr)text));
    }

    private static string Describe(IntPtr model)
    {
        var buffer = stackalloc byte[256];
        var n = ModelDesc(model, buffer, 256);
        return n < 0 ? "" : Encoding.UTF8.GetString(buffer, Math.Min(n, 255));
    }

    private static string? MetaString(IntPtr model, string key)
    {
        var buffer = stackalloc byte[1024];
        var n = ModelMetaValStr(model, key, buffer, 1024);
        return n < 0 ? null : Encoding.UTF8.GetString(buffer, Math.Min(n, 1023));
    }

    /// <summary>struct llama_model_params of llama.h in the v0.5.0 bundle: 80 bytes.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct ModelParams
    {
        public IntPtr Devices;
        public IntPtr TensorBuftOverrides;
        public int NGpuLayers;
        public int SplitMode;
        public int LoadMode;
        public int LazyMode;
        public int MainGpu;
        public IntPtr TensorSplit;
        public IntPtr ProgressCallback;
        public IntPtr ProgressCallbackUserData;
        public IntPtr KvOverrides;
        public byte VocabOnly;
        public byte CheckTensors;
        public byte UseExtraBufts;
        public byte NoHost;
        public byte NoAlloc;
        public byte LoadMtp;
    }

    [LibraryImport(GgmlReference.Ggml, EntryPoint = "ggml_backend_load_all_from_path", StringMarshalling = StringMarshalling.Utf8)]
    private static partial void BackendLoadAllFromPath(string directory);

    [LibraryImport(GgmlReference.Ggml, EntryPoint = "ggml_backend_load", StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr BackendLoad(string path);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_log_set")]
    private static partial void LogSet(delegate* unmanaged[Cdecl]<int, byte*, void*, void> callback, void* userData);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_model_default_params")]
    internal static partial ModelParams ModelDefaultParams();

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_model_load_from_file", StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr ModelLoadFromFile(string path, ModelParams parameters);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_model_free")]
    private static partial void ModelFree(IntPtr model);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_model_n_params")]
    private static partial ulong ModelNParams(IntPtr model);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_model_desc")]
    private static partial int ModelDesc(IntPtr model, byte* buffer, nuint size);

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_model_meta_val_str", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int ModelMetaValStr(IntPtr model, string key, byte* buffer, nuint size);
}
