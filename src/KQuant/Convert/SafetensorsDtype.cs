namespace KQuant.Conversion;

/// <summary>The element types of the safetensors format. KQuant converts F32, F16 and BF16; the others are parsed (so a
/// file holding them validates) and refused when a tensor of that type has to be converted.</summary>
public enum SafetensorsDtype
{
    Bool,
    U8,
    I8,
    F8E5M2,
    F8E4M3,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

public static class SafetensorsDtypes
{
    private static readonly Dictionary<string, SafetensorsDtype> ByName = new(StringComparer.Ordinal)
    {
        ["BOOL"] = SafetensorsDtype.Bool,
        ["U8"] = SafetensorsDtype.U8,
        ["I8"] = SafetensorsDtype.I8,
        ["F8_E5M2"] = SafetensorsDtype.F8E5M2,
        ["F8_E4M3"] = SafetensorsDtype.F8E4M3,
        ["I16"] = SafetensorsDtype.I16,
        ["U16"] = SafetensorsDtype.U16,
        ["F16"] = SafetensorsDtype.F16,
        ["BF16"] = SafetensorsDtype.BF16,
        ["I32"] = SafetensorsDtype.I32,
        ["U32"] = SafetensorsDtype.U32,
        ["F32"] = SafetensorsDtype.F32,
        ["F64"] = SafetensorsDtype.F64,
        ["I64"] = SafetensorsDtype.I64,
        ["U64"] = SafetensorsDtype.U64,
    };

    /// <summary>The name as the format spells it, e.g. "BF16", "F8_E4M3".</summary>
    public static string Name(this SafetensorsDtype dtype) => ByName.First(p => p.Value == dtype).Key;

    public static bool TryParse(string name, out SafetensorsDtype dtype) => ByName.TryGetValue(name, out dtype);

    public static int ElementSize(this SafetensorsDtype dtype) => dtype switch
    {
        SafetensorsDtype.Bool or SafetensorsDtype.U8 or SafetensorsDtype.I8 or SafetensorsDtype.F8E5M2 or SafetensorsDtype.F8E4M3 => 1,
        SafetensorsDtype.I16 or SafetensorsDtype.U16 or SafetensorsDtype.F16 or SafetensorsDtype.BF16 => 2,
        SafetensorsDtype.I32 or SafetensorsDtype.U32 or SafetensorsDtype.F32 => 4,
        _ => 8,
    };

    /// <summary>True for the types KQuant converts: F32, F16, BF16.</summary>
    public static bool IsConvertible(this SafetensorsDtype dtype) =>
        dtype is SafetensorsDtype.F32 or SafetensorsDtype.F16 or SafetensorsDtype.BF16;

    public static string ConvertibleNames => "F32, F16, BF16";
}
