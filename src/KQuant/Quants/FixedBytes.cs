using System.Runtime.CompilerServices;

namespace KQuant.Quants;

// Fixed-size byte arrays for block structs (ggml's uint8_t x[n] members). They are blittable, alignment 1,
// and convert implicitly to Span<byte> when the owning block is a writable variable.

[InlineArray(4)]
public struct Bytes4 { private byte _element0; }

[InlineArray(16)]
public struct Bytes16 { private byte _element0; }

[InlineArray(32)]
public struct Bytes32 { private byte _element0; }

[InlineArray(128)]
public struct Bytes128 { private byte _element0; }
