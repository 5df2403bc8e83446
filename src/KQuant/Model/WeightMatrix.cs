using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using KQuant.Gguf;
using KQuant.Model.Kernels;

namespace KQuant.Model;

/// <summary>A weight matrix used in its stored type straight from the memory-mapped file: <see cref="Rows"/> output
/// rows of <see cref="Columns"/> weights. For a 3-D expert tensor, one expert's slice.</summary>
internal sealed unsafe class WeightMatrix
{
    private WeightMatrix(string name, GgmlType type, int rows, int columns, byte* data, long rowBytes, int expert, bool repackable)
    {
        Repacked = repackable && rows % 8 == 0 && MatMul.IsRepackedType(type);
        Name = name;
        Type = type;
        Rows = rows;
        Columns = columns;
        Data = data;
        RowBytes = rowBytes;
        Expert = expert;
        ActivationFormat = ActivationFormats.For(type);
    }

    /// <summary>The tensor's name in the file (e.g. "blk.0.attn_q.weight").</summary>
    public string Name { get; }

    public GgmlType Type { get; }

    public int Rows { get; }

    public int Columns { get; }

    public byte* Data { get; }

    public long RowBytes { get; }

    /// <summary>The expert index for a slice of a 3-D expert tensor, -1 for an ordinary matrix.</summary>
    public int Expert { get; }

    /// <summary>Whether llama.cpp would multiply this matrix repacked (its row count a multiple of 8, a type it repacks,
    /// and not the token embedding, which stays where get_rows can read it); it then adds in another order, which
    /// this matrix follows.</summary>
    public bool Repacked { get; }

    /// <summary>What the activations are converted to before they meet these weights.</summary>
    public ActivationFormat ActivationFormat { get; }

    /// <summary>The matrix of a 2-D tensor (or every expert of a 3-D one stacked, for <see cref="ExpertSlice"/>).</summary>
    public static WeightMatrix FromTensor(GgufFile file, GgufTensorInfo tensor, bool repackable = true)
    {
        var shape = tensor.Shape;
        if (shape.Length is < 2 or > 3) throw new InvalidDataException($"tensor '{tensor.Name}' has {shape.Length} dimensions; a weight matrix needs 2 (or 3 for experts)");
        var rows = tensor.RowCount;
        if (rows > int.MaxValue || shape[0] > int.MaxValue) throw new InvalidDataException($"tensor '{tensor.Name}' is too large");
        // The span points into the file mapping, which does not move: its address stays valid while the file is open.
        var data = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(file.GetTensorBytes(tensor, 0, 1)));
        return new WeightMatrix(tensor.Name, tensor.Type, (int)rows, (int)shape[0], data, tensor.RowByteSize, -1, repackable);
    }

    /// <summary>A matrix over memory the caller owns (benchmarks), repacked as llama.cpp would repack it.</summary>
    internal static WeightMatrix ForBenchmark(GgmlType type, int rows, int columns, byte* data) =>
        new("benchmark", type, rows, columns, data, GgmlTypeTraits.Of(type).RowBytes(columns), -1, repackable: true);

    /// <summary>Expert <paramref name="expert"/> of a 3-D tensor of <paramref name="experts"/> experts.</summary>
    public WeightMatrix ExpertSlice(int expert, int experts)
    {
        var rowsPerExpert = Rows / experts;
        // Expert tensors are multiplied by llama.cpp's mul_mat_id, which takes them as stored.
        return new WeightMatrix(Name, Type, rowsPerExpert, Columns, Data + expert * rowsPerExpert * RowBytes, RowBytes, expert, repackable: false);
    }
}
