namespace KQuant.Model;

/// <summary>Sees the input of every matrix multiplication of the forward pass, before it is quantized for the weight
/// type: what an importance matrix accumulates (llama-imatrix collects the same rows per weight, per expert).
/// Calls come from the thread running the forward pass, one matrix at a time, in graph order.</summary>
public interface IActivationObserver
{
    /// <summary>Called before <paramref name="weightName"/> (the tensor's name in the GGUF file) multiplies
    /// <paramref name="activations"/>: rows of <paramref name="columns"/> floats, one per token (for an expert, only
    /// the tokens routed to it). <paramref name="expert"/> is the expert index in a 3-D expert tensor, -1 otherwise.
    /// The span is only valid during the call.</summary>
    void OnMatMul(string weightName, int expert, ReadOnlySpan<float> activations, int columns);
}
