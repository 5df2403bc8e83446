namespace KQuant.Model;

/// <summary>A GGUF file that is well formed but describes a model KQuant cannot run: another architecture, or a
/// feature of a supported one that the forward pass does not implement. The message says what and why.</summary>
public sealed class ModelNotSupportedException(string message) : Exception(message);
