using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KQuant.Quants.Float;
using static KQuant.Quants.LaneLayout;

namespace KQuant.Quants;

/// <summary>The integer levels <see cref="Lowest"/>..<see cref="Highest"/> of a linear 32-weight block format, with
/// weight = d·level (+ m when <see cref="Affine"/>).</summary>
internal readonly record struct LinearBlockLevels(int Lowest, int Highest, bool Affine);

/// <summary>Reads one block: its 32 levels as floats and its decoded scale and offset (0 without one).</summary>
internal delegate void BlockLevelReader<TBlock>(in TBlock block, Span<float> levels, out float scale, out float offset)
    where TBlock : unmanaged;

/// <summary>Writes one block from 32 levels and the fp16 bits of its scale and offset (ignored without one).</summary>
internal delegate void BlockLevelWriter<TBlock>(ref TBlock block, ReadOnlySpan<float> levels, ushort scale, ushort offset)
    where TBlock : unmanaged;

/// <summary>
/// The optimal path of the linear legacy formats (Q4_0, Q5_0, Q8_0, Q4_1, Q5_1): the quant-step search of
/// <see cref="QuantStepSearch"/> run on eight 32-weight blocks at once, one block per SIMD lane, with the keep-the-better
/// comparison of <see cref="KeepBestBlocks"/> done in the same lanes. A block of 32 is too small for SIMD across its
/// weights to pay (every round would end in horizontal sums); across blocks, a round is 32 vector steps whose sums stay in
/// their lanes. Sums are in float: each step's rise is computed from its residual and must clear a noise bound, so float
/// rounding neither hides small steps nor cycles a step back and forth, and the final comparison falls back to double
/// where the float errors are within 0.1%.
/// </summary>
internal static class BlockLaneSearch
{
    private const int Weights = 32;
    private const int Group = Lanes * Weights;

    /// <summary>Bound on rounds, as in <see cref="QuantStepSearch"/>: far more than a search from the reference takes.</summary>
    private const int MaxRounds = 4 * Weights;

    /// <summary>A step's rise must exceed this fraction of its own largest term (w²·x²): below that, float rounding in the
    /// cancelling terms, not the data, would decide, and a step and its reverse could both look like gains.</summary>
    private const float RiseNoise = 1e-6f;

    /// <summary>Quantizes a row the reference way, then searches every block from it and keeps the encoding with the lower
    /// error Σ c·(y − x)² as decoded (c the importance, 1 without). Each block is never worse than the reference's.</summary>
    public static void Quantize<TBlock>(IRowCodec codec, LinearBlockLevels format, ReadOnlySpan<float> source, Span<byte> destination,
        ReadOnlySpan<float> importance, RowRole role, BlockLevelReader<TBlock> read, BlockLevelWriter<TBlock> write) where TBlock : unmanaged
    {
        codec.Quantize(source, destination, importance);
        Debug.Assert(KeepBestBlocks.WeightingFor(codec.Type, !importance.IsEmpty, role) == ErrorWeighting.Importance);
        var blocks = MemoryMarshal.Cast<byte, TBlock>(destination);
        Span<float> buffer = stackalloc float[10 * Group + 2 * Lanes];
        var rows = new GroupRows(buffer[..(4 * Group)]);
        var lanes = new GroupLanes(buffer.Slice(4 * Group, 6 * Group));
        var referenceScales = buffer.Slice(10 * Group, Lanes);
        var referenceOffsets = buffer.Slice(10 * Group + Lanes, Lanes);
        Span<ushort> scaleBits = stackalloc ushort[Lanes];
        Span<ushort> offsetBits = stackalloc ushort[Lanes];
        for (var first = 0; first < blocks.Length; first += Lanes)
        {
            var count = Math.Min(Lanes, blocks.Length - first);
            var n = count * Weights;
            source.Slice(first * Weights, n).CopyTo(rows.X);
            rows.X[n..].Clear();
            if (importance.IsEmpty) rows.W[..n].Fill(1f);
            else importance.Slice(first * Weights, n).CopyTo(rows.W);
            rows.W[n..].Clear(); // empty lanes weigh nothing: they never step and are never written
            for (var b = 0; b < Lanes; b++)
            {
                var levels = rows.Reference.Slice(b * Weights, Weights);
                if (b < count) read(in blocks[first + b], levels, out referenceScales[b], out referenceOffsets[b]);
                else
                {
                    levels.Clear();
                    (referenceScales[b], referenceOffsets[b]) = (0, 0);
                }
            }
            Transpose(rows.X, lanes.X, Lanes, Weights);
            Transpose(rows.W, lanes.W, Lanes, Weights);
            Transpose(rows.Reference, lanes.Reference, Lanes, Weights);
            var chosen = Search(format, lanes, referenceScales, referenceOffsets, scaleBits, offsetBits);
            chosen = Resolve(format, rows, lanes, referenceScales, referenceOffsets, scaleBits, offsetBits, chosen) & ((1 << count) - 1);
            if (chosen == 0) continue;
            Transpose(lanes.Candidate, rows.Candidate, Weights, Lanes);
            for (var b = 0; b < count; b++)
            {
                if ((chosen & (1 << b)) != 0) write(ref blocks[first + b], rows.Candidate.Slice(b * Weights, Weights), scaleBits[b], offsetBits[b]);
            }
        }
    }

    /// <summary>Eight blocks row-major (block b at b·32): values, weights, reference levels, candidate levels.</summary>
    private readonly ref struct GroupRows(Span<float> buffer)
    {
        public readonly Span<float> X = buffer[..Group];
        public readonly Span<float> W = buffer.Slice(Group, Group);
        public readonly Span<float> Reference = buffer.Slice(2 * Group, Group);
        public readonly Span<float> Candidate = buffer.Slice(3 * Group, Group);
    }

    /// <summary>The same transposed (weight j of block b at j·8 + b), with x centred per block for the affine search, and the
    /// levels being searched (T, from the reference's) and finally proposed (Candidate).</summary>
    private readonly ref struct GroupLanes(Span<float> buffer)
    {
        public readonly Span<float> X = buffer[..Group];
        public readonly Span<float> W = buffer.Slice(Group, Group);
        public readonly Span<float> Centred = buffer.Slice(2 * Group, Group);
        public readonly Span<float> Reference = buffer.Slice(3 * Group, Group);
        public readonly Span<float> T = buffer.Slice(4 * Group, Group);
        public readonly Span<float> Candidate = buffer.Slice(5 * Group, Group);
    }

    /// <summary>Searches all eight lanes from the reference levels (<see cref="GroupLanes.Reference"/>), rounds every weight again
    /// against the fp16 scale (and offset) of the fit, and returns the lanes whose result is clearly better (bit b), with
    /// bit b + 8 set for lanes too close to call in float.</summary>
    private static int Search(LinearBlockLevels format, in GroupLanes lanes, ReadOnlySpan<float> referenceScales,
        ReadOnlySpan<float> referenceOffsets, Span<ushort> scaleBits, Span<ushort> offsetBits)
    {
        var (d, m) = format.Affine ? SearchAffine(format, lanes) : SearchScale(format, lanes);

        // The fit as stored: both to fp16, every weight rounded again against them (the search's levels were chosen for the
        // unrounded pair).
        var storedD = Fp16.FromFloat(d);
        var storedM = format.Affine ? Fp16.FromFloat(m) : Vector256<uint>.Zero;
        for (var b = 0; b < Lanes; b++) (scaleBits[b], offsetBits[b]) = ((ushort)storedD[b], (ushort)storedM[b]);
        d = Fp16.ToFloat(storedD);
        m = format.Affine ? Fp16.ToFloat(storedM) : Vector256<float>.Zero;
        var inverse = Vector256.ConditionalSelect(Vector256.Equals(d, Vector256<float>.Zero), Vector256<float>.Zero, Vector256<float>.One / d);
        var (low, high) = (Vector256.Create((float)format.Lowest), Vector256.Create((float)format.Highest));
        var (dReference, mReference) = (Load(referenceScales, 0), Load(referenceOffsets, 0));
        Vector256<float> candidateError = default, referenceError = default;
        for (var j = 0; j < Weights; j++)
        {
            var at = j * Lanes;
            var (x, w) = (Load(lanes.X, at), Load(lanes.W, at));
            var level = Vector256.Min(Vector256.Max(Vector256.Round((x - m) * inverse), low), high);
            Store(lanes.Candidate, at, level);
            // Decoded as the dequantizers do (a product, then the offset added), so the errors are the reader's.
            var e = level * d + m - x;
            candidateError += w * e * e;
            var r = Load(lanes.Reference, at) * dReference + mReference - x;
            referenceError += w * r * r;
        }
        var clear = Vector256.LessThan(candidateError, referenceError * Vector256.Create(0.999f));
        var close = ~clear & Vector256.LessThanOrEqual(candidateError, referenceError * Vector256.Create(1.001f))
            & ~Vector256.Equals(candidateError, referenceError);
        // Non-finite errors (fp16 overflow on huge input) are decided in double, where they count as +∞.
        var finite = Vector256.LessThan(Vector256.Abs(candidateError + referenceError), Vector256.Create(float.PositiveInfinity));
        close |= ~finite;
        clear &= finite;
        return (int)(clear.ExtractMostSignificantBits() | (close.ExtractMostSignificantBits() << Lanes));
    }

    /// <summary>Type-0 (x ≈ d·t): the step search of <see cref="QuantStepSearch.RefineScale"/> per lane, each round taking the
    /// single ±1 step that most raises F = (Σw·x·t)² / Σw·t². The rise of a step of weight j by s is computed from its
    /// residual r = x − d·t, as w·(Σw·x·t·(2·s·r − d) + w·x²) / Σw·t² after the step, not as a difference of two F: in float,
    /// F carries an error far above the gain of one step of an 8-bit block. Returns d = Σw·x·t / Σw·t² of the final levels.</summary>
    private static (Vector256<float> D, Vector256<float> M) SearchScale(LinearBlockLevels format, in GroupLanes lanes)
    {
        lanes.Reference.CopyTo(lanes.T);
        Vector256<float> sxt = default, stt = default;
        for (var at = 0; at < Group; at += Lanes)
        {
            var (x, w, t) = (Load(lanes.X, at), Load(lanes.W, at), Load(lanes.T, at));
            sxt += w * x * t;
            stt += w * t * t;
        }
        var (low, high) = (Vector256.Create((float)format.Lowest), Vector256.Create((float)format.Highest));
        var (one, zero, noise) = (Vector256<float>.One, Vector256<float>.Zero, Vector256.Create(RiseNoise));
        for (var round = 0; round < MaxRounds; round++)
        {
            var fitted = Vector256.GreaterThan(stt, zero);
            var d = Vector256.ConditionalSelect(fitted, sxt / stt, zero);
            var negative = Vector256.LessThan(d, zero);
            // The best rise so far as a fraction num/den (compared by cross-multiplying; den > 0).
            Vector256<float> bestNumerator = zero, bestDenominator = one, bestXt = sxt, bestTt = stt, bestStep = zero;
            var bestJ = Vector256.Create(-1f);
            for (var j = 0; j < Weights; j++)
            {
                var at = j * Lanes;
                var (x, w, t) = (Load(lanes.X, at), Load(lanes.W, at), Load(lanes.T, at));
                var residual = x - d * t;
                // Toward the residual: up when it has the sign of d (the levels ascend).
                var step = Vector256.ConditionalSelect(Vector256.Xor(Vector256.GreaterThan(residual, zero), negative), one, -one);
                var next = t + step;
                var wx = w * x;
                var rise = w * (sxt * (step * (residual + residual) - d) + wx * x);
                var tt = stt + w * (step * (t + t) + one); // next² − t² = 2·t·step + 1
                var better = ~Vector256.Equals(residual, zero) & Vector256.GreaterThan(w, zero)
                    & Vector256.GreaterThanOrEqual(next, low) & Vector256.LessThanOrEqual(next, high)
                    & Vector256.GreaterThan(rise, noise * wx * wx)
                    & Vector256.GreaterThan(rise * bestDenominator, bestNumerator * tt);
                bestNumerator = Vector256.ConditionalSelect(better, rise, bestNumerator);
                bestDenominator = Vector256.ConditionalSelect(better, tt, bestDenominator);
                bestXt = Vector256.ConditionalSelect(better, sxt + step * wx, bestXt);
                bestTt = Vector256.ConditionalSelect(better, tt, bestTt);
                bestStep = Vector256.ConditionalSelect(better, step, bestStep);
                bestJ = Vector256.ConditionalSelect(better, Vector256.Create((float)j), bestJ);
            }
            if (!Vector256.GreaterThanOrEqualAny(bestJ, zero)) break;
            (sxt, stt) = (bestXt, bestTt);
            TakeSteps(lanes.T, bestJ, bestStep);
        }
        return (Vector256.ConditionalSelect(Vector256.GreaterThan(stt, zero), sxt / stt, zero), zero);
    }

    /// <summary>Type-1 (x ≈ d·t + m): the same search with scale and offset fitted jointly (the 2×2 normal equations). On x
    /// centred per block (c = x − x̄, Σw·c = 0) the error reduction of the least-squares (d, m) is a constant plus
    /// Σw·G with G = (Σw·c·t)² / det, det = Σw·Σw·t² − (Σw·t)². A step of weight j by s raises G by
    /// w·(Σw·c·t·(2·s·r − d) + w·(c² + G)) / det after the step (r = c − d·t − m, the residual of the current fit); each round
    /// takes the step with the largest rise. Centring also keeps a block far from zero from cancelling its float sums.</summary>
    private static (Vector256<float> D, Vector256<float> M) SearchAffine(LinearBlockLevels format, in GroupLanes lanes)
    {
        lanes.Reference.CopyTo(lanes.T);
        Vector256<float> sw = default, sx = default;
        for (var at = 0; at < Group; at += Lanes)
        {
            var w = Load(lanes.W, at);
            sw += w;
            sx += w * Load(lanes.X, at);
        }
        var (one, zero, noise) = (Vector256<float>.One, Vector256<float>.Zero, Vector256.Create(RiseNoise));
        var mean = Vector256.ConditionalSelect(Vector256.GreaterThan(sw, zero), sx / sw, zero);
        Vector256<float> st = default, stt = default, sct = default;
        for (var at = 0; at < Group; at += Lanes)
        {
            var (w, t) = (Load(lanes.W, at), Load(lanes.T, at));
            var c = Load(lanes.X, at) - mean;
            Store(lanes.Centred, at, c);
            st += w * t;
            stt += w * t * t;
            sct += w * c * t;
        }
        var (low, high) = (Vector256.Create((float)format.Lowest), Vector256.Create((float)format.Highest));
        var tolerance = Vector256.Create(1e-6f);
        for (var round = 0; round < MaxRounds; round++)
        {
            var det = sw * stt - st * st;
            // With all levels equal (det = 0) the fit is the mean alone: no step is scored from there.
            var solvable = Vector256.GreaterThan(det, tolerance * sw * stt);
            var d = Vector256.ConditionalSelect(solvable, sw * sct / det, zero);
            var m = Vector256.ConditionalSelect(solvable, -st * sct / det, zero);
            var g = Vector256.ConditionalSelect(solvable, sct * sct / det, zero);
            var negative = Vector256.LessThan(d, zero);
            Vector256<float> bestNumerator = zero, bestDenominator = one, bestT = st, bestTt = stt, bestCt = sct, bestStep = zero;
            var bestJ = Vector256.Create(-1f);
            for (var j = 0; j < Weights; j++)
            {
                var at = j * Lanes;
                var (c, w, t) = (Load(lanes.Centred, at), Load(lanes.W, at), Load(lanes.T, at));
                var residual = c - d * t - m;
                var step = Vector256.ConditionalSelect(Vector256.Xor(Vector256.GreaterThan(residual, zero), negative), one, -one);
                var next = t + step;
                var wc = w * c;
                var rise = w * (sct * (step * (residual + residual) - d) + w * (c * c + g));
                var nextT = st + step * w;
                var nextTt = stt + w * (step * (t + t) + one);
                var nextDet = sw * nextTt - nextT * nextT;
                var better = solvable & ~Vector256.Equals(residual, zero) & Vector256.GreaterThan(w, zero)
                    & Vector256.GreaterThanOrEqual(next, low) & Vector256.LessThanOrEqual(next, high)
                    & Vector256.GreaterThan(nextDet, tolerance * sw * nextTt)
                    & Vector256.GreaterThan(rise, noise * w * (wc * c + w * g))
                    & Vector256.GreaterThan(rise * bestDenominator, bestNumerator * nextDet);
                bestNumerator = Vector256.ConditionalSelect(better, rise, bestNumerator);
                bestDenominator = Vector256.ConditionalSelect(better, nextDet, bestDenominator);
                bestT = Vector256.ConditionalSelect(better, nextT, bestT);
                bestTt = Vector256.ConditionalSelect(better, nextTt, bestTt);
                bestCt = Vector256.ConditionalSelect(better, sct + step * wc, bestCt);
                bestStep = Vector256.ConditionalSelect(better, step, bestStep);
                bestJ = Vector256.ConditionalSelect(better, Vector256.Create((float)j), bestJ);
            }
            if (!Vector256.GreaterThanOrEqualAny(bestJ, zero)) break;
            (st, stt, sct) = (bestT, bestTt, bestCt);
            TakeSteps(lanes.T, bestJ, bestStep);
        }
        var finalDet = sw * stt - st * st;
        var fit = Vector256.GreaterThan(finalDet, tolerance * sw * stt);
        return (Vector256.ConditionalSelect(fit, sw * sct / finalDet, zero), mean + Vector256.ConditionalSelect(fit, -st * sct / finalDet, zero));
    }

    /// <summary>Level j of each lane moves by that lane's step where j is the lane's chosen weight.</summary>
    private static void TakeSteps(Span<float> levels, Vector256<float> chosen, Vector256<float> step)
    {
        for (var j = 0; j < Weights; j++)
        {
            var at = j * Lanes;
            Store(levels, at, Load(levels, at) + (Vector256.Equals(chosen, Vector256.Create((float)j)) & step));
        }
    }

    /// <summary>Settles the lanes <see cref="Search"/> could not call in float (bit b + 8 of <paramref name="decided"/>):
    /// both errors again in double, from each block's own values, as <see cref="KeepBestBlocks"/> compares them. Returns the
    /// lanes whose candidate is taken.</summary>
    private static int Resolve(LinearBlockLevels format, in GroupRows rows, in GroupLanes lanes, ReadOnlySpan<float> referenceScales,
        ReadOnlySpan<float> referenceOffsets, ReadOnlySpan<ushort> scaleBits, ReadOnlySpan<ushort> offsetBits, int decided)
    {
        var chosen = decided & 0xFF;
        if (decided >> Lanes == 0) return chosen;
        Span<float> candidate = stackalloc float[Weights];
        Span<float> reference = stackalloc float[Weights];
        for (var b = 0; b < Lanes; b++)
        {
            if ((decided & (1 << (b + Lanes))) == 0) continue;
            var (d, m) = (Fp16.ToFloat(scaleBits[b]), format.Affine ? Fp16.ToFloat(offsetBits[b]) : 0f);
            for (var j = 0; j < Weights; j++)
            {
                candidate[j] = lanes.Candidate[j * Lanes + b] * d + m;
                reference[j] = rows.Reference[b * Weights + j] * referenceScales[b] + referenceOffsets[b];
            }
            var x = rows.X.Slice(b * Weights, Weights);
            var w = rows.W.Slice(b * Weights, Weights);
            if (KeepBestBlocks.WeightedSquaredError(x, candidate, w) < KeepBestBlocks.WeightedSquaredError(x, reference, w)) chosen |= 1 << b;
        }
        return chosen;
    }
}
