using KQuant.Gguf;
using KQuant.Quantization;
using KQuant.Recipes;
using KQuant.Testing;
using KQuant.Tests.Fixtures;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Quantization;

/// <summary>Quantizes one model with KQuant and with llama.cpp's llama_model_quantize and compares the files.</summary>
public static class QuantizeComparison
{
    /// <summary>Runs both and asserts the same tensor order, types, shapes and bytes, and the same metadata; returns true
    /// when the whole files are byte-identical (they should be).</summary>
    public static bool AssertSame(string model, QuantRecipe recipe, bool withImatrix = false, bool legacyImatrix = false,
        Func<QuantizeRequest, QuantizeRequest>? configure = null, Func<LlamaReference.QuantizeOptions, LlamaReference.QuantizeOptions>? configureReference = null)
    {
        var dir = TestPaths.NewTempDir();
        try
        {
            var ours = Path.Combine(dir, "kquant.gguf");
            var theirs = Path.Combine(dir, "llama.gguf");
            var request = new QuantizeRequest(model, ours, recipe) { Threads = 2, Rounding = KQuant.Quants.RoundingMode.Reference };
            var reference = new LlamaReference.QuantizeOptions(recipe.FileType);
            if (withImatrix)
            {
                var (path, weights) = SyntheticModels.Imatrix(model, legacyImatrix);
                request = request with { ImatrixPath = path };
                // What llama-quantize's main() adds: the file, dataset, entry count and chunk count, in that order.
                reference = reference with
                {
                    Importance = weights,
                    KvOverrides = [(ModelQuantizer.ImatrixFileKey, path), (ModelQuantizer.ImatrixDatasetKey, SyntheticLlamaWriter.ImatrixDataset),
                        (ModelQuantizer.ImatrixEntriesKey, (long)weights.Count), (ModelQuantizer.ImatrixChunksKey, (long)SyntheticLlamaWriter.ImatrixChunks)],
                };
            }
            if (configure is not null) request = configure(request);
            if (configureReference is not null) reference = configureReference(reference);

            ModelQuantizer.Run(request);
            LlamaReference.Quantize(model, theirs, reference);
            return AssertSameFiles(ours, theirs, $"{Path.GetFileName(model)} {recipe.Name}{(withImatrix ? " imatrix" : "")}");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    public static bool AssertSameFiles(string ours, string theirs, string what)
    {
        using (var a = GgufFile.Open(ours))
        using (var b = GgufFile.Open(theirs))
        {
            Assert.Equal(b.Metadata.Select(e => e.Key), a.Metadata.Select(e => e.Key));
            foreach (var (ea, eb) in a.Metadata.Zip(b.Metadata))
            {
                Assert.True(ea.Value.Type == eb.Value.Type && ea.Value.ToString() == eb.Value.ToString(),
                    $"{what}: metadata {ea.Key}: ours {ea.Value.Type} {ea.Value}, llama.cpp {eb.Value.Type} {eb.Value}");
            }
            Assert.Equal(b.Tensors.Select(t => t.Name), a.Tensors.Select(t => t.Name));
            foreach (var (ta, tb) in a.Tensors.Zip(b.Tensors))
            {
                Assert.True(ta.Type == tb.Type, $"{what}: {ta.Name} is {ta.Traits.Name} in ours, {tb.Traits.Name} in llama.cpp's");
                Assert.Equal(tb.Shape, ta.Shape);
                Assert.Equal(tb.Offset, ta.Offset);
                for (long offset = 0; offset < ta.ByteSize; offset += 1 << 20)
                {
                    var n = (int)Math.Min(1 << 20, ta.ByteSize - offset);
                    var x = a.GetTensorBytes(ta, offset, n);
                    var y = b.GetTensorBytes(tb, offset, n);
                    if (!x.SequenceEqual(y))
                    {
                        var i = 0;
                        while (x[i] == y[i]) i++;
                        var at = offset + i;
                        Assert.Fail($"{what}: {ta.Name} ({ta.Traits.Name}) differs at byte {at} (row {at / ta.RowByteSize}, block {at % ta.RowByteSize / ta.Traits.BytesPerBlock}): ours {x[i]:x2}, llama.cpp {y[i]:x2}");
                    }
                }
            }
        }
        return FileComparison.SameBytes(ours, theirs);
    }
}
