using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KQuant.Quants.IQ;

/// <summary>The IQ4 grid (<see cref="IQ4Grid.Levels"/>) for the lane search of <see cref="BlockLaneSearch"/>: level values
/// by table lookup, nearest levels as <see cref="IQ4Grid.NearestLevel(float)"/> finds them.</summary>
internal readonly struct IQ4LaneLevels : ILaneLevels
{
    private static readonly Vector256<float> LowerLevels = Half(0), UpperLevels = Half(8);

    private static Vector256<float> Half(int first)
    {
        Span<float> values = stackalloc float[Lanes];
        for (var i = 0; i < Lanes; i++) values[i] = IQ4Grid.Levels[first + i];
        return Vector256.Create<float>(values);
    }

    private const int Lanes = LaneLayout.Lanes;

    public static bool Linear => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ValueOf(Vector256<float> index) =>
        LaneLayout.Lookup16(LowerLevels, UpperLevels, Vector256.ConvertToInt32(index));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Nearest(Vector256<float> scaled, BlockLevelRange range, out Vector256<float> value)
    {
        if (Avx2.IsSupported) return Vector256.ConvertToSingle(IQ4Grid.NearestLevel(scaled, out value));
        Span<float> indices = stackalloc float[Lanes];
        Span<float> values = stackalloc float[Lanes];
        for (var b = 0; b < Lanes; b++)
        {
            var index = IQ4Grid.NearestLevel(scaled[b]);
            (indices[b], values[b]) = (index, IQ4Grid.Levels[index]);
        }
        value = Vector256.Create<float>(values);
        return Vector256.Create<float>(indices);
    }
}
