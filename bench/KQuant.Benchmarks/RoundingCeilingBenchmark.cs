using System.Diagnostics;
using System.Text.Json;
using KQuant.Gguf;
using KQuant.Importance;
using KQuant.Quants;
using KQuant.Quants.IQ;
using KQuant.Recipes;

namespace KQuant.Benchmarks;

/// <summary>
/// How much lower any rounding could take the weight error the optimal path minimises (issue 6). Per block format, with
/// and without the importance matrix, the weighted squared error Σ c·(y − x)² summed over every 2-D tensor of the model whose
/// rows are whole super-blocks (c = the imatrix column importance; 1 without an imatrix and for tensors it lacks) of:
/// <list type="bullet">
/// <item>Reference: llama.cpp's rounding (the codec's Quantize).</item>
/// <item>Optimal: the optimal path as ModelQuantizer runs it (token embeddings as lookups, the rest as products). Its own
/// weighting is not always c (<see cref="KeepBestBlocks.WeightingFor"/>): Q2_K/Q3_K products minimise c·x², and Q4_K/Q5_K
/// products without an imatrix keep the reference bytes.</item>
/// <item>Search: the same search aimed at c itself (every row as a lookup, which every format weighs by c), from the same
/// reference start: what the search can do for this error. Equal to Optimal where Optimal already minimises c.</item>
/// <item>Bound: each sub-block given its own continuous scale (and offset, for the affine formats) with its values rounded to
/// the nearest level; no 4-/6-/8-bit sub-block scales, no fp16 super-block scale. Every encoding of the format is one such
/// choice, so the true minimum of this relaxation is a floor no rounding of the format can go below. Found by a dense grid
/// of 201 starting scales (per sign for the type-0 formats), each followed by 8 Lloyd iterations (least-squares fit, then
/// nearest levels): an estimate from above of that floor.</item>
/// <item>ExactBound (type-0 formats): the same relaxation solved exactly, by sweeping the inverse scale through every point
/// where a value's nearest level changes; a true floor, and a check of how close the grid comes (with many levels the best
/// scale often puts the largest value well inside the range, where the grid never starts).</item>
/// <item>AffineBoundCheck (affine formats, no exact solution here): on a sample of sub-blocks, a much denser search of the
/// relaxation over the grid's result, i.e. how far above the relaxation's true minimum the affine Bound may be.</item>
/// </list>
/// Per-tensor lines go to the console, model totals (ratios of sums) to the JSON.
/// Usage: rounding-ceiling [--model F16.gguf] [--imatrix imatrix.gguf] [--types Q4_K,IQ4_XS,...] [--threads N]
/// [--out bench/results/rounding-ceiling.json]
/// </summary>
public static class RoundingCeilingBenchmark
{
    private const int GridStarts = 201;
    private const int LloydIterations = 8;

    /// <summary>The affine grid's check (<see cref="AffineFloorByOffsetSweeps"/>) runs on every this-many-th sub-block.</summary>
    private const int AffineCheckStride = 509;

    /// <summary>Inverse scales the check tries per sub-block.</summary>
    private const int AffineCheckScales = 2000;

    /// <summary>The sub-blocks that get their own scale, as the codecs define them (src/KQuant/Quants/K, src/KQuant/Quants/IQ):
    /// the number of weights and the levels their values take before scaling.</summary>
    private static readonly SubBlockFormat[] Formats =
    [
        // x ≈ d·sc·q − dmin·m, q in 0..3, 4-bit sc and m.
        new(GgmlType.Q2_K, 16, LevelSet.Linear(0, 3), Affine: true),
        // x ≈ d·sc·q, q in −4..3, signed 6-bit sc.
        new(GgmlType.Q3_K, 16, LevelSet.Linear(-4, 3), Affine: false),
        // x ≈ d·sc·q − dmin·m, q in 0..15, 6-bit sc and m.
        new(GgmlType.Q4_K, 32, LevelSet.Linear(0, 15), Affine: true),
        // x ≈ d·sc·q − dmin·m, q in 0..31, 6-bit sc and m.
        new(GgmlType.Q5_K, 32, LevelSet.Linear(0, 31), Affine: true),
        // x ≈ d·sc·q, q in −32..31, signed 8-bit sc.
        new(GgmlType.Q6_K, 16, LevelSet.Linear(-32, 31), Affine: false),
        // x ≈ d·kvalues_iq4nl[i], one fp16 d per 32 weights.
        new(GgmlType.IQ4_NL, 32, LevelSet.Table(IQ4Grid.Levels), Affine: false),
        // x ≈ d·sc·kvalues_iq4nl[i], signed 6-bit sc per 32 weights.
        new(GgmlType.IQ4_XS, 32, LevelSet.Table(IQ4Grid.Levels), Affine: false),
    ];

    public static int Run(string[] args)
    {
        var model = "/work/shared/models/debdocs/debdocs-llama-10m-F16.gguf";
        var imatrixPath = "/tmp/kq6/debdocs-llama-10m-F16.imatrix.gguf";
        var types = Formats.Select(f => f.Type).ToList();
        var threads = 1;
        var output = Path.Combine("bench", "results", "rounding-ceiling.json");
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--model": model = args[++i]; break;
                case "--imatrix": imatrixPath = args[++i]; break;
                case "--types":
                    types = args[++i].Split(',').Select(name => GgmlTypeTraits.TryParse(name, out var type)
                        ? type
                        : throw new ArgumentException($"unknown type {name}")).ToList();
                    break;
                case "--threads": threads = int.Parse(args[++i]); break;
                case "--out": output = args[++i]; break;
                default:
                    Console.Error.WriteLine($"unknown option {args[i]}");
                    return 2;
            }
        }
        if (!File.Exists(model))
        {
            Console.WriteLine($"skipping: {model} is missing");
            return 0;
        }
        ImportanceMatrix? imatrix = null;
        if (File.Exists(imatrixPath)) imatrix = ImportanceMatrix.Load(imatrixPath);
        else Console.WriteLine($"{imatrixPath} is missing: without an imatrix only");

        using var file = GgufFile.Open(model);
        var results = new List<Result>();
        foreach (var type in types)
        {
            var format = Formats.FirstOrDefault(f => f.Type == type)
                         ?? throw new ArgumentException($"{type} has no sub-block levels here; supported: {string.Join(',', Formats.Select(f => f.Type))}");
            foreach (var withImatrix in imatrix is null ? [false] : new[] { false, true })
            {
                var result = Measure(file, format, withImatrix ? imatrix : null, threads);
                results.Add(result);
                Console.WriteLine($"TOTAL {format.Type,-6} {(withImatrix ? "imatrix" : "none"),-7} optimal/ref {result.OptimalRatio:F4}  " +
                                  $"search/ref {result.SearchRatio:F4}  bound/ref {result.BoundRatio:F4}" +
                                  (result.ExactBoundRatio is { } exact ? $"  exact bound/ref {exact:F4}" : "") +
                                  (result.AffineBoundCheck is { } check ? $"  dense/grid on a sample {check:F4}" : "") +
                                  $"  | tensor mean: optimal {result.OptimalRatioTensorMean:F4} search {result.SearchRatioTensorMean:F4} " +
                                  $"bound {result.BoundRatioTensorMean:F4}  ({result.Seconds:F0} s)");
                Write(output, model, imatrix is null ? null : imatrixPath, threads, results);
            }
        }
        Console.WriteLine($"wrote {output}");
        return 0;
    }

    private static Result Measure(GgufFile file, SubBlockFormat format, ImportanceMatrix? imatrix, int threads)
    {
        var clock = Stopwatch.StartNew();
        var codec = (IOptimalRowCodec)RowCodecs.Get(format.Type);
        var traits = GgmlTypeTraits.Of(format.Type);
        var measured = new List<(long Weights, bool HasImportance, ErrorSums Sums)>();
        foreach (var tensor in file.Tensors)
        {
            if (tensor.Dimensions != 2 || tensor.RowLength % 256 != 0) continue;
            var rowLength = (int)tensor.RowLength;
            var importance = imatrix?.WeightsFor(tensor.Name);
            if (importance is not null && importance.Length != rowLength)
                throw new InvalidDataException($"{tensor.Name}: imatrix has {importance.Length} columns, the tensor {rowLength}");
            var role = TensorCategories.IsTokenEmbedding(tensor.Name) ? RowRole.Lookup : RowRole.Product;
            // Lookup rows are weighed by c in every format; a separate search run is needed only where the model's rows are not.
            if (KeepBestBlocks.WeightingFor(format.Type, importance is not null, RowRole.Lookup) != ErrorWeighting.Importance)
                throw new InvalidOperationException($"{format.Type}: lookup rows no longer minimise c; the search column needs another way in");
            var searchSeparately = KeepBestBlocks.WeightingFor(format.Type, importance is not null, role) != ErrorWeighting.Importance;
            var sums = new ErrorSums();
            var gate = new object();
            var sourceCodec = RowCodecs.Get(tensor.Type);
            Parallel.For(0L, tensor.RowCount, new ParallelOptions { MaxDegreeOfParallelism = threads },
                () => new RowScratch(rowLength, (int)traits.RowBytes(rowLength), format),
                (row, _, scratch) =>
                {
                    var x = scratch.Source;
                    var y = scratch.Dequantized;
                    var w = scratch.Weights;
                    sourceCodec.Dequantize(file.GetRows(tensor, row, 1), x);
                    for (var i = 0; i < rowLength; i++) w[i] = importance is null ? 1f : importance[i];
                    ReadOnlySpan<float> c = importance;

                    codec.Quantize(x, scratch.Bytes, c);
                    codec.Dequantize(scratch.Bytes, y);
                    scratch.Sums.Reference += KeepBestBlocks.WeightedSquaredError(x, y, w);

                    codec.QuantizeOptimal(x, scratch.Bytes, c, role);
                    codec.Dequantize(scratch.Bytes, y);
                    var optimal = KeepBestBlocks.WeightedSquaredError(x, y, w);
                    scratch.Sums.Optimal += optimal;

                    if (searchSeparately)
                    {
                        codec.QuantizeOptimal(x, scratch.Bytes, c, RowRole.Lookup);
                        codec.Dequantize(scratch.Bytes, y);
                        scratch.Sums.Search += KeepBestBlocks.WeightedSquaredError(x, y, w);
                    }
                    else
                    {
                        scratch.Sums.Search += optimal;
                    }

                    for (var start = 0; start < rowLength; start += format.SubBlockWeights)
                    {
                        var xb = x.AsSpan(start, format.SubBlockWeights);
                        var wb = w.AsSpan(start, format.SubBlockWeights);
                        if (format.Affine)
                        {
                            var bound = AffineFloorByGrid(xb, wb, format.Levels, scratch.Levels);
                            scratch.Sums.Bound += bound;
                            if ((row * rowLength + start) / format.SubBlockWeights % AffineCheckStride == 0)
                            {
                                scratch.Sums.CheckGridBound += bound;
                                scratch.Sums.CheckDenseBound += AffineFloorByOffsetSweeps(xb, wb, format.Levels, scratch);
                            }
                        }
                        else
                        {
                            scratch.Sums.Bound += ScaledFloorByGrid(xb, wb, format.Levels, scratch.Levels, scratch.Signed);
                            scratch.Sums.ExactBound += ScaledFloorExact(xb, wb, format.Levels, scratch);
                        }
                    }
                    return scratch;
                },
                scratch => { lock (gate) sums.Add(scratch.Sums); });
            Console.WriteLine($"{format.Type,-6} {(imatrix is null ? "none" : "imatrix"),-7} {tensor.Name,-28} {(importance is null ? "c=1" : "c"),-3} " +
                              $"ref {sums.Reference:E4}  optimal/ref {sums.Optimal / sums.Reference:F4}  search/ref {sums.Search / sums.Reference:F4}  " +
                              $"bound/ref {sums.Bound / sums.Reference:F4}" +
                              (format.Affine ? "" : $"  exact/ref {sums.ExactBound / sums.Reference:F4}"));
            measured.Add((tensor.ElementCount, importance is not null, sums));
        }

        var total = new ErrorSums();
        foreach (var (_, _, sums) in measured) total.Add(sums);
        // The sums mix tensors weighed by c with tensors weighed by 1 (those the imatrix lacks), whose errors are on another
        // scale; the mean of per-tensor ratios, weighted by parameters, is free of that.
        var weights = measured.Sum(m => m.Weights);
        double MeanRatio(Func<ErrorSums, double> error) => measured.Sum(m => m.Weights * error(m.Sums) / m.Sums.Reference) / weights;
        var withoutImportance = imatrix is null ? 1 : measured.Where(m => !m.HasImportance).Sum(m => m.Sums.Reference) / total.Reference;
        return new Result(format.Type.ToString(), imatrix is not null, measured.Count, weights, format.SubBlockWeights,
            format.Levels.Describe(), format.Affine,
            total.Reference, total.Optimal, total.Search, total.Bound, format.Affine ? null : total.ExactBound,
            total.Optimal / total.Reference, total.Search / total.Reference, total.Bound / total.Reference,
            format.Affine ? null : total.ExactBound / total.Reference,
            MeanRatio(s => s.Optimal), MeanRatio(s => s.Search), MeanRatio(s => s.Bound), format.Affine ? null : MeanRatio(s => s.ExactBound),
            withoutImportance, format.Affine ? total.CheckDenseBound / total.CheckGridBound : null, clock.Elapsed.TotalSeconds);
    }

    /// <summary>Least Σw·(s·q + o − x)² over a continuous scale s and offset o, levels q in 0..nmax nearest to (x − o)/s:
    /// starting scales that spread the sub-block's range over nmax − 2 to nmax + 2 levels (201 of them), each refined by
    /// Lloyd iterations. Never above the error of the best constant.</summary>
    private static double AffineFloorByGrid(ReadOnlySpan<float> x, ReadOnlySpan<float> w, LevelSet levels, Span<double> q)
    {
        double sumW = 0, sumWX = 0;
        float min = float.MaxValue, max = float.MinValue;
        for (var i = 0; i < x.Length; i++)
        {
            sumW += w[i];
            sumWX += w[i] * (double)x[i];
            min = Math.Min(min, x[i]);
            max = Math.Max(max, x[i]);
        }
        if (max == min || sumW <= 0) return 0;
        var mean = sumWX / sumW;
        double best = 0;
        for (var i = 0; i < x.Length; i++) best += w[i] * (x[i] - mean) * (x[i] - mean);

        var nmax = levels.Values[^1];
        for (var k = 0; k < GridStarts; k++)
        {
            double scale = (max - min) / (nmax - 2 + 0.02 * k), offset = min;
            for (var iteration = 0; iteration < LloydIterations; iteration++)
            {
                for (var i = 0; i < x.Length; i++) q[i] = levels.Values[levels.Nearest((x[i] - offset) / scale)];
                double sw = 0, sq = 0, sqq = 0, sx = 0, sxq = 0;
                for (var i = 0; i < x.Length; i++)
                {
                    sw += w[i];
                    sq += w[i] * q[i];
                    sqq += w[i] * q[i] * q[i];
                    sx += w[i] * (double)x[i];
                    sxq += w[i] * x[i] * q[i];
                }
                var det = sw * sqq - sq * sq;
                if (det <= 0) break;
                scale = (sw * sxq - sq * sx) / det;
                offset = (sqq * sx - sq * sxq) / det;
                double error = 0;
                for (var i = 0; i < x.Length; i++)
                {
                    var d = scale * q[i] + offset - x[i];
                    error += w[i] * d * d;
                }
                best = Math.Min(best, error);
                if (scale <= 0) break;
            }
        }
        return best;
    }

    /// <summary>A much denser search of the affine relaxation, to check how close <see cref="AffineFloorByGrid"/> comes: for
    /// each of <see cref="AffineCheckScales"/> inverse scales t (the sub-block's range spread over nmax/2 to nmax + 3 levels,
    /// evenly in log t) it visits every assignment q = nearest(x·t + u) as the offset u sweeps (−∞, ∞), each with its
    /// least-squares scale and offset. Exact in the offset, dense in the scale.</summary>
    private static double AffineFloorByOffsetSweeps(ReadOnlySpan<float> x, ReadOnlySpan<float> w, LevelSet levels, RowScratch scratch)
    {
        var centered = scratch.Signed;
        var times = scratch.EventTimes;
        var moves = scratch.EventMoves;
        var levelCount = levels.Values.Length;
        double sumW = 0, sumWX = 0;
        float min = float.MaxValue, max = float.MinValue;
        for (var i = 0; i < x.Length; i++)
        {
            sumW += w[i];
            sumWX += w[i] * (double)x[i];
            min = Math.Min(min, x[i]);
            max = Math.Max(max, x[i]);
        }
        if (max == min || sumW <= 0) return 0;
        // Centred, Σw·x = 0, so the least-squares error of an assignment is Σw·x² − Σw·(Σw·x·q)² / (Σw·Σw·q² − (Σw·q)²).
        double sumWXX = 0;
        for (var i = 0; i < x.Length; i++)
        {
            centered[i] = x[i] - sumWX / sumW;
            sumWXX += w[i] * centered[i] * centered[i];
        }
        var best = sumWXX;
        var nmax = levelCount - 1;
        double lowSpan = Math.Max(1, nmax / 2.0), highSpan = nmax + 3;
        for (var j = 0; j < AffineCheckScales; j++)
        {
            var t = lowSpan * Math.Pow(highSpan / lowSpan, j / (AffineCheckScales - 1.0)) / (max - min);
            // From u = −∞ (every q = 0) each value climbs one level at each u = k + 0.5 − x·t.
            var events = 0;
            for (var i = 0; i < x.Length; i++)
            {
                for (var k = 0; k < nmax; k++)
                {
                    times[events] = k + 0.5 - centered[i] * t;
                    moves[events++] = i;
                }
            }
            Array.Sort(times, moves, 0, events);
            double sumWQ = 0, sumWQQ = 0, sumWXQ = 0;
            var level = scratch.LevelIndex.AsSpan(0, x.Length);
            level.Clear();
            for (var e = 0; e < events; e++)
            {
                var i = moves[e];
                sumWQ += w[i];
                sumWQQ += w[i] * (2 * level[i] + 1);
                sumWXQ += w[i] * centered[i];
                level[i]++;
                var det = sumW * sumWQQ - sumWQ * sumWQ;
                if (det > 0) best = Math.Min(best, sumWXX - sumW * sumWXQ * sumWXQ / det);
            }
        }
        return Math.Max(best, 0);
    }

    /// <summary>Least Σw·(s·q − x)² over a continuous scale s of either sign, q the level nearest to x/s: for each sign, starting
    /// scales that put the largest |x| within two level spacings of the outermost level on its side (201 of them), each refined
    /// by Lloyd iterations. Never above Σw·x² (s = 0).</summary>
    private static double ScaledFloorByGrid(ReadOnlySpan<float> x, ReadOnlySpan<float> w, LevelSet levels, Span<double> q, Span<double> signed)
    {
        var values = levels.Values;
        double best = 0;
        for (var i = 0; i < x.Length; i++) best += w[i] * (double)x[i] * x[i];
        foreach (var sign in (ReadOnlySpan<double>)[1.0, -1.0])
        {
            var largest = 0;
            for (var i = 0; i < x.Length; i++)
            {
                signed[i] = sign * x[i];
                if (Math.Abs(signed[i]) > Math.Abs(signed[largest])) largest = i;
            }
            if (signed[largest] == 0) return 0;
            var (outermost, spacing) = signed[largest] > 0
                ? (values[^1], values[^1] - values[^2])
                : (values[0], values[1] - values[0]);
            for (var k = 0; k < GridStarts; k++)
            {
                var scale = signed[largest] / (outermost + Math.Sign(outermost) * spacing * (-2 + 0.02 * k));
                for (var iteration = 0; iteration < LloydIterations; iteration++)
                {
                    for (var i = 0; i < x.Length; i++) q[i] = values[levels.Nearest(signed[i] / scale)];
                    double sxq = 0, sqq = 0;
                    for (var i = 0; i < x.Length; i++)
                    {
                        sxq += w[i] * signed[i] * q[i];
                        sqq += w[i] * q[i] * q[i];
                    }
                    if (sqq <= 0) break;
                    scale = sxq / sqq;
                    double error = 0;
                    for (var i = 0; i < x.Length; i++)
                    {
                        var d = scale * q[i] - signed[i];
                        error += w[i] * d * d;
                    }
                    best = Math.Min(best, error);
                    if (scale <= 0) break;
                }
            }
        }
        return best;
    }

    /// <summary>The exact least Σw·(s·q − x)² over a continuous scale s and levels q: at the optimum every q is the level
    /// nearest to x/s (else moving it would help), so it suffices to visit every assignment "nearest to x·t" as t = 1/s
    /// sweeps (0, ∞) for each sign, each with its least-squares s, whose error is Σw·x² − (Σw·x·q)²/Σw·q².</summary>
    private static double ScaledFloorExact(ReadOnlySpan<float> x, ReadOnlySpan<float> w, LevelSet levels, RowScratch scratch)
    {
        var values = levels.Values;
        var midpoints = levels.Midpoints;
        var start = levels.NearestToZero;
        var times = scratch.EventTimes;
        var moves = scratch.EventMoves;
        var index = scratch.LevelIndex;
        var signed = scratch.Signed;
        double sumWXX = 0;
        for (var i = 0; i < x.Length; i++) sumWXX += w[i] * (double)x[i] * x[i];
        var best = sumWXX;
        foreach (var sign in (ReadOnlySpan<double>)[1.0, -1.0])
        {
            // Near t = 0 every value takes the level nearest zero; then each value passes the midpoints on its side in order.
            var events = 0;
            double sumWXQ = 0, sumWQQ = 0;
            for (var i = 0; i < x.Length; i++)
            {
                signed[i] = sign * x[i];
                index[i] = start;
                sumWXQ += w[i] * signed[i] * values[start];
                sumWQQ += w[i] * values[start] * values[start];
                if (signed[i] > 0)
                {
                    for (var k = start; k < midpoints.Length; k++)
                    {
                        times[events] = midpoints[k] / signed[i];
                        moves[events++] = 2 * i + 1;
                    }
                }
                else if (signed[i] < 0)
                {
                    for (var k = start - 1; k >= 0; k--)
                    {
                        times[events] = midpoints[k] / signed[i];
                        moves[events++] = 2 * i;
                    }
                }
            }
            Array.Sort(times, moves, 0, events);
            if (sumWQQ > 0) best = Math.Min(best, sumWXX - sumWXQ * sumWXQ / sumWQQ);
            for (var e = 0; e < events; e++)
            {
                var i = moves[e] >> 1;
                var before = values[index[i]];
                index[i] += (moves[e] & 1) == 1 ? 1 : -1;
                var after = values[index[i]];
                sumWXQ += w[i] * signed[i] * (after - before);
                sumWQQ += w[i] * (after * after - before * before);
                if (sumWQQ > 0) best = Math.Min(best, sumWXX - sumWXQ * sumWXQ / sumWQQ);
            }
        }
        return Math.Max(best, 0);
    }

    private static void Write(string output, string model, string? imatrixPath, int threads, List<Result> results)
    {
        var report = new Report(DateTime.UtcNow.ToString("O"), model, imatrixPath, threads,
            "Σ c·(y − x)² over every 2-D tensor whose rows are whole 256-weight super-blocks, c = imatrix column importance " +
            "(1 without an imatrix and for tensors it lacks), the same c for every column; ratios are of model sums. " +
            "Optimal: the optimal path as ModelQuantizer runs it (its own weighting: c·x² for Q2_K/Q3_K products, reference " +
            "bytes for Q4_K/Q5_K products without an imatrix, c otherwise). Search: the same search minimising c. " +
            $"Bound: per sub-block a continuous scale (and offset, affine) with nearest levels, best of {GridStarts} starting " +
            $"scales (per sign, type-0) each followed by {LloydIterations} Lloyd iterations. ExactBound: that relaxation solved " +
            "exactly (type-0 only), a true floor for any rounding of the format. *TensorMean: the parameter-weighted mean of " +
            "per-tensor ratios. ReferenceShareWeighedByOne: the share of the reference sum from tensors weighed by 1 (with an " +
            "imatrix: those it lacks, token_embd and output here, whose errors are on another scale and can dominate the sums). " +
            $"AffineBoundCheck (affine formats): on every {AffineCheckStride}th sub-block, the error of a denser search of the " +
            $"relaxation ({AffineCheckScales} scales, each with every offset) over the grid bound's; below 1 means the grid " +
            "bound is above the relaxation's true minimum",
            results);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
        File.WriteAllText(output, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>One format's sub-blocks: how many weights share a scale, the levels, and whether an offset is fitted too.</summary>
    private sealed record SubBlockFormat(GgmlType Type, int SubBlockWeights, LevelSet Levels, bool Affine);

    /// <summary>Sorted level values with the midpoints between neighbours (where the nearest level changes).</summary>
    private sealed class LevelSet
    {
        private readonly bool _unitSpaced;

        private LevelSet(double[] values, bool unitSpaced)
        {
            Values = values;
            Midpoints = values.Zip(values.Skip(1), (a, b) => (a + b) / 2).ToArray();
            NearestToZero = Array.IndexOf(values, values.MinBy(Math.Abs));
            _unitSpaced = unitSpaced;
        }

        public double[] Values { get; }

        public double[] Midpoints { get; }

        public int NearestToZero { get; }

        public static LevelSet Linear(int low, int high) =>
            new(Enumerable.Range(low, high - low + 1).Select(v => (double)v).ToArray(), unitSpaced: true);

        public static LevelSet Table(ReadOnlySpan<sbyte> table) => new(table.ToArray().Select(v => (double)v).ToArray(), unitSpaced: false);

        /// <summary>The index of the level nearest to <paramref name="value"/> (ties either way: both are valid encodings).</summary>
        public int Nearest(double value)
        {
            if (_unitSpaced)
            {
                // Clamped before the cast so that huge quotients (a tiny scale) stay in range.
                return (int)Math.Round(Math.Clamp(value - Values[0], 0, Values.Length - 1));
            }
            int low = 0, high = Midpoints.Length;
            while (low < high)
            {
                var mid = (low + high) / 2;
                if (Midpoints[mid] < value) low = mid + 1;
                else high = mid;
            }
            return low;
        }

        public string Describe() => _unitSpaced ? $"{Values[0]}..{Values[^1]}" : string.Join(',', Values);
    }

    /// <summary>One thread's buffers and running sums.</summary>
    private sealed class RowScratch(int rowLength, int rowBytes, SubBlockFormat format)
    {
        public float[] Source { get; } = new float[rowLength];
        public float[] Dequantized { get; } = new float[rowLength];
        public float[] Weights { get; } = new float[rowLength];
        public byte[] Bytes { get; } = new byte[rowBytes];
        public double[] Levels { get; } = new double[format.SubBlockWeights];
        public double[] Signed { get; } = new double[format.SubBlockWeights];
        public int[] LevelIndex { get; } = new int[format.SubBlockWeights];
        public double[] EventTimes { get; } = new double[format.SubBlockWeights * format.Levels.Midpoints.Length];
        public int[] EventMoves { get; } = new int[format.SubBlockWeights * format.Levels.Midpoints.Length];
        public ErrorSums Sums { get; } = new();
    }

    private sealed class ErrorSums
    {
        public double Reference;
        public double Optimal;
        public double Search;
        public double Bound;
        public double ExactBound;
        public double CheckGridBound;
        public double CheckDenseBound;

        public void Add(ErrorSums other)
        {
            Reference += other.Reference;
            Optimal += other.Optimal;
            Search += other.Search;
            Bound += other.Bound;
            ExactBound += other.ExactBound;
            CheckGridBound += other.CheckGridBound;
            CheckDenseBound += other.CheckDenseBound;
        }
    }

    private sealed record Result(string Format, bool Imatrix, int Tensors, long Weights, int SubBlockWeights, string Levels, bool Affine,
        double Reference, double Optimal, double Search, double Bound, double? ExactBound,
        double OptimalRatio, double SearchRatio, double BoundRatio, double? ExactBoundRatio,
        double OptimalRatioTensorMean, double SearchRatioTensorMean, double BoundRatioTensorMean, double? ExactBoundRatioTensorMean,
        double ReferenceShareWeighedByOne, double? AffineBoundCheck, double Seconds);

    private sealed record Report(string WhenUtc, string Model, string? Imatrix, int Threads, string Metric, IReadOnlyList<Result> Results);
}
