import CBLAS
import Datasets
import Foundation
import LinearAlgebra

/// Training settings.
public struct TwoTowerParameters: Sendable {
    public var dimension = 64
    public var hidden = [128]
    public var temperature: Float = 0.05
    public var batchSize = 1024
    public var epochs = 20
    public var learningRate: Float = 0.003
    public var embeddingLearningRate: Float = 0.05
    /// Probability of hiding an entity's id during training (cold-start robustness).
    public var idDropout: Float = 0.1
    /// Subtract log of the streaming item-frequency estimate from the logits (Yi et al. 2019).
    public var logQCorrection = true
    /// Stop when validation NDCG@10 has not improved for this many epochs (0: never).
    public var patience = 3
    public var seed: UInt64 = 42
    /// OpenBLAS threads for the training steps' matrix products (1: deterministic).
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

    public convenience init(userFeatures: EntityFeatures, itemFeatures: EntityFeatures, parameters: TwoTowerParameters) {
        self.init(userFeatures: userFeatures, itemFeatures: itemFeatures, parameters: parameters, towers: nil)
    }

    init(userFeatures: EntityFeatures, itemFeatures: EntityFeatures, parameters: TwoTowerParameters, towers: (Tower, Tower)?) {
        self.parameters = parameters
        users = towers?.0 ?? Tower(features: userFeatures, hidden: parameters.hidden, outputDimension: parameters.dimension, seed: parameters.seed)
        items = towers?.1 ?? Tower(features: itemFeatures, hidden: parameters.hidden, outputDimension: parameters.dimension, seed: parameters.seed &+ 1)
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
        let loss = computeGradients(users: batchUsers, items: batchItems, rng: &rng)
        users.step(learningRate: parameters.learningRate, embeddingLearningRate: parameters.embeddingLearningRate)
        items.step(learningRate: parameters.learningRate, embeddingLearningRate: parameters.embeddingLearningRate)
        return loss
    }

    /// Forward and backward on a batch: leaves the gradients in the towers, returns the loss.
    func computeGradients(users batchUsers: [Int32], items batchItems: [Int32], rng: inout SeededGenerator) -> Float {
        let bsz = batchUsers.count, d = parameters.dimension
        let u = users.forward(batchUsers, idDropout: parameters.idDropout, rng: &rng)
        let v = items.forward(batchItems, idDropout: parameters.idDropout, rng: &rng)
        // logQ: update the streaming estimate, then the correction per column.
        step += 1
        var logQ = [Float](repeating: 0, count: bsz)
        if parameters.logQCorrection {
            for (j, it) in batchItems.enumerated() {
                let i = Int(it)
                if lastSeen[i] >= 0 { gap[i] = 0.9 * gap[i] + 0.1 * (step - lastSeen[i]) }
                lastSeen[i] = step
                logQ[j] = Float(log(1 / max(gap[i], 1)))
            }
        }
        var s = [Float](repeating: 0, count: bsz * bsz)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(bsz), Int32(bsz), Int32(d),
                    1 / parameters.temperature, u, Int32(d), v, Int32(d), 0, &s, Int32(bsz))
        var loss: Float = 0
        for i in 0..<bsz {
            var mx = -Float.infinity
            for j in 0..<bsz {
                if j != i && batchItems[j] == batchItems[i] {
                    s[i * bsz + j] = -.infinity
                    continue
                }
                s[i * bsz + j] -= logQ[j]
                mx = max(mx, s[i * bsz + j])
            }
            var z: Float = 0
            for j in 0..<bsz { let e = expf(s[i * bsz + j] - mx); s[i * bsz + j] = e; z += e }
            loss -= logf(max(s[i * bsz + i] / z, 1e-30))
            // dS = (softmax - onehot) / B
            for j in 0..<bsz { s[i * bsz + j] = s[i * bsz + j] / z / Float(bsz) }
            s[i * bsz + i] -= 1 / Float(bsz)
        }
        var du = [Float](repeating: 0, count: bsz * d), dv = [Float](repeating: 0, count: bsz * d)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(bsz), Int32(d), Int32(bsz),
                    1 / parameters.temperature, s, Int32(bsz), v, Int32(d), 0, &du, Int32(d))
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(bsz), Int32(d), Int32(bsz),
                    1 / parameters.temperature, s, Int32(bsz), u, Int32(d), 0, &dv, Int32(d))
        users.backward(du)
        items.backward(dv)
        return loss / Float(bsz)
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
    /// - Returns: the reports of the epochs run.
    @discardableResult
    public func fit(_ pairs: [(user: Int32, item: Int32)], rng: inout SeededGenerator,
                    onEpoch: (EpochReport) -> Double? = { _ in nil }) -> [EpochReport] {
        var order = Array(pairs.indices)
        var reports = [EpochReport]()
        var best = -Double.infinity, bestEpoch = 0
        let bs = max(1, parameters.batchSize)
        for epoch in 1...max(1, parameters.epochs) {
            order.shuffle(using: &rng)
            var loss: Float = 0, batches = 0, start = 0
            let t0 = DispatchTime.now().uptimeNanoseconds
            // The sgemms of a step run on `parameters.threads` OpenBLAS threads (1: deterministic).
            BLAS.withThreads(max(1, parameters.threads)) {
                while start < order.count {
                    let idx = order[start..<min(order.count, start + bs)]
                    loss += trainStep(users: idx.map { pairs[$0].user }, items: idx.map { pairs[$0].item }, rng: &rng)
                    batches += 1
                    start += bs
                }
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            let report = EpochReport(epoch: epoch, loss: loss / Float(max(1, batches)), examplesPerSecond: Double(order.count) / max(seconds, 1e-9))
            reports.append(report)
            if let score = onEpoch(report) {
                if score > best { best = score; bestEpoch = epoch }
                if parameters.patience > 0 && epoch - bestEpoch >= parameters.patience { break }
            }
        }
        return reports
    }
}

import Dispatch

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
