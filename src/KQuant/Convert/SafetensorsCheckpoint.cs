using System.Collections.ObjectModel;
using System.Text.Json;

namespace KQuant.Conversion;

/// <summary>The weights of a Hugging Face model folder: one model.safetensors, or shards listed by
/// model.safetensors.index.json (or, without an index, every model*.safetensors). Tensors are listed in the order
/// convert_hf_to_gguf.py reads them: shard files in name order, each shard's tensors in name order. A tensor name may
/// appear in one shard only, and an index must match the shards exactly.</summary>
public sealed class SafetensorsCheckpoint : IDisposable
{
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly Dictionary<string, (SafetensorsFile File, SafetensorsTensor Tensor)> _byName;

    private SafetensorsCheckpoint(string folder, List<SafetensorsFile> files)
    {
        Folder = folder;
        Files = new ReadOnlyCollection<SafetensorsFile>(files);
        _byName = new(StringComparer.Ordinal);
        var tensors = new List<SafetensorsTensor>();
        foreach (var file in files)
        {
            foreach (var t in file.Tensors)
            {
                if (!_byName.TryAdd(t.Name, (file, t)))
                    throw new SafetensorsFormatException(file.Path, $"tensor '{t.Name}' is also in {_byName[t.Name].File.Path}; a tensor must be in one shard only");
                tensors.Add(t);
            }
        }
        Tensors = new ReadOnlyCollection<SafetensorsTensor>(tensors);
    }

    public string Folder { get; }

    public IReadOnlyList<SafetensorsFile> Files { get; }

    public IReadOnlyList<SafetensorsTensor> Tensors { get; }

    public static SafetensorsCheckpoint Open(string folder)
    {
        folder = Path.GetFullPath(folder);
        var indexPath = Path.Combine(folder, IndexFileName);
        Dictionary<string, string>? weightMap = null;
        List<string> names;
        if (File.Exists(indexPath))
        {
            weightMap = ReadWeightMap(indexPath);
            names = [.. weightMap.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)];
            foreach (var name in names)
            {
                if (!File.Exists(Path.Combine(folder, name)))
                    throw new FileNotFoundException($"{indexPath} lists shard {name}, which is not in {folder}", Path.Combine(folder, name));
            }
        }
        else
        {
            names = [.. Directory.EnumerateFiles(folder, "model*.safetensors").Select(f => Path.GetFileName(f)!).Order(StringComparer.Ordinal)];
            if (names.Count == 0)
                throw new FileNotFoundException($"{folder} has no model.safetensors (nor {IndexFileName}); KQuant reads safetensors checkpoints only (not pytorch_model.bin)",
                    Path.Combine(folder, "model.safetensors"));
        }

        var files = new List<SafetensorsFile>();
        try
        {
            foreach (var name in names) files.Add(SafetensorsFile.Open(Path.Combine(folder, name)));
            var checkpoint = new SafetensorsCheckpoint(folder, files);
            if (weightMap is not null) checkpoint.CheckAgainstIndex(indexPath, weightMap);
            return checkpoint;
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
    }

    public SafetensorsTensor? Find(string name) => _byName.TryGetValue(name, out var entry) ? entry.Tensor : null;

    /// <summary><paramref name="length"/> bytes of <paramref name="tensor"/>'s data from <paramref name="offset"/>.</summary>
    public ReadOnlySpan<byte> GetBytes(SafetensorsTensor tensor, long offset, int length)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!_byName.TryGetValue(tensor.Name, out var entry) || !ReferenceEquals(entry.Tensor, tensor))
            throw new ArgumentException($"tensor '{tensor.Name}' is not from {Folder}", nameof(tensor));
        return entry.File.GetBytes(tensor, offset, length);
    }

    public void Dispose()
    {
        foreach (var f in Files) f.Dispose();
    }

    private static Dictionary<string, string> ReadWeightMap(string indexPath)
    {
        JsonElement root;
        try
        {
            root = HfJson.ReadObject(indexPath);
        }
        catch (InvalidDataException e)
        {
            throw new SafetensorsFormatException(indexPath, e.Message[(indexPath.Length + 2)..]);
        }
        if (!root.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
            throw new SafetensorsFormatException(indexPath, "no \"weight_map\" object mapping tensor names to shard files");
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in map.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String)
                throw new SafetensorsFormatException(indexPath, $"weight_map entry '{entry.Name}' is a JSON {entry.Value.ValueKind}, expected a file name");
            var file = entry.Value.GetString()!;
            // Shards are plain files beside the index; a path could read anything on the machine.
            if (file.Length == 0 || file != Path.GetFileName(file) || file is "." or "..")
                throw new SafetensorsFormatException(indexPath, $"weight_map entry '{entry.Name}' names '{file}', which is not a file name in the model folder");
            if (!result.TryAdd(entry.Name, file))
                throw new SafetensorsFormatException(indexPath, $"weight_map lists tensor '{entry.Name}' twice");
        }
        if (result.Count == 0) throw new SafetensorsFormatException(indexPath, "weight_map is empty");
        return result;
    }

    private void CheckAgainstIndex(string indexPath, Dictionary<string, string> weightMap)
    {
        foreach (var (name, file) in weightMap)
        {
            if (!_byName.TryGetValue(name, out var entry))
                throw new SafetensorsFormatException(indexPath, $"weight_map puts tensor '{name}' in {file}, which does not hold it");
            if (Path.GetFileName(entry.File.Path) != file)
                throw new SafetensorsFormatException(indexPath, $"weight_map puts tensor '{name}' in {file}, but it is in {Path.GetFileName(entry.File.Path)}");
        }
        foreach (var t in Tensors)
        {
            if (!weightMap.ContainsKey(t.Name))
                throw new SafetensorsFormatException(indexPath, $"tensor '{t.Name}' of {Path.GetFileName(t.FilePath)} is missing from weight_map");
        }
    }
}
