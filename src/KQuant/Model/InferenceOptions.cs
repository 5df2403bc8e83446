namespace KQuant.Model;

/// <summary>How an <see cref="InferenceSession"/> runs.</summary>
public sealed record InferenceOptions
{
    /// <summary>Worker threads for the matrix products and attention (default: all cores).</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>Most tokens one <see cref="InferenceSession.Evaluate"/> call takes (default: the context size); the
    /// buffers of the forward pass are sized for it.</summary>
    public int? MaxBatch { get; init; }

    /// <summary>Sees the input of every matrix multiplication (e.g. to collect an importance matrix).</summary>
    public IActivationObserver? Observer { get; init; }
}
