using KQuant.Gguf;

namespace KQuant.Model.Kernels;

/// <summary>The matrix-product kernel of one quantized weight type: how its blocks decode into the shape of
/// <see cref="IntegerDot"/> and which dot product then applies. Implemented by structs so that the generic matrix
/// product is specialized per type by the JIT (no dispatch inside the loops).</summary>
internal unsafe interface IWeightKernel
{
    static abstract GgmlType Type { get; }

    /// <summary>Weights per stored block (32 or 256).</summary>
    static abstract int BlockWeights { get; }

    /// <summary>Bytes one block takes once decoded.</summary>
    static abstract int DecodedBlockBytes { get; }

    /// <summary>Decodes <paramref name="blocks"/> stored blocks starting at <paramref name="source"/>.</summary>
    static abstract void Decode(byte* source, int blocks, byte* destination);

    /// <summary>The dot product of a decoded row with one activation row in <see cref="ActivationFormats.For"/>(Type).</summary>
    static abstract float Dot(byte* decoded, byte* activations, int blocks);

    /// <summary><see cref="Dot"/> for four consecutive activation rows, <paramref name="stride"/> bytes apart, into
    /// <paramref name="results"/>[0..3]: the same results, computed together.</summary>
    static abstract void Dot4(byte* decoded, byte* activations, nint stride, int blocks, float* results);
}
