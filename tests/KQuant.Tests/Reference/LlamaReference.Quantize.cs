using System.Runtime.InteropServices;
using System.Text;
using KQuant.Gguf;
using KQuant.Recipes;

namespace KQuant.Tests.Reference;

public static unsafe partial class LlamaReference
{
    /// <summary>What llama-quantize (tools/quantize/quantize.cpp of v0.5.0) hands to llama_model_quantize.</summary>
    public sealed record QuantizeOptions(LlamaFileType FileType)
    {
        public int Threads { get; init; } = 2;
        public bool Pure { get; init; }
        public bool LeaveOutputTensor { get; init; }
        public bool AllowRequantize { get; init; }
        public GgmlType? OutputTensorType { get; init; }
        public GgmlType? TokenEmbeddingType { get; init; }
        /// <summary>(pattern, type) in order; llama-quantize lower-cases patterns before passing them.</summary>
        public IReadOnlyList<(string Pattern, GgmlType Type)> TensorTypes { get; init; } = [];
        /// <summary>Per-tensor importance weights (sums / count), already filtered as llama-quantize filters them.</summary>
        public IReadOnlyDictionary<string, float[]>? Importance { get; init; }
        /// <summary>Metadata overrides in llama-quantize's order: the user's, then quantize.imatrix.* ones.</summary>
        public IReadOnlyList<(string Key, object Value)> KvOverrides { get; init; } = [];
    }

    /// <summary>Runs llama_model_quantize of the reference and returns llama.cpp's log of the call (read under the lock
    /// that serialises calls, so a parallel test's call cannot replace it). Throws with that log when it fails.</summary>
    public static string Quantize(string input, string output, QuantizeOptions o)
    {
        lock (LoadLock)
        {
            Initialize();
            Log.Clear();
            var handles = new List<GCHandle>();
            var strings = new List<IntPtr>();
            IntPtr Utf8(string s)
            {
                var p = Marshal.StringToCoTaskMemUTF8(s);
                strings.Add(p);
                return p;
            }
            try
            {
                var p = QuantizeDefaultParams();
                p.NThread = o.Threads;
                p.FileType = (int)o.FileType;
                p.OutputTensorType = o.OutputTensorType is { } ot ? (int)ot : GgmlTypeCount;
                p.TokenEmbeddingType = o.TokenEmbeddingType is { } et ? (int)et : GgmlTypeCount;
                p.AllowRequantize = (byte)(o.AllowRequantize ? 1 : 0);
                p.QuantizeOutputTensor = (byte)(o.LeaveOutputTensor ? 0 : 1);
                p.Pure = (byte)(o.Pure ? 1 : 0);

                if (o.Importance is { Count: > 0 } importance)
                {
                    var entries = new ImatrixData[importance.Count + 1];
                    var i = 0;
                    foreach (var (name, values) in importance)
                    {
                        var h = GCHandle.Alloc(values, GCHandleType.Pinned);
                        handles.Add(h);
                        entries[i++] = new ImatrixData { Name = Utf8(name), Data = h.AddrOfPinnedObject(), Size = (nuint)values.Length };
                    }
                    var eh = GCHandle.Alloc(entries, GCHandleType.Pinned);
                    handles.Add(eh);
                    p.Imatrix = eh.AddrOfPinnedObject();
                }
                if (o.KvOverrides.Count > 0)
                {
                    var kvs = new KvOverride[o.KvOverrides.Count + 1]; // zeroed terminator: key[0] == 0
                    for (var k = 0; k < o.KvOverrides.Count; k++) kvs[k] = KvOverride.Create(o.KvOverrides[k].Key, o.KvOverrides[k].Value);
                    var kh = GCHandle.Alloc(kvs, GCHandleType.Pinned);
                    handles.Add(kh);
                    p.KvOverrides = kh.AddrOfPinnedObject();
                }
                if (o.TensorTypes.Count > 0)
                {
                    var tts = new TensorOverride[o.TensorTypes.Count + 1];
                    for (var k = 0; k < o.TensorTypes.Count; k++) tts[k] = new TensorOverride { Pattern = Utf8(o.TensorTypes[k].Pattern), Type = (int)o.TensorTypes[k].Type };
                    tts[^1] = new TensorOverride { Pattern = IntPtr.Zero, Type = GgmlTypeCount };
                    var th = GCHandle.Alloc(tts, GCHandleType.Pinned);
                    handles.Add(th);
                    p.TensorOverrides = th.AddrOfPinnedObject();
                }
                var rc = ModelQuantize(input, output, &p);
                if (rc != 0) throw new InvalidOperationException($"llama_model_quantize failed ({rc}):\n{Log}");
                lock (Log) return Log.ToString();
            }
            finally
            {
                foreach (var h in handles) h.Free();
                foreach (var s in strings) Marshal.FreeCoTaskMem(s);
            }
        }
    }

    private const int GgmlTypeCount = 43;

    /// <summary>struct llama_model_quantize_params of llama.h in the v0.5.0 bundle: 64 bytes, max_buf_size at 0x38.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct QuantizeParams
    {
        public int NThread;
        public int FileType;
        public int OutputTensorType;
        public int TokenEmbeddingType;
        public byte AllowRequantize;
        public byte QuantizeOutputTensor;
        public byte OnlyCopy;
        public byte Pure;
        public byte KeepSplit;
        public byte DryRun;
        public IntPtr Imatrix;
        public IntPtr KvOverrides;
        public IntPtr TensorOverrides;
        public IntPtr PruneLayers;
        public nuint MaxBufSize;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct ImatrixData
    {
        public IntPtr Name;
        public IntPtr Data;
        public nuint Size;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct TensorOverride
    {
        public IntPtr Pattern;
        public int Type;
    }

    /// <summary>struct llama_model_kv_override: tag, char key[128], then a 128-byte union (8-byte aligned): 264 bytes.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 264)]
    private struct KvOverride
    {
        [FieldOffset(0)] public int Tag;
        [FieldOffset(4)] public fixed byte Key[128];
        [FieldOffset(136)] public long I64;
        [FieldOffset(136)] public double F64;
        [FieldOffset(136)] public fixed byte Str[128];

        public static KvOverride Create(string key, object value)
        {
            var kv = new KvOverride();
            var k = Encoding.UTF8.GetBytes(key);
            for (var i = 0; i < Math.Min(k.Length, 127); i++) kv.Key[i] = k[i];
            switch (value)
            {
                case long l: kv.Tag = 0; kv.I64 = l; break;
                case int n: kv.Tag = 0; kv.I64 = n; break;
                case double d: kv.Tag = 1; kv.F64 = d; break;
                case bool b: kv.Tag = 2; kv.I64 = b ? 1 : 0; break;
                case string s:
                    kv.Tag = 3;
                    var v = Encoding.UTF8.GetBytes(s);
                    for (var i = 0; i < Math.Min(v.Length, 127); i++) kv.Str[i] = v[i];
                    break;
                default: throw new ArgumentException($"unsupported override value {value}");
            }
            return kv;
        }
    }

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_model_quantize_default_params")]
    private static partial QuantizeParams QuantizeDefaultParams();

    [LibraryImport(GgmlReference.Llama, EntryPoint = "llama_model_quantize", StringMarshalling = StringMarshalling.Utf8)]
    private static partial uint ModelQuantize(string input, string output, QuantizeParams* parameters);
}
