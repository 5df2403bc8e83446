using System.Buffers.Binary;
using System.Text;
using KQuant.Conversion;
using KQuant.Tests.Reference;
using Xunit.Abstractions;

namespace KQuant.Tests.Conversion;

public sealed class SafetensorsFileTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static List<HfFolderBuilder.Tensor> SmallTensors() =>
    [
        new("b.weight", SafetensorsDtype.F32, [2, 3], [1, 2, 3, 4, 5, 6]),
        new("a.bias", SafetensorsDtype.F16, [3], [0.5f, -1, 2]),
        new("c.weight", SafetensorsDtype.BF16, [2, 2], [1, -2, 3.5f, 0]),
    ];

    [Fact]
    public void ReadsTensorsSortedByNameWithTheirBytes()
    {
        var path = Path.Combine(_dir, "model.safetensors");
        File.WriteAllBytes(path, HfFolderBuilder.Safetensors(SmallTensors()));
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(["a.bias", "b.weight", "c.weight"], file.Tensors.Select(t => t.Name));
        Assert.Equal("pt", file.Metadata["format"]);
        var b = file.Find("b.weight")!;
        Assert.Equal(SafetensorsDtype.F32, b.Dtype);
        Assert.Equal([2L, 3], b.Shape);
        Assert.Equal(6f, BinaryPrimitives.ReadSingleLittleEndian(file.GetBytes(b, 20, 4)));
        Assert.Equal((Half)(-1), BinaryPrimitives.ReadHalfLittleEndian(file.GetBytes(file.Find("a.bias")!, 2, 2)));
    }

    public static TheoryData<string, string> MalformedHeaders => new()
    {
        { "not json", "does not start with '{'" },
        { "{not json}", "not valid JSON" },
        { """{"t": [1, 2]}""", "expected an object" },
        { """{"t": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}""", "unknown dtype 'F33'" },
        { """{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}""", "takes 8 bytes, but data_offsets [0, 4] span 4" },
        { """{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4000]}}""", "lie outside the data section" },
        { """{"t": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}""", "end before they begin" },
        { """{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "u": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}}""", "overlap" },
        { """{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}""", "names tensor 't' twice" },
        { """{"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}""", "expected a non-negative integer" },
        { """{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "extra": 1}}""", "unexpected field 'extra'" },
        { """{"t": {"dtype": "F32", "shape": [1]}}""", "data_offsets" },
        { """{"__metadata__": {"format": 1}}""", "expected a string" },
        { """{"t": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 4]}}""", "more elements" },
    };

    [Theory]
    [MemberData(nameof(MalformedHeaders))]
    public void AMalformedHeaderIsOneErrorNamingTheFile(string header, string expected)
    {
        var path = Path.Combine(_dir, "bad.safetensors");
        File.WriteAllBytes(path, HfFolderBuilder.Safetensors([new("t", SafetensorsDtype.F32, [2], [1, 2])], header));
        var e = Assert.Throws<SafetensorsFormatException>(() => SafetensorsFile.Open(path));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void AHeaderLengthBeyondTheFileIsReported()
    {
        var path = Path.Combine(_dir, "short.safetensors");
        var image = HfFolderBuilder.Safetensors(SmallTensors());
        BinaryPrimitives.WriteUInt64LittleEndian(image, (ulong)image.Length);
        File.WriteAllBytes(path, image);
        Assert.Contains($"header length {image.Length} is larger than the file ({image.Length} bytes)", Assert.Throws<SafetensorsFormatException>(() => SafetensorsFile.Open(path)).Message);
        File.WriteAllBytes(path, [1, 2, 3]);
        Assert.Contains("fewer than the 8-byte header length", Assert.Throws<SafetensorsFormatException>(() => SafetensorsFile.Open(path)).Message);
    }

    [Fact]
    public void ShardsAreReadThroughTheIndexAndCheckedAgainstIt()
    {
        var tensors = SmallTensors();
        var folder = HfFolderBuilder.Write(Path.Combine(_dir, "sharded"), "{}", tensors, shards: 2);
        using (var checkpoint = SafetensorsCheckpoint.Open(folder))
        {
            Assert.Equal(2, checkpoint.Files.Count);
            // Shards in name order, each shard's tensors in name order (as convert_hf_to_gguf.py reads them).
            Assert.Equal(["b.weight", "c.weight", "a.bias"], checkpoint.Tensors.Select(t => t.Name));
            Assert.Equal(tensors[2].Shape, checkpoint.Find("c.weight")!.Shape);
        }

        var index = Path.Combine(folder, SafetensorsCheckpoint.IndexFileName);
        var text = File.ReadAllText(index);
        File.WriteAllText(index, text.Replace("\"a.bias\":\"model-00002-of-00002.safetensors\"", "\"a.bias\":\"model-00001-of-00002.safetensors\""));
        Assert.Contains("weight_map puts tensor 'a.bias' in model-00001-of-00002.safetensors, which does not hold it",
            Assert.Throws<SafetensorsFormatException>(() => SafetensorsCheckpoint.Open(folder)).Message);
        File.WriteAllText(index, text.Replace("model-00002-of-00002.safetensors", "model-00003-of-00002.safetensors"));
        Assert.Contains("lists shard model-00003-of-00002.safetensors", Assert.Throws<FileNotFoundException>(() => SafetensorsCheckpoint.Open(folder)).Message);
        File.WriteAllText(index, text.Replace("model-00002-of-00002.safetensors", "../model.safetensors"));
        Assert.Contains("not a file name in the model folder", Assert.Throws<SafetensorsFormatException>(() => SafetensorsCheckpoint.Open(folder)).Message);
    }

    [Fact]
    public void ATensorInTwoShardsNamesBothFiles()
    {
        var folder = Path.Combine(_dir, "dup");
        Directory.CreateDirectory(folder);
        File.WriteAllBytes(Path.Combine(folder, "model-1.safetensors"), HfFolderBuilder.Safetensors(SmallTensors()));
        File.WriteAllBytes(Path.Combine(folder, "model-2.safetensors"), HfFolderBuilder.Safetensors([SmallTensors()[0]]));
        var e = Assert.Throws<SafetensorsFormatException>(() => SafetensorsCheckpoint.Open(folder));
        Assert.Contains("model-2.safetensors: tensor 'b.weight' is also in", e.Message);
        Assert.Contains("model-1.safetensors", e.Message);
    }

    [Fact]
    public void AFolderWithoutSafetensorsSaysWhatIsMissing()
    {
        var e = Assert.Throws<FileNotFoundException>(() => SafetensorsCheckpoint.Open(_dir));
        Assert.Contains("has no model.safetensors", e.Message);
        Assert.Contains("pytorch_model.bin", e.Message);
    }

    /// <summary>Seeded mutations of a valid header (byte flips, truncations, splices of JSON fragments, changed lengths):
    /// each variant opens, and then every tensor's bytes are readable, or throws <see cref="SafetensorsFormatException"/>.</summary>
    [Fact]
    public void MutatedHeadersOpenOrFailWithAFormatException()
    {
        const int seed = 0x5AFE, variants = 4000;
        var original = HfFolderBuilder.Safetensors(SmallTensors());
        var headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(original);
        string[] fragments = ["{", "}", "[", "]", ",", ":", "\"", "0", "-1", "1e400", "18446744073709551615", "null", "true", "\"F32\"", "\"BF16\"",
            "\"I64\"", "\"dtype\"", "\"shape\"", "\"data_offsets\"", "[0,0]", "[]", "\\u0000", "\"__metadata__\"", "9223372036854775807"];
        var rng = new Random(seed);
        int opened = 0, refused = 0;
        var failures = new List<string>();
        for (var v = 0; v < variants && failures.Count < 5; v++)
        {
            var image = Mutate(original, headerLength, rng, fragments);
            try
            {
                using var file = SafetensorsFile.Open(image, "fuzz.safetensors");
                foreach (var t in file.Tensors)
                {
                    if (t.ByteLength <= int.MaxValue) _ = file.GetBytes(t, 0, (int)t.ByteLength).ToArray();
                }
                opened++;
            }
            catch (SafetensorsFormatException)
            {
                refused++;
            }
            catch (Exception e)
            {
                failures.Add($"seed {seed} variant {v}: {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
            }
        }
        output.WriteLine($"{variants} variants: {opened} opened, {refused} refused");
        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
        Assert.True(opened > variants / 50 && refused > variants / 2, $"{opened} opened, {refused} refused");
    }

    private static byte[] Mutate(byte[] original, int headerLength, Random rng, string[] fragments)
    {
        var header = Encoding.UTF8.GetString(original, 8, headerLength).TrimEnd();
        var data = original.AsSpan(8 + headerLength).ToArray();
        string newHeader = header;
        var declaredLength = (long?)null;
        switch (rng.Next(6))
        {
            case 0: // overwrite a byte
                var chars = header.ToCharArray();
                chars[rng.Next(chars.Length)] = (char)rng.Next(32, 127);
                newHeader = new string(chars);
                break;
            case 1: // splice a fragment in
                var at = rng.Next(header.Length);
                newHeader = header[..at] + fragments[rng.Next(fragments.Length)] + header[at..];
                break;
            case 2: // replace a number
                var digits = System.Text.RegularExpressions.Regex.Matches(header, "[0-9]+");
                var m = digits[rng.Next(digits.Count)];
                newHeader = header[..m.Index] + fragments[rng.Next(fragments.Length)] + header[(m.Index + m.Length)..];
                break;
            case 3: // cut the header short
                newHeader = header[..rng.Next(header.Length)];
                break;
            case 4: // lie about the header length
                declaredLength = rng.Next(3) switch { 0 => rng.Next(0, headerLength + data.Length + 16), 1 => long.MaxValue, _ => (long)headerLength + rng.Next(-8, 9) };
                break;
            default: // truncate the data
                data = data[..rng.Next(data.Length + 1)];
                break;
        }
        var json = Encoding.UTF8.GetBytes(newHeader);
        var image = new byte[8 + json.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(image, (ulong)(declaredLength ?? json.Length));
        json.CopyTo(image, 8);
        data.CopyTo(image, 8 + json.Length);
        return image;
    }
}
