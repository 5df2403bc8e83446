namespace KQuant.Quants;

/// <summary>
/// The greedy quant-step search of ik_llama.cpp PR 295, for one group of weights: starting from given quant indices into a
/// sorted table of level values T, move one index by ±1 at a time while the best-fitting scale (and offset) then leaves a
/// smaller weighted error, and stop when no single step helps. Each round tries the step toward its residual for every
/// weight and takes the best (rather than only the largest-gradient one: same O(n) cost per round, never a worse step).
/// Sums are updated incrementally and kept in double. The error never grows, so the result is never worse than the start.
/// </summary>
internal static class QuantStepSearch
{
    /// <summary>More rounds than a converging search needs (each round gains, and the start is already near optimal);
    /// bounds the time on adversarial input.</summary>
    private const int MaxRoundsPerWeight = 4;

    /// <summary>Type-0: x ≈ d·T[index]. Improves <paramref name="indices"/> in place and returns the least-squares d for them
    /// (d = Σw·x·T / Σw·T², which maximises F = (Σw·x·T)² / Σw·T², the error reduction).</summary>
    public static float RefineScale(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> table, Span<int> indices)
    {
        double sumXT = 0, sumTT = 0;
        for (var j = 0; j < x.Length; j++)
        {
            double t = table[indices[j]];
            sumXT += w[j] * x[j] * t;
            sumTT += w[j] * t * t;
        }
        for (var round = 0; round < MaxRoundsPerWeight * x.Length; round++)
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

    /// <summary>Type-1: x ≈ d·T[index] + m. Improves <paramref name="indices"/> in place and returns the weighted
    /// least-squares (d, m) for them (the 2×2 normal equations; error reduction G = d·Σw·x·T + m·Σw·x).</summary>
    public static (float Scale, float Offset) RefineScaleOffset(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> table,
        Span<int> indices)
    {
        var sums = new AffineSums();
        for (var j = 0; j < x.Length; j++) sums.Add(w[j], x[j], table[indices[j]], 1);
        for (var round = 0; round < MaxRoundsPerWeight * x.Length; round++)
        {
            var (best, d, m) = sums.Solve();
            int bestJ = -1, bestIndex = 0;
            for (var j = 0; j < x.Length; j++)
            {
                var step = StepTowardResidual(x[j] - d * table[indices[j]] - m, d);
                var next = indices[j] + step;
                if (step == 0 || w[j] <= 0 || (uint)next >= (uint)table.Length) continue;
                var trial = sums;
                trial.Add(w[j], x[j], table[indices[j]], -1);
                trial.Add(w[j], x[j], table[next], 1);
                var gain = trial.Solve().Gain;
                if (gain > best) (best, bestJ, bestIndex) = (gain, j, next);
            }
            if (bestJ < 0) break;
            sums.Add(w[bestJ], x[bestJ], table[indices[bestJ]], -1);
            sums.Add(w[bestJ], x[bestJ], table[bestIndex], 1);
            indices[bestJ] = bestIndex;
        }
        var solution = sums.Solve();
        return ((float)solution.Scale, (float)solution.Offset);
    }

    /// <summary>The index step that moves d·T toward x: up when the residual and d have the same sign (T is ascending).
    /// With d = 0 any step changes the fit; try up for positive residuals.</summary>
    private static int StepTowardResidual(double residual, double d) =>
        residual == 0 ? 0 : (d >= 0) == (residual > 0) ? 1 : -1;

    /// <summary>Index of the table value nearest to <paramref name="value"/> (ties to the lower one).</summary>
    public static int Nearest(ReadOnlySpan<float> table, float value)
    {
        int lo = 0, hi = table.Length - 1;
        while (hi - lo > 1)
        {
            var mid = (lo + hi) >> 1;
            if (table[mid] <= value) lo = mid;
            else hi = mid;
        }
        return value - table[lo] <= table[hi] - value ? lo : hi;
    }

    /// <summary>Level values lowest..highest as a table (the linear formats).</summary>
    public static float[] LinearLevels(int lowest, int highest) =>
        Enumerable.Range(lowest, highest - lowest + 1).Select(v => (float)v).ToArray();

    /// <summary>Weighted sums for x ≈ d·t + m, and their least-squares solution.</summary>
    private struct AffineSums
    {
        private double _w, _t, _tt, _x, _xt;

        public void Add(float w, float x, float t, int sign)
        {
            double sw = sign * (double)w;
            _w += sw;
            _t += sw * t;
            _tt += sw * t * t;
            _x += sw * x;
            _xt += sw * x * t;
        }

        /// <summary>(error reduction, d, m) of the best fit; with all t equal (a singular system) the offset alone.</summary>
        public readonly (double Gain, double Scale, double Offset) Solve()
        {
            var det = _w * _tt - _t * _t;
            if (det <= 1e-12 * _w * _tt) return _w > 0 ? (_x * _x / _w, 0, _x / _w) : (0, 0, 0);
            var d = (_w * _xt - _t * _x) / det;
            var m = (_tt * _x - _t * _xt) / det;
            return (d * _xt + m * _x, d, m);
        }
    }
}
