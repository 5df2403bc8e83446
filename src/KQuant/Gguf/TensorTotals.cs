namespace KQuant.Gguf;

/// <summary>Parameters, bytes and tensor counts of a set of tensors, in total and per type.</summary>
public sealed record TensorTotals(long Parameters, long Bytes, int Tensors, IReadOnlyList<TensorTotals.TypeTotal> ByType)
{
    public sealed record TypeTotal(GgmlType Type, int Tensors, long Parameters, long Bytes)
    {
        public double BitsPerWeight => Parameters == 0 ? 0 : 8.0 * Bytes / Parameters;
    }

    /// <summary>Average bits per weight over all tensors.</summary>
    public double BitsPerWeight => Parameters == 0 ? 0 : 8.0 * Bytes / Parameters;

    public static TensorTotals Of(IEnumerable<(GgmlType Type, long Elements, long Bytes)> tensors)
    {
        var list = tensors.ToList();
        var byType = list.GroupBy(t => t.Type)
            .Select(g => new TypeTotal(g.Key, g.Count(), g.Sum(t => t.Elements), g.Sum(t => t.Bytes)))
            .OrderByDescending(t => t.Bytes)
            .ToList();
        return new TensorTotals(list.Sum(t => t.Elements), list.Sum(t => t.Bytes), list.Count, byType);
    }

    public static TensorTotals Of(IEnumerable<GgufTensorInfo> tensors) =>
        Of(tensors.Select(t => (t.Type, t.ElementCount, t.ByteSize)));
}
