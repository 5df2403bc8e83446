using System.CommandLine;
using System.Text.Json;
using KQuant.Cli.Ui;
using KQuant.Gguf;

namespace KQuant.Cli.Commands;

/// <summary><c>kquant inspect FILE [--tensors] [--json]</c>: what a GGUF file holds.</summary>
public static class InspectCommand
{
    /// <summary>Arrays longer than this show their element type, length and first items only.</summary>
    private const int ArrayPreview = 8;

    public static Command Create(Func<IUi> ui)
    {
        var file = new Argument<FileInfo>("file") { Description = "GGUF file to inspect" };
        var tensors = new Option<bool>("--tensors") { Description = "List every tensor (name, type, shape, bytes, bits per weight)" };
        var json = new Option<bool>("--json") { Description = "Write JSON to stdout instead of tables (always lists every tensor)" };
        var command = new Command("inspect", "Show a GGUF file's metadata, tensors and totals") { file, tensors, json };
        command.SetAction(result => CliErrors.Run(ui(), () =>
        {
            using var gguf = GgufFile.Open(result.GetValue(file)!.FullName);
            if (result.GetValue(json)) ui().Raw(Json(gguf));
            else WriteTables(gguf, ui(), result.GetValue(tensors));
            return ExitCodes.Success;
        }));
        return command;
    }

    private static void WriteTables(GgufFile gguf, IUi ui, bool listTensors)
    {
        ui.Heading(Path.GetFileName(gguf.Path));
        ui.Line($"GGUF v{gguf.Version}, {Units.Bytes(gguf.FileLength)}, {gguf.Metadata.Count} metadata keys, {gguf.Tensors.Count} tensors, alignment {gguf.Alignment}");
        ui.Table("Metadata", ["key", "type", "value"],
            gguf.Metadata.Select(e => (IReadOnlyList<string>)[e.Key, TypeName(e.Value), Summarize(e.Value)]));
        if (listTensors)
        {
            ui.Table("Tensors", ["name", "type", "shape", "bytes", "bpw"],
                gguf.Tensors.Select(t => (IReadOnlyList<string>)[t.Name, t.Traits.Name, Shape(t), Units.Bytes(t.ByteSize), BitsPerWeight(t).ToString("0.00")]),
                new HashSet<int> { 3, 4 });
        }
        var totals = TensorTotals.Of(gguf.Tensors);
        ui.Table("Tensors per type", ["type", "tensors", "parameters", "bytes", "bpw"],
            totals.ByType.Select(t => (IReadOnlyList<string>)[GgmlTypeTraits.Of(t.Type).Name, t.Tensors.ToString(), Units.Count(t.Parameters), Units.Bytes(t.Bytes), t.BitsPerWeight.ToString("0.00")]),
            new HashSet<int> { 1, 2, 3, 4 });
        ui.Line($"total: {totals.Tensors} tensors, {Units.Count(totals.Parameters)} parameters ({totals.Parameters:N0}), {Units.Bytes(totals.Bytes)}, {totals.BitsPerWeight:0.00} bits per weight");
    }

    private static string Json(GgufFile gguf)
    {
        var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            var totals = TensorTotals.Of(gguf.Tensors);
            w.WriteStartObject();
            w.WriteString("file", gguf.Path);
            w.WriteNumber("version", gguf.Version);
            w.WriteNumber("file_bytes", gguf.FileLength);
            w.WriteNumber("alignment", gguf.Alignment);
            w.WriteStartObject("metadata");
            foreach (var entry in gguf.Metadata)
            {
                w.WritePropertyName(entry.Key);
                WriteJsonValue(w, entry.Value);
            }
            w.WriteEndObject();
            w.WriteStartArray("tensors");
            foreach (var t in gguf.Tensors)
            {
                w.WriteStartObject();
                w.WriteString("name", t.Name);
                w.WriteString("type", t.Traits.Name);
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteNumber("offset", t.Offset);
                w.WriteNumber("bytes", t.ByteSize);
                w.WriteNumber("bits_per_weight", Math.Round(BitsPerWeight(t), 4));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartObject("totals");
            w.WriteNumber("tensors", totals.Tensors);
            w.WriteNumber("parameters", totals.Parameters);
            w.WriteNumber("bytes", totals.Bytes);
            w.WriteNumber("bits_per_weight", Math.Round(totals.BitsPerWeight, 4));
            w.WriteStartObject("by_type");
            foreach (var t in totals.ByType)
            {
                w.WriteStartObject(GgmlTypeTraits.Of(t.Type).Name);
                w.WriteNumber("tensors", t.Tensors);
                w.WriteNumber("parameters", t.Parameters);
                w.WriteNumber("bytes", t.Bytes);
                w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(stream.GetBuffer(), 0, (int)stream.Length) + Environment.NewLine;
    }

    // Scalars in full; arrays as {element_type, length, first items}.
    private static void WriteJsonValue(Utf8JsonWriter w, GgufValue value)
    {
        switch (value.Type)
        {
            case GgufValueType.String: w.WriteStringValue(value.AsString()); break;
            case GgufValueType.Bool: w.WriteBooleanValue(value.AsBool()); break;
            case GgufValueType.Float32:
                var f = value.AsSingle();
                if (float.IsFinite(f)) w.WriteNumberValue(f); else w.WriteStringValue(f.ToString());
                break;
            case GgufValueType.Float64:
                var d = value.AsDouble();
                if (double.IsFinite(d)) w.WriteNumberValue(d); else w.WriteStringValue(d.ToString());
                break;
            case GgufValueType.UInt64: w.WriteNumberValue(value.AsUInt64()); break;
            case GgufValueType.Array:
                var array = value.AsArray();
                w.WriteStartObject();
                w.WriteString("element_type", array.ElementType.ToString().ToLowerInvariant());
                w.WriteNumber("length", array.Count);
                w.WriteStartArray("first");
                for (var i = 0; i < Math.Min(ArrayPreview, array.Count); i++) WriteJsonValue(w, array[i]);
                w.WriteEndArray();
                w.WriteEndObject();
                break;
            default: w.WriteNumberValue(value.AsInt64()); break;
        }
    }

    private static string TypeName(GgufValue value) =>
        value.Type == GgufValueType.Array
            ? $"{value.AsArray().ElementType.ToString().ToLowerInvariant()}[{value.AsArray().Count}]"
            : value.Type.ToString().ToLowerInvariant();

    private static string Summarize(GgufValue value)
    {
        if (value.Type != GgufValueType.Array) return Clip(value.ToString(), 100);
        var array = value.AsArray();
        var first = array.Take(ArrayPreview).Select(v => v.Type == GgufValueType.String ? Quote(v.AsString()) : Clip(v.ToString(), 40));
        return string.Join(", ", first) + (array.Count > ArrayPreview ? $", … ({array.Count - ArrayPreview} more)" : "");
    }

    private static readonly JsonSerializerOptions Readable = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static string Quote(string s) => JsonSerializer.Serialize(Clip(s, 24), Readable);

    private static string Clip(string s, int max) => s.Length <= max ? s : s[..(max - 1)] + "…";

    private static string Shape(GgufTensorInfo t) => string.Join(" × ", t.Shape);

    private static double BitsPerWeight(GgufTensorInfo t) => t.ElementCount == 0 ? 0 : 8.0 * t.ByteSize / t.ElementCount;
}
