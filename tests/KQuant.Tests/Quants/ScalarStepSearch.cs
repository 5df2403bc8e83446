namespace KQuant.Tests.Quants;

/// <summary>
/// The greedy quant-step search of ik_llama.cpp PR 295 for one group of weights, scalar and in double: the definition the
/// lane searches of the optimal path (BlockLaneSearch, in float, eight blocks at a time) are tested against. Starting from
/// given quant indices into a sorted table of level values T, move one index by ±1 at a time while the best-fitting scale
/// then leaves a smaller weighted error, and stop when no single step helps. Each round tries the step toward its residual
/// for every weight and takes the best. The error never grows, so the result is never worse than the start.
/// </summary>
internal static class ScalarStepSearch
{
    /// <summary>More rounds than a converging search needs (each round gains, and the start is already near optimal);
    /// bounds the time on adversarial input.</summary>
    private const int MaxRoundsPerWeight = 4;

    /// <summary>Type-0: x ≈ d·T[index]. Improves <paramref name="indices"/> in place and returns the least-squares d for them
    /// (d = Σw·x·T / Σw·T², which maximises F = (Σw·x·T)² / Σw·T², the error reduction). At most
    /// <paramref name="maxSteps"/> steps when given (Q5_0's bounded search).</summary>
    public static float RefineScale(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> table, Span<int> indices,
        int maxSteps = int.MaxValue)
    {
        double sumXT = 0, sumTT = 0;
        for (var j = 0; j < x.Length; j++)
        {
            double t = table[indices[j]];
            sumXT += w[j] * x[j] * t;
            sumTT += w[j] * t * t;
        }
        for (var round = 0; round < Math.Min(maxSteps, MaxRoundsPerWeight * x.Length); round++)
        {
            var best = sumTT > 0 ? sumXT * sumXT / sumTT : 0;
            var d = sumTT > 0 ? sumXT / sumTT : 0;
            int bestJ = -1, bestIndex = 0;
            for (var j = 0; j < x.Length; j++)
            {
                var step = StepTowardResidual(x[j] - d * table[indices[j]], d);
                var next = indices[j] + step;
                if (step == 0 || w[j] <= 0 || (uint)next >= (uint)table.Length) continue;
                double delta = table[next] - (double)table[indices[j]];
                double square = (double)table[next] * table[next] - (double)table[indices[j]] * table[indices[j]];
                var xt = sumXT + w[j] * x[j] * delta;
                var tt = sumTT + w[j] * square;
                if (tt <= 0) continue;
                var gain = xt * xt / tt;
                if (gain > best) (best, bestJ, bestIndex) = (gain, j, next);
            }
            if (bestJ < 0) break;
            double from = table[indices[bestJ]], to = table[bestIndex];
            sumXT += w[bestJ] * x[bestJ] * (to - from);
            sumTT += w[bestJ] * (to * to - from * from);
            indices[bestJ] = bestIndex;
        }
        return sumTT > 0 ? (float)(sumXT / sumTT) : 0f;
    }

    /// <summary>The index step that moves d·T toward x: up when the residual and d have the same sign (T is ascending).
    /// With d = 0 any step changes the fit; try up for positive residuals.</summary>
    private static int StepTowardResidual(double residual, double d) =>
        residual == 0 ? 0 : (d >= 0) == (residual > 0) ? 1 : -1;
}
