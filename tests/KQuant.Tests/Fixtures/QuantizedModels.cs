using KQuant.Quantization;
using KQuant.Quants;
using KQuant.Recipes;
using KQuant.Tests.Reference;

namespace KQuant.Tests.Fixtures;

/// <summary>Quantized variants of a model made with KQuant's ModelQuantizer (byte-identical to llama-quantize), once per
/// process and cached in the temp folder, so the forward pass can be compared with llama.cpp on the same file.</summary>
public static class QuantizedModels
{
    private static readonly Lock Gate = new();

    /// <summary>The path of <paramref name="source"/> quantized with recipe <paramref name="recipe"/> (e.g. "Q4_K_M");
    /// "F32"/"F16" with an existing file of that precision next to it return that file. <paramref name="pure"/> gives
    /// every tensor the recipe's base type (llama-quantize --pure); <paramref name="rounding"/> chooses KQuant's rounding path.</summary>
    public static string Get(string source, string recipe, bool pure = false, RoundingMode rounding = RoundingMode.Reference)
    {
        var sibling = Sibling(source, recipe);
        if (!pure && rounding == RoundingMode.Reference && File.Exists(sibling)) return sibling;
        if (!QuantRecipe.TryParse(recipe, out var parsed)) throw new ArgumentException($"unknown recipe {recipe}");
        var dir = Path.Combine(Path.GetTempPath(), "kquant-tests", "quantized");
        Directory.CreateDirectory(dir);
        var info = new FileInfo(source);
        var name = $"{Path.GetFileNameWithoutExtension(source)}-{info.Length:x}-{parsed.Name}{(pure ? "-pure" : "")}{(rounding == RoundingMode.Optimal ? "-optimal" : "")}.gguf";
        var path = Path.Combine(dir, name);
        lock (Gate)
        {
            if (!File.Exists(path))
            {
                var temporary = path + $".{Environment.ProcessId}.tmp";
                ModelQuantizer.Run(new QuantizeRequest(source, temporary, parsed) { Pure = pure, Threads = 2, Overwrite = true, Rounding = rounding });
                File.Move(temporary, path, overwrite: true);
            }
        }
        return path;
    }

    /// <summary>The shared model's F32 file quantized with <paramref name="recipe"/> (or the shared F32/F16 file).</summary>
    public static string Shared(string f32Model, string recipe, bool pure = false, RoundingMode rounding = RoundingMode.Reference) =>
        Get(TestPaths.RequireShared(f32Model), recipe, pure, rounding);

    private static string Sibling(string source, string precision)
    {
        var name = Path.GetFileName(source);
        var tag = name.LastIndexOf("-F32", StringComparison.Ordinal);
        return tag < 0 ? "" : Path.Combine(Path.GetDirectoryName(source)!, name[..tag] + "-" + precision + name[(tag + 4)..]);
    }
}
