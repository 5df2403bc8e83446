using KQuant.Gguf;

namespace KQuant.Tests.Conversion;

/// <summary>Compares two GGUF files: tensors by name (type, shape, bytes), metadata key by key.</summary>
public static class GgufComparison
{
    /// <summary>Fails naming the first tensor that differs in presence, type, shape or bytes (order is not compared:
    /// convert_hf_to_gguf.py writes tensors in checkpoint order, other writers in layer order).</summary>
    public static void AssertSameTensors(string expectedPath, string actualPath)
    {
        using var expected = GgufFile.Open(expectedPath);
        using var actual = GgufFile.Open(actualPath);
        Assert.Equal(expected.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal), actual.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        foreach (var e in expected.Tensors)
        {
            var a = actual.FindTensor(e.Name)!;
            Assert.True(e.Type == a.Type, $"{e.Name}: type {a.Type}, expected {e.Type}");
            Assert.True(e.Shape.SequenceEqual(a.Shape), $"{e.Name}: shape [{string.Join(", ", a.Shape)}], expected [{string.Join(", ", e.Shape)}]");
            var eb = expected.GetTensorBytes(e, 0, checked((int)e.ByteSize));
            var ab = actual.GetTensorBytes(a, 0, checked((int)a.ByteSize));
            var mismatch = eb.CommonPrefixLength(ab);
            Assert.True(mismatch == eb.Length, $"{e.Name}: byte {mismatch} of {eb.Length} differs");
        }
    }

    /// <summary>Keys whose values differ, keys only in <paramref name="expectedPath"/> and keys only in <paramref name="actualPath"/>.</summary>
    public static (List<string> Changed, List<string> Missing, List<string> Added) MetadataDifferences(string expectedPath, string actualPath)
    {
        using var expected = GgufFile.Open(expectedPath);
        using var actual = GgufFile.Open(actualPath);
        var e = expected.Metadata.ToDictionary(m => m.Key, m => m.Value);
        var a = actual.Metadata.ToDictionary(m => m.Key, m => m.Value);
        var changed = e.Keys.Where(a.ContainsKey).Where(k => !SameValue(e[k], a[k])).Order(StringComparer.Ordinal).ToList();
        var missing = e.Keys.Where(k => !a.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        var added = a.Keys.Where(k => !e.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        return (changed, missing, added);
    }

    public static bool SameValue(GgufValue x, GgufValue y)
    {
        if (x.Type != y.Type) return false;
        if (x.Type != GgufValueType.Array) return x.ToString() == y.ToString();
        var (ax, ay) = (x.AsArray(), y.AsArray());
        if (ax.ElementType != ay.ElementType || ax.Count != ay.Count) return false;
        if (ax.ElementType == GgufValueType.String)
        {
            for (var i = 0; i < ax.Count; i++)
            {
                if (!ax.GetUtf8(i).SequenceEqual(ay.GetUtf8(i))) return false;
            }
            return true;
        }
        return ax.Zip(ay).All(p => SameValue(p.First, p.Second));
    }
}
