import CBLAS
import Collectives
import _FunnelKernels
import Datasets
import Foundation
import LinearAlgebra
import Dispatch

/// How the learning rates move during a `fit`: a multiplier of the base rates per step.
public enum LearningRateSchedule: Sendable, Equatable {
    /// The base rates throughout.
    case constant
    /// A linear warm-up over the first `warmupSteps` steps (from 1/warmupSteps of the base
    /// rate to all of it), then a cosine decay to `floor` times the base rate at the last step.
    case cosine(warmupSteps: Int, floor: Float)

    /// The multiplier at 0-based `step` of `total` steps.
    public func factor(step: Int, total: Int) -> Float {
        switch self {
        case .constant:
            return 1
        case .cosine(let warmup, let floor):
            if step < warmup { return Float(step + 1) / Float(warmup) }
            let span = max(1, total - 1 - warmup)
            let t = min(1, Float(step - warmup) / Float(span))
            return floor + (1 - floor) * 0.5 * (1 + cos(Float.pi * t))
        }
    }
}

/// How embedding rows are updated. Both touch only the rows a batch used.
public enum EmbeddingOptimizer: String, Sendable, Equatable, CaseIterable {
    /// Row-wise Adagrad: one accumulated squared-gradient scalar per row (a float per row of state).
    case adagrad
    /// Lazy Adam: per-element first and second moments, updated only for touched rows
    /// (twice the table's size in state), bias-corrected by the global step.
    case lazyAdam = "lazy-adam"
}

extension EntityFeatures {
    /// These features with every id field `width` wide (nil: unchanged).
    func withIDWidth(_ width: Int?) -> EntityFeatures {
        guard let width, width > 0 else { return self }
        var f = self
        for i in f.fields.indices where f.fields[i].kind == .id { f.fields[i].dimension = width }
        return f
    }
}

/// How the logQ correction estimates an item's probability of filling a softmax column.
public enum LogQEstimate: String, Sendable, Equatable, CaseIterable {
    /// The item's share of the training pairs `fit` was given (exact for in-batch sampling,
    /// and it does not saturate: an item in every batch still differs from one that fills
    /// a tenth of each batch).
    case counts
    /// Yi et al.'s streaming estimate: 1 / the mean number of steps between sightings
    /// (what a trainer without the whole log can know; it saturates at one per batch).
    case streaming
}

/// Where a `fit` is, reported after every batch (for progress bars).
public struct TrainingProgress: Sendable {
    public var epoch: Int
    public var epochs: Int
    public var examplesDone: Int
    public var examplesTotal: Int
    /// Mean loss of the epoch's batches so far.
    public var loss: Float
    public var examplesPerSecond: Double
    /// The schedule's multiplier of the base learning rates at this step.
    public var rateFactor: Float
}

/// Training settings.
public struct TwoTowerParameters: Sendable {
    public var dimension = 64
    public var hidden = [128]
    public var temperature: Float = 0.05
    public var batchSize = 1024
    public var epochs = 20
    public var learningRate: Float = 0.003
    public var embeddingLearningRate: Float = 0.05
    /// The embedding tables' optimizer (the dense layers always use Adam).
    public var embeddingOptimizer = EmbeddingOptimizer.adagrad
    /// How both learning rates change over the steps of a `fit`.
    public var schedule = LearningRateSchedule.constant
    /// Probability of hiding an entity's id during training (cold-start robustness).
    public var idDropout: Float = 0.1
    /// The width of both towers' id embeddings when a new model is built (nil: the
    /// features' own, from the schema or the fourth-root rule).
    public var idWidth: Int? = nil
    /// Subtract log of the item's sampling probability from the logits (Yi et al. 2019).
    public var logQCorrection = true
    /// Where that probability comes from.
    public var logQEstimate = LogQEstimate.counts
    /// Extra negatives per batch, drawn uniformly from the whole catalog and shared by every
    /// row (mixed negative sampling: rare items get pushed away too, not only the popular
    /// ones in-batch sampling favours). Their logQ correction is log(count / catalog size).
    public var randomNegatives = 0
    /// Stop when validation NDCG@10 has not improved for this many epochs (0: never).
    public var patience = 3
    /// When `fit` gets validation scores, end with the weights of the best-scoring epoch.
    public var restoreBest = true
    public var seed: UInt64 = 42
    /// Training threads: each step splits its batch into this many row blocks (data
    /// parallelism). A given thread count always trains the same model.
    public var threads = 1

    public init() {}
}

/// A user tower and an item tower trained with in-batch sampled softmax: each user's
/// positive item competes with the other items of the batch.
public final class TwoTowerModel {
    public let users: Tower
    public let items: Tower
    public let parameters: TwoTowerParameters
    /// Streaming frequency estimate per item: last batch seen and mean gap between sightings.
    var lastSeen: [Double]
    var gap: [Double]
    var step = 0.0
    /// log(count / total) per item over the pairs of the current `fit` (`LogQEstimate.counts`).
    var logFrequency: [Float]? = nil
    /// The B x B logits of the last step (reused from step to step).
    let logits = Scratch()
    /// The learning-rate schedule's multiplier for the next step (set by `fit`).
    var rateFactor: Float = 1
    /// The ranks training this model together (data parallelism over MPI or threads):
    /// each calls `fit` or `trainStep` with its own part of the interactions, in lockstep.
    /// The default is the group of one.
    public var communicator: any Communicator = SingleProcess.shared {
        didSet {
            users.communicator = communicator
            items.communicator = communicator
        }
    }

    public convenience init(userFeatures: EntityFeatures, itemFeatures: EntityFeatures, parameters: TwoTowerParameters) {
        self.init(userFeatures: userFeatures, itemFeatures: itemFeatures, parameters: parameters, towers: nil)
    }

    init(userFeatures: EntityFeatures, itemFeatures: EntityFeatures, parameters: TwoTowerParameters, towers: (Tower, Tower)?) {
        self.parameters = parameters
        users = towers?.0 ?? Tower(features: userFeatures.withIDWidth(parameters.idWidth), hidden: parameters.hidden,
                                   outputDimension: parameters.dimension, seed: parameters.seed)
        items = towers?.1 ?? Tower(features: itemFeatures.withIDWidth(parameters.idWidth), hidden: parameters.hidden,
                                   outputDimension: parameters.dimension, seed: parameters.seed &+ 1)
        lastSeen = [Double](repeating: -1, count: itemFeatures.count)
        gap = [Double](repeating: 100, count: itemFeatures.count)
    }

    /// One optimization step on a batch of (user, item) positives; returns the mean loss.
    ///
    /// Loss: mean over rows of -log softmax(s_i)[i], with s_ij = <u_i, v_j> / T - log q_j,
    /// where q_j is the estimated probability that item j appears in a batch, and
    /// s_ij = -inf when j != i holds the same item as i (an accidental hit).
    @discardableResult
    public func trainStep(users batchUsers: [Int32], items batchItems: [Int32], rng: inout SeededGenerator) -> Float {
        let loss = stepGradients(users: batchUsers, items: batchItems, rng: &rng)
        let lr = parameters.learningRate * rateFactor, elr = parameters.embeddingLearningRate * rateFactor
        users.step(learningRate: lr, embeddingLearningRate: elr, optimizer: parameters.embeddingOptimizer)
        items.step(learningRate: lr, embeddingLearningRate: elr, optimizer: parameters.embeddingOptimizer)
        return loss
    }

    /// A step's gradients, left in the towers: the dense ones summed over the ranks when
    /// there are several. Returns the (global) batch's mean loss.
    func stepGradients(users batchUsers: [Int32], items batchItems: [Int32], rng: inout SeededGenerator) -> Float {
        guard communicator.size > 1 else { return computeGradients(users: batchUsers, items: batchItems, rng: &rng) }
        let loss = computeGradientsDataParallel(users: batchUsers, items: batchItems, rng: &rng)
        users.allreduceDenseGradients()
        items.allreduceDenseGradients()
        return loss
    }

    /// Forward and backward on a batch: leaves the gradients in the towers, returns the loss.
    /// Runs on `parameters.threads` threads, each taking a block of the batch's rows.
    func computeGradients(users batchUsers: [Int32], items batchItems: [Int32], rng: inout SeededGenerator) -> Float {
        let bsz = batchUsers.count, d = parameters.dimension, threads = max(1, parameters.threads)
        precondition(batchItems.count == bsz, "\(bsz) users and \(batchItems.count) items in a batch")
        users.threads = threads
        items.threads = threads
        // The columns of the softmax: the batch's items, then the random negatives.
        var columns = batchItems
        let catalog = items.features.count, extra = max(0, parameters.randomNegatives)
        for _ in 0..<extra { columns.append(Int32(rng.nextInt(below: catalog))) }
        let nc = columns.count
        let u = users.forward(batchUsers, idDropout: parameters.idDropout, rng: &rng)
        let v = items.forward(columns, idDropout: parameters.idDropout, rng: &rng)
        // logQ: update the streaming estimate, then the correction per column.
        step += 1
        var logQ = [Float](repeating: 0, count: nc)
        if parameters.logQCorrection {
            for (j, it) in batchItems.enumerated() {
                let i = Int(it)
                if lastSeen[i] >= 0 { gap[i] = 0.9 * gap[i] + 0.1 * (step - lastSeen[i]) }
                lastSeen[i] = step
                logQ[j] = logFrequency?[i] ?? Float(log(1 / max(gap[i], 1)))
            }
            // A uniform column's probability on the same scale as the in-batch ones (per
            // slot when from counts, per batch when streaming).
            let uniform = logFrequency == nil ? Double(extra) / Double(catalog) : 1 / Double(catalog)
            for j in bsz..<nc { logQ[j] = Float(log(uniform)) }
        }
        // Logits s = U V^T / T (B x columns), then per row the masked, corrected softmax and
        // its gradient dS = (softmax - onehot) / B in place, then dU = dS V / T by row
        // blocks, and dV = dS^T U / T by column blocks.
        let s = logits.reserve(bsz * nc), inverseT = 1 / parameters.temperature
        var du = [Float](repeating: 0, count: bsz * d), dv = [Float](repeating: 0, count: nc * d)
        let blocks = Tower.rowBlocks(bsz, threads: threads), columnBlocks = Tower.rowBlocks(nc, threads: threads)
        var blockLoss = [Float](repeating: 0, count: blocks.count)
        let useLogQ = parameters.logQCorrection
        u.withUnsafeBufferPointer { up in v.withUnsafeBufferPointer { vp in
        columns.withUnsafeBufferPointer { itemsp in logQ.withUnsafeBufferPointer { qp in
        du.withUnsafeMutableBufferPointer { dup in dv.withUnsafeMutableBufferPointer { dvp in
        blockLoss.withUnsafeMutableBufferPointer { lossp in
            let u = up.baseAddress!, v = vp.baseAddress!, du = dup.baseAddress!, dv = dvp.baseAddress!
            let n = Int32(bsz), cols = Int32(nc), dd = Int32(d)
            Parallel.forEach(blocks: blocks.count, threads: threads) { b, _ in
                let rows = blocks[b], m = Int32(rows.count), r0 = rows.lowerBound
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, cols, dd,
                            inverseT, u + r0 * d, dd, v, dd, 0, s + r0 * nc, cols)
                lossp[b] = fk_inbatch_softmax_rows(s, nc, r0, rows.upperBound, itemsp.baseAddress!,
                                                   useLogQ ? qp.baseAddress! : nil, 1 / Float(bsz))
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, dd, cols,
                            inverseT, s + r0 * nc, cols, v, dd, 0, du + r0 * d, dd)
            }
            Parallel.forEach(blocks: columnBlocks.count, threads: threads) { b, _ in
                let cs = columnBlocks[b], m = Int32(cs.count), c0 = cs.lowerBound
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, dd, n,
                            inverseT, s + c0, cols, u, dd, 0, dv + c0 * d, dd)
            }
        }}}}}}}
        users.backward(du)
        items.backward(dv)
        return blockLoss.reduce(0, +) / Float(bsz)
    }

    /// Unit-length embeddings of every entity of one side (no dropout), as a matrix.
    public func embedAll(_ tower: Tower, withoutID: Bool = false) -> Matrix {
        var rng = SeededGenerator(seed: 0)
        let n = tower.features.count
        var out = [Float]()
        out.reserveCapacity(n * parameters.dimension)
        var start = 0
        while start < n {
            let batch = (start..<min(n, start + 4096)).map { Int32($0) }
            out.append(contentsOf: tower.forward(batch, idDropout: withoutID ? 1 : 0, rng: &rng))
            start += 4096
        }
        return try! Matrix(rows: n, columns: parameters.dimension, storage: out)
    }
}

/// What one epoch of `fit` did.
public struct EpochReport: Sendable {
    public var epoch: Int
    public var loss: Float
    public var examplesPerSecond: Double
}

extension TwoTowerModel {
    /// Trains on `pairs` for up to `parameters.epochs` epochs of shuffled mini-batches.
    ///
    /// After each epoch `onEpoch` receives the report and returns a validation score (or nil);
    /// training stops early when that score has not improved for `parameters.patience` epochs.
    ///
    /// `epochsDone` resumes a run whose first epochs were trained before (a checkpoint's
    /// weights already loaded): epochs `epochsDone + 1 ... epochs` run, the learning-rate
    /// schedule continues where it was, and the best epoch is chosen among those run now.
    /// - Returns: the reports of the epochs run.
    @discardableResult
    public func fit(_ pairs: [(user: Int32, item: Int32)], rng: inout SeededGenerator, epochsDone: Int = 0,
                    progress: ((TrainingProgress) -> Void)? = nil,
                    onEpoch: (EpochReport) -> Double? = { _ in nil }) -> [EpochReport] {
        var order = Array(pairs.indices)
        var reports = [EpochReport]()
        var best = -Double.infinity, bestEpoch = 0
        let bs = max(1, parameters.batchSize), epochs = max(1, parameters.epochs)
        // Data-parallel: `pairs` is this rank's part, a global batch of `bs` is cut into
        // one share per rank, and every rank runs as many steps as the rank with the most
        // pairs (a rank that runs out starts its shuffled order again).
        let comm = communicator, distributed = comm.size > 1
        let localBatch = distributed ? max(1, comm.share(of: bs).count) : bs
        precondition(!distributed || !pairs.isEmpty, "rank \(comm.rank) has no interactions to train on")
        let stepsPerEpoch = distributed ? Int(comm.max(Int64((order.count + localBatch - 1) / localBatch)))
                                        : (order.count + bs - 1) / bs
        let examplesPerEpoch = distributed ? Int(comm.sum(Int64(order.count))) : order.count
        var globalStep = 0
        var bestWeights: Weights? = nil
        if parameters.logQCorrection && parameters.logQEstimate == .counts {
            logFrequency = Self.logFrequencies(pairs, items: items.features.count, communicator: comm)
        }
        defer { rateFactor = 1; logFrequency = nil }
        let first = min(max(0, epochsDone), epochs - 1) + 1
        globalStep = (first - 1) * stepsPerEpoch
        for epoch in first...epochs {
            order.shuffle(using: &rng)
            var loss: Float = 0, batches = 0, start = 0
            let t0 = DispatchTime.now().uptimeNanoseconds
            // A step splits its batch across `parameters.threads` threads itself, so each
            // sgemm runs on the calling thread.
            BLAS.withThreads(1) {
                while distributed ? batches < stepsPerEpoch : start < order.count {
                    let idx = distributed ? (start..<(start + localBatch)).map { order[$0 % order.count] }
                                          : Array(order[start..<min(order.count, start + bs)])
                    rateFactor = parameters.schedule.factor(step: globalStep, total: stepsPerEpoch * epochs)
                    loss += trainStep(users: idx.map { pairs[$0].user }, items: idx.map { pairs[$0].item }, rng: &rng)
                    batches += 1
                    globalStep += 1
                    start += distributed ? localBatch : bs
                    if let progress {
                        let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                        let done = distributed ? min(batches * bs, examplesPerEpoch) : min(start, order.count)
                        progress(TrainingProgress(epoch: epoch, epochs: epochs, examplesDone: done, examplesTotal: examplesPerEpoch,
                                                  loss: loss / Float(batches), examplesPerSecond: Double(done) / max(seconds, 1e-9),
                                                  rateFactor: rateFactor))
                    }
                }
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            let report = EpochReport(epoch: epoch, loss: loss / Float(max(1, batches)), examplesPerSecond: Double(examplesPerEpoch) / max(seconds, 1e-9))
            reports.append(report)
            if distributed {
                // Every rank holds the whole model between epochs (to evaluate or snapshot it).
                users.synchronizeTables()
                items.synchronizeTables()
            }
            var verdict = onEpoch(report)
            if distributed {
                // Rank 0's validation score decides for everyone.
                var v: [Double] = verdict.map { [1, $0] } ?? [0, 0]
                comm.broadcast(&v, root: 0)
                verdict = v[0] != 0 ? v[1] : nil
            }
            if let score = verdict {
                if score > best {
                    best = score
                    bestEpoch = epoch
                    if parameters.restoreBest { bestWeights = weights() }
                }
                if parameters.patience > 0 && epoch - bestEpoch >= parameters.patience { break }
            }
        }
        // Early stopping hands back the best epoch's weights, not the last one's.
        if let w = bestWeights, bestEpoch != reports.count { restore(w) }
        return reports
    }
}

extension TwoTowerModel {
    /// log(count / pairs) per item, the probability that a softmax column holds the item
    /// under in-batch sampling; an item absent from `pairs` counts as half a sighting (it
    /// can only be a random negative, whose column has its own correction).
    static func logFrequencies(_ pairs: [(user: Int32, item: Int32)], items: Int,
                               communicator comm: any Communicator = SingleProcess.shared) -> [Float] {
        var counts = [Double](repeating: 0, count: items)
        for p in pairs where p.item >= 0 && Int(p.item) < items { counts[Int(p.item)] += 1 }
        comm.allreduceSum(&counts)
        let total = Double(max(1, comm.sum(Int64(pairs.count))))
        return counts.map { Float(log(max($0, 0.5) / total)) }
    }
}

extension TwoTowerModel {
    /// A model that starts from this one's weights (towers are shared, not copied) with new
    /// training settings, for incremental retraining: continue `fit` on new interactions.
    public func continuing(with parameters: TwoTowerParameters) -> TwoTowerModel {
        TwoTowerModel(users: users, items: items, parameters: parameters, lastSeen: lastSeen, gap: gap, step: step)
    }

    convenience init(users: Tower, items: Tower, parameters: TwoTowerParameters, lastSeen: [Double], gap: [Double], step: Double) {
        self.init(userFeatures: users.features, itemFeatures: items.features, parameters: parameters, towers: (users, items))
        self.lastSeen = lastSeen
        self.gap = gap
        self.step = step
    }
}

extension TwoTowerModel {
    /// A query vector for a user known only by a few items they touched: the normalized
    /// mean of those items' embeddings (the items must be known to the model).
    /// - Throws: `TwoTowerError.invalidData` for no items or an item outside the catalog.
    public func userVector(touched itemIDs: [Int32]) throws -> [Float] {
        guard !itemIDs.isEmpty else { throw TwoTowerError.invalidData("no touched items to pool") }
        if let bad = itemIDs.first(where: { $0 < 0 || Int($0) >= items.features.count }) {
            throw TwoTowerError.invalidData("item \(bad) is outside the \(items.features.count) items of the model")
        }
        var rng = SeededGenerator(seed: 0)
        let v = items.forward(itemIDs, rng: &rng)
        let d = parameters.dimension
        var mean = [Float](repeating: 0, count: d)
        for r in 0..<itemIDs.count { for j in 0..<d { mean[j] += v[r * d + j] } }
        let norm = max(mean.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
        return mean.map { $0 / norm }
    }

    /// A query vector for a user the model has never seen, from their features alone:
    /// `features` are the user side's features grown by that user (see
    /// `EntityFeatures.appending(table:from:)`), `row` the user's row in them. The id is
    /// hidden, as in id dropout, so only the attributes speak.
    public func userVector(features: EntityFeatures, row: Int) throws -> [Float] {
        guard (0..<features.count).contains(row) else {
            throw TwoTowerError.invalidData("row \(row) is outside the \(features.count) users of the features")
        }
        let tower = features.count == users.features.count ? users : try users.grown(to: features, seed: parameters.seed)
        var rng = SeededGenerator(seed: 0)
        return tower.forward([Int32(row)], idDropout: 1, rng: &rng)
    }
}

extension TwoTowerModel {
    /// Both towers' embedding tables and dense layers (optimizer state excluded).
    struct Weights {
        var userTables: [[Float]], userLayers: [DenseLayer]
        var itemTables: [[Float]], itemLayers: [DenseLayer]
    }

    func weights() -> Weights {
        Weights(userTables: users.tables, userLayers: users.layers, itemTables: items.tables, itemLayers: items.layers)
    }

    func restore(_ w: Weights) {
        users.tables = w.userTables
        users.layers = w.userLayers
        items.tables = w.itemTables
        items.layers = w.itemLayers
    }
}
