import Collectives
import Datasets
import Foundation
import LinearAlgebra

/// Training settings; the defaults are LightGBM's.
public struct GBDTParameters: Sendable, Equatable {
    public var objective: Objective = .lambdarank
    public var rounds = 100
    public var learningRate: Double = 0.1
    public var numLeaves = 31
    /// Maximum depth; 0 or less means unlimited (leaf-wise growth bounded by numLeaves).
    public var maxDepth = -1
    public var minDataInLeaf = 20
    public var minSumHessianInLeaf: Double = 1e-3
    public var lambdaL2: Double = 0
    public var maxBin = 255
    /// Fraction of features each tree may use.
    public var featureFraction: Double = 1
    /// Fraction of rows each bagging round uses, redrawn every `baggingFrequency` rounds (0: off).
    public var baggingFraction: Double = 1
    public var baggingFrequency = 0
    public var seed: UInt64 = 0
    public var threads = 1
    /// Stop when the first validation metric has not improved for this many rounds (0: never).
    public var earlyStoppingRounds = 0
    public var lambdaRank = LambdaRankOptions()
    /// NDCG/MAP positions reported on validation data.
    public var evalAt = [1, 3, 5, 10]

    public init() {}

    func validate() throws {
        guard rounds >= 1, rounds <= 1_000_000 else { throw GBDTError.invalidParameter("rounds must be in 1...1000000") }
        guard learningRate > 0, learningRate.isFinite else { throw GBDTError.invalidParameter("learning rate must be positive and finite") }
        guard numLeaves <= 1 << 16 else { throw GBDTError.invalidParameter("num_leaves must be at most 65536") }
        guard minSumHessianInLeaf >= 0, minSumHessianInLeaf.isFinite else {
            throw GBDTError.invalidParameter("min_sum_hessian_in_leaf must be non-negative and finite")
        }
        guard threads >= 1 else { throw GBDTError.invalidParameter("threads must be at least 1") }
        guard numLeaves >= 2 else { throw GBDTError.invalidParameter("num_leaves must be at least 2") }
        guard minDataInLeaf >= 1 else { throw GBDTError.invalidParameter("min_data_in_leaf must be at least 1") }
        guard (2...255).contains(maxBin) else { throw GBDTError.invalidParameter("max_bin must be in 2...255") }
        guard featureFraction > 0 && featureFraction <= 1 else { throw GBDTError.invalidParameter("feature_fraction must be in (0, 1]") }
        guard baggingFraction > 0 && baggingFraction <= 1 else { throw GBDTError.invalidParameter("bagging_fraction must be in (0, 1]") }
        guard lambdaL2 >= 0, lambdaL2.isFinite else { throw GBDTError.invalidParameter("lambda_l2 must be non-negative and finite") }
    }
}

/// One round's evaluation on the validation data.
public struct RoundMetrics: Sendable {
    public var round: Int
    /// Metric name -> value, e.g. "ndcg@10", "auc", "binary_logloss", "rmse".
    public var values: [(name: String, value: Double)]
}

/// Histogram gradient boosting (LightGBM's algorithm family).
public enum GBDTTrainer {
    /// Trains a model on `train`, evaluating `valid` after every round when given.
    ///
    /// Deterministic for a fixed seed and thread count.
    ///
    /// Data-parallel when `communicator` has several ranks: `train` is this rank's part
    /// (whole queries; `LabeledData.part(_:of:)`), `valid` the same on every rank (or nil
    /// on all). Bins are learned from the same sample of rows as one process would take,
    /// histograms are summed over the ranks, and without bagging the ranks grow exactly the
    /// trees one process grows on all the rows (up to the order of floating-point sums).
    /// With bagging each rank draws its own rows.
    /// - Throws: on bad parameters, or data that does not fit the objective (binary labels
    ///   outside {0, 1}, lambdarank without query groups, mismatched feature counts).
    /// - Parameter progress: called after every boosting round with (rounds done, rounds planned).
    public static func train(_ p: GBDTParameters, train: LabeledData, valid: LabeledData? = nil,
                             communicator comm: any Communicator = SingleProcess.shared,
                             log: ((String) -> Void)? = nil,
                             progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> (model: GBDTModel, history: [RoundMetrics]) {
        try p.validate()
        let distributed = comm.size > 1
        if distributed {
            // Every rank must fail the same way, or the others would wait in a collective.
            let shapes = comm.allgather([Int64(train.featureCount), train.weights == nil ? 0 : 1, train.groups == nil ? 0 : 1])
            for r in 0..<comm.size where Array(shapes.values[(3 * r)..<(3 * r + 3)]) != Array(shapes.values[0..<3]) {
                throw GBDTError.invalidData("rank \(r)'s training part differs from rank 0's in feature count, weights or query groups")
            }
            let bad = comm.allgather([(try? check(train, p.objective, "training", allowEmpty: true)) == nil ? 1 as UInt8 : 0])
            if let r = bad.values.firstIndex(of: 1) {
                try check(train, p.objective, "training", allowEmpty: true)
                throw GBDTError.invalidData("rank \(r)'s training part is not valid for \(p.objective)")
            }
            guard comm.sum(Int64(train.rowCount)) > 0 else { throw GBDTError.invalidData("the training data has no rows") }
        } else {
            try check(train, p.objective, "training")
        }
        if let valid {
            try check(valid, p.objective, "validation")
            guard valid.featureCount <= train.featureCount || true else { throw GBDTError.invalidData("") }
        }
        let n = train.rowCount
        let bins = distributed ? Self.sharedBins(train.features, maxBin: p.maxBin, comm) : FeatureBins(features: train.features, maxBin: p.maxBin)
        let binned = BinnedData(train.features, bins: bins, threads: p.threads, communicator: comm)
        var learner = TreeLearner(data: binned, numLeaves: p.numLeaves, maxDepth: p.maxDepth,
                                  minDataInLeaf: p.minDataInLeaf, minSumHessian: p.minSumHessianInLeaf,
                                  lambdaL2: p.lambdaL2, threads: p.threads)
        learner.communicator = comm
        let initScore = Self.initScore(p.objective, train, comm)
        var model = GBDTModel(objective: p.objective, trees: [], initScore: initScore, featureCount: train.featureCount)
        var scores = [Double](repeating: initScore, count: n)
        var validScores = valid.map { [Double](repeating: initScore, count: $0.rowCount) } ?? []
        var g = [Float](repeating: 0, count: n), h = [Float](repeating: 0, count: n)
        var rng = SeededGenerator(seed: p.seed)
        // Several ranks draw the same feature subsets (from `rng`) but each its own bag.
        var bagRNG = SeededGenerator(seed: p.seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(comm.rank + 1))
        var bag = (0..<Int32(n)).map { $0 }
        let usable = (0..<train.featureCount).filter { bins.valueBins($0) > 1 || binned.hasMissing[$0] }
        var history = [RoundMetrics]()
        var bestValue = -Double.infinity, bestRound = 0

        let queries = p.objective == .lambdarank
            ? LambdaRankQueries(groups: train.groups ?? [0, n], labels: train.labels, rank: p.lambdaRank) : nil
        for round in 0..<p.rounds {
            Gradients.compute(p.objective, scores: scores, labels: train.labels, weights: train.weights,
                              groups: train.groups, rank: p.lambdaRank, g: &g, h: &h, threads: p.threads, queries: queries)
            if p.baggingFrequency > 0 && p.baggingFraction < 1 && round % p.baggingFrequency == 0 {
                bag = distributed ? (0..<Int32(n)).filter { _ in bagRNG.nextUnitDouble() < p.baggingFraction }
                                  : (0..<Int32(n)).filter { _ in rng.nextUnitDouble() < p.baggingFraction }
            }
            var features = usable
            if p.featureFraction < 1 {
                features.shuffle(using: &rng)
                features = Array(features.prefix(max(1, Int((Double(usable.count) * p.featureFraction).rounded())))).sorted()
            }
            var rows = bag
            var (tree, thresholdBins, leafRanges) = learner.grow(rows: &rows, g: g, h: h, features: features)
            if tree.isLeafOnly {
                log?("round \(round + 1): no split improves the loss; stopping")
                break
            }
            for i in 0..<tree.feature.count {
                tree.threshold[i] = Double(bins.upperBounds[Int(tree.feature[i])][thresholdBins[i]])
            }
            for i in 0..<tree.leafValue.count { tree.leafValue[i] *= p.learningRate }
            model.trees.append(tree)
            progress?(round + 1, p.rounds)
            // Rows in the bag: their leaf is known from the partition. The rest: walk the tree.
            for (leaf, range) in leafRanges.enumerated() {
                let v = tree.leafValue[leaf]
                for i in range { scores[Int(rows[i])] += v }
            }
            if rows.count < n {
                var inBag = [Bool](repeating: false, count: n)
                for r in rows { inBag[Int(r)] = true }
                train.features.storage.withUnsafeBufferPointer { xp in
                    let cols = train.featureCount
                    for r in 0..<n where !inBag[r] { scores[r] += tree.predict(xp.baseAddress! + r * cols) }
                }
            }
            if let valid {
                valid.features.storage.withUnsafeBufferPointer { xp in
                    let cols = valid.featureCount
                    for r in 0..<valid.rowCount { validScores[r] += tree.predict(xp.baseAddress! + r * cols) }
                }
                let m = evaluate(p.objective, scores: validScores, data: valid, evalAt: p.evalAt, sigmoid: model.sigmoid)
                history.append(RoundMetrics(round: round + 1, values: m))
                let primary = m.first!
                let better = primary.name.contains("loss") || primary.name == "rmse" ? -primary.value : primary.value
                if better > bestValue {
                    bestValue = better
                    bestRound = round + 1
                }
                if (round + 1) % 10 == 0 || round == 0 {
                    log?("round \(round + 1): " + m.map { "\($0.name) \(String(format: "%.5f", $0.value))" }.joined(separator: "  "))
                }
                if p.earlyStoppingRounds > 0 && round + 1 - bestRound >= p.earlyStoppingRounds {
                    log?("early stopping at round \(round + 1); best round \(bestRound)")
                    model.trees.removeLast(model.trees.count - bestRound)
                    break
                }
            }
        }
        return (model, history)
    }

    static func check(_ d: LabeledData, _ objective: Objective, _ what: String, allowEmpty: Bool = false) throws {
        guard d.rowCount > 0 || allowEmpty else { throw GBDTError.invalidData("the \(what) data has no rows") }
        guard d.labels.count == d.rowCount else { throw GBDTError.invalidData("the \(what) data has \(d.labels.count) labels for \(d.rowCount) rows") }
        if let w = d.weights, w.count != d.rowCount { throw GBDTError.invalidData("the \(what) data has \(w.count) weights for \(d.rowCount) rows") }
        switch objective {
        case .binary:
            if let bad = d.labels.firstIndex(where: { $0 != 0 && $0 != 1 }) {
                throw GBDTError.invalidData("binary labels must be 0 or 1; \(what) row \(bad) has \(d.labels[bad])")
            }
        case .lambdarank:
            guard let g = d.groups, g.count >= (allowEmpty && d.rowCount == 0 ? 1 : 2), g.last == d.rowCount else {
                throw GBDTError.invalidData("lambdarank needs query groups for the \(what) data (qid: tokens or a .query file)")
            }
            if let bad = d.labels.firstIndex(where: { $0 < 0 || $0 > 31 || $0 != $0.rounded() }) {
                throw GBDTError.invalidData("lambdarank labels must be integers 0...31; \(what) row \(bad) has \(d.labels[bad])")
            }
        case .regression:
            break
        }
    }

    /// Bins every rank agrees on, from the rows one process would sample: every
    /// `rows / sampleRows`-th row of the whole data (counted across the ranks in order),
    /// gathered to every rank.
    static func sharedBins(_ local: Matrix, maxBin: Int, _ comm: any Communicator, sampleRows: Int = 200_000) -> FeatureBins {
        let counts = comm.allgather([Int64(local.rows)]).values.map(Int.init)
        let offset = counts.prefix(comm.rank).reduce(0, +), total = counts.reduce(0, +)
        let step = max(1, total / max(1, sampleRows)), d = local.columns
        var sample = [Float]()
        var r = (step - offset % step) % step
        while r < local.rows {
            for j in 0..<d { sample.append(local[r, j]) }
            r += step
        }
        let all = comm.allgather(sample).values
        let m = try! Matrix(rows: all.count / max(1, d), columns: d, storage: d == 0 ? [] : all)
        return FeatureBins(features: m, maxBin: maxBin, sampleRows: Int.max)
    }

    static func initScore(_ objective: Objective, _ d: LabeledData, _ comm: any Communicator = SingleProcess.shared) -> Double {
        var s = 0.0, w = 0.0
        for i in 0..<d.rowCount {
            let wi = Double(d.weights?[i] ?? 1)
            s += wi * Double(d.labels[i])
            w += wi
        }
        if comm.size > 1 {
            var t = [s, w]
            comm.allreduceSum(&t)
            (s, w) = (t[0], t[1])
        }
        let mean = s / max(w, 1e-300)
        switch objective {
        case .regression: return mean
        case .binary:
            let p = min(max(mean, 1e-15), 1 - 1e-15)
            return log(p / (1 - p))
        case .lambdarank: return 0
        }
    }

    /// The metrics reported for an objective: NDCG@k and MAP@k for ranking, AUC and
    /// logloss for binary, RMSE for regression. The first is the early-stopping metric
    /// (the largest k's NDCG for ranking).
    public static func evaluate(_ objective: Objective, scores: [Double], data: LabeledData,
                                evalAt: [Int], sigmoid: Double = 1) -> [(name: String, value: Double)] {
        switch objective {
        case .lambdarank:
            let groups = data.groups ?? [0, data.rowCount]
            var m = [(String, Double)]()
            for k in evalAt.sorted(by: >) { m.append(("ndcg@\(k)", RankingMetrics.ndcg(at: k, scores: scores, labels: data.labels, groups: groups))) }
            for k in evalAt.sorted(by: >) { m.append(("map@\(k)", RankingMetrics.map(at: k, scores: scores, labels: data.labels, groups: groups))) }
            return m
        case .binary:
            let probs = scores.map { 1 / (1 + exp(-sigmoid * $0)) }
            return [("auc", RankingMetrics.auc(scores: scores, labels: data.labels, weights: data.weights)),
                    ("binary_logloss", RankingMetrics.logloss(probabilities: probs, labels: data.labels, weights: data.weights))]
        case .regression:
            return [("rmse", RankingMetrics.rmse(predictions: scores, labels: data.labels))]
        }
    }
}
