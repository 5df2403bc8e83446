using System.Runtime.InteropServices;
using KQuant.Gguf;

namespace KQuant.Tests.Gguf;

/// <summary>Test-side conversions that exercise the writer the way the quantizer will: some tensors change type.</summary>
internal static class GgufConversion
{
    /// <summary>Rewrites <paramref name="input"/> with the F16 tensor <paramref name="tensorName"/> widened to F32 and
    /// general.name set to <paramref name="newName"/>; everything else is copied as it is.</summary>
    public static void RewriteWithF32Tensor(GgufFile input, string output, string tensorName, string newName)
    {
        var metadata = new GgufMetadata(input.Metadata);
        metadata.Set("general.name", GgufValue.FromString(newName));
        var tensors = input.Tensors.Select(t => t.Name == tensorName ? t.WithType(GgmlType.F32) : t);
        using var writer = new GgufWriter(output, metadata, tensors, inputPaths: [input.Path]);
        foreach (var t in input.Tensors)
        {
            if (t.Name != tensorName)
            {
                writer.CopyTensorFrom(input, t);
                continue;
            }
            if (t.Type != GgmlType.F16) throw new ArgumentException($"{t} is not F16");
            var row = new float[t.RowLength];
            for (long r = 0; r < t.RowCount; r++)
            {
                var halves = MemoryMarshal.Cast<byte, Half>(input.GetRows(t, r, 1));
                for (var i = 0; i < row.Length; i++) row[i] = (float)halves[i];
                writer.WriteTensorData(MemoryMarshal.AsBytes(row.AsSpan()));
            }
        }
        writer.Commit();
    }
}
