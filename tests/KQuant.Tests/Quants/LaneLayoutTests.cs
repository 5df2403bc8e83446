using KQuant.Quants;

namespace KQuant.Tests.Quants;

/// <summary>The lane layout of the optimal searches: weight i of group j moves to i·S + j.</summary>
public sealed class LaneLayoutTests
{
    /// <summary>Every super-block shape the formats use (16 sub-blocks of 16: Q2_K, Q3_K, Q6_K; 8 of 32: Q4_K, Q5_K,
    /// IQ4_XS), the legacy formats' eight blocks of 32 and back (BlockLaneSearch), and one whose length is no multiple of
    /// 8, which takes the element-wise path; distinct values, so any misplaced element shows.</summary>
    [Theory]
    [InlineData(16, 16)]
    [InlineData(8, 32)]
    [InlineData(32, 8)]
    [InlineData(8, 12)]
    public void TransposePutsWeightIOfSubBlockJAtIRowJColumn(int subBlocks, int length)
    {
        var source = Enumerable.Range(0, subBlocks * length).Select(v => (float)v).ToArray();
        var destination = new float[source.Length];
        LaneLayout.Transpose(source, destination, subBlocks, length);
        for (var j = 0; j < subBlocks; j++)
        {
            for (var i = 0; i < length; i++) Assert.Equal(source[j * length + i], destination[i * subBlocks + j]);
        }
    }
}
