using System.Runtime.CompilerServices;

namespace KQuant.Quants.K;

// Fixed-size byte arrays for the K-quant block structs. [InlineArray] keeps the structs blittable (they are read and
// written in place over the row's bytes with MemoryMarshal.Cast) while still converting to Span<T> for the code.

[InlineArray(12)]
internal struct KBytes12 { private byte _element; }

[InlineArray(16)]
internal struct KBytes16 { private byte _element; }

[InlineArray(32)]
internal struct KBytes32 { private byte _element; }

[InlineArray(64)]
internal struct KBytes64 { private byte _element; }

[InlineArray(128)]
internal struct KBytes128 { private byte _element; }

[InlineArray(16)]
internal struct KSBytes16 { private sbyte _element; }

[InlineArray(256)]
internal struct KSBytes256 { private sbyte _element; }

[InlineArray(16)]
internal struct KShorts16 { private short _element; }
