using KQuant.Gguf;

namespace KQuant.Tests.Reference;

public class GgmlReferenceTests
{
    [SkippableFact]
    public void TypeSizesAgreeWithTheReference()
    {
        GgmlReference.Require();
        foreach (var t in GgmlTypeTraits.All)
        {
            Assert.Equal((t.BlockSize, t.BytesPerBlock), GgmlReference.TypeSize(t.Type));
        }
    }
}
