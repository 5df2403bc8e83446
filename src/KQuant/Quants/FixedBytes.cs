using System.Runtime.CompilerServices;

namespace KQuant.Quants;

// Fixed-size arrays for the block structs (ggml's uint8_t x[n] members and the like). [InlineArray] keeps the structs
// blittable, alignment 1 for bytes, so they are read and written in place over a row's bytes with MemoryMarshal.Cast,
// while converting to Span<T> when the owning block is a variable.

[InlineArray(4)]
internal struct Bytes4 { private byte _element; }

[InlineArray(12)]
internal struct Bytes12 { private byte _element; }

[InlineArray(16)]
internal struct Bytes16 { private byte _element; }

[InlineArray(32)]
internal struct Bytes32 { private byte _element; }

[InlineArray(64)]
internal struct Bytes64 { private byte _element; }

[InlineArray(128)]
internal struct Bytes128 { private byte _element; }

[InlineArray(16)]
internal struct SBytes16 { private sbyte _element; }

[InlineArray(256)]
internal struct SBytes256 { private sbyte _element; }

[InlineArray(16)]
internal struct Shorts16 { private short _element; }
