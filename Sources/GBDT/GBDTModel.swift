import Foundation
import LinearAlgebra

/// A trained (or imported) gradient-boosted tree ensemble.
///
/// The raw score of a row is `initScore + sum of tree outputs`; `predict` applies the
/// objective's link (the sigmoid for binary). Inference walks flat arrays; the batch
/// path scores blocks of rows tree by tree and gives the same numbers as the one-row path.
public struct GBDTModel: Sendable, Equatable {
    public var objective: Objective
    public var trees: [Tree]
    public var initScore: Double
    public var featureCount: Int
    public var featureNames: [String]
    /// The sigmoid's slope for binary predictions.
    public var sigmoid: Double = 1

    public init(objective: Objective, trees: [Tree], initScore: Double, featureCount: Int, featureNames: [String] = []) {
        self.objective = objective
        self.trees = trees
        self.initScore = initScore
        self.featureCount = featureCount
        self.featureNames = featureNames.isEmpty ? (0..<featureCount).map { "f\($0)" } : featureNames
    }

    /// The raw score of one row (`featureCount` values).
    @inline(__always)
    public func rawScore(_ x: UnsafePointer<Float>) -> Double {
        var s = initScore
        for t in trees { s += t.predict(x) }
        return s
    }

    @inline(__always)
    func link(_ raw: Double) -> Double {
        objective == .binary ? 1 / (1 + exp(-sigmoid * raw)) : raw
    }

    /// The prediction for one row: a probability for binary, the score otherwise.
    public func predict(_ row: [Float]) throws -> Double {
        guard row.count >= featureCount else { throw GBDTError.featureCountMismatch(expected: featureCount, got: row.count) }
        return row.withUnsafeBufferPointer { link(rawScore($0.baseAddress!)) }
    }

    /// Predictions for every row of `x`, on `threads` threads (through a `GBDTPredictor`).
    /// - Complexity: O(rows * trees * depth).
    public func predict(_ x: Matrix, raw: Bool = false, threads: Int = 1) throws -> [Double] {
        guard x.columns >= featureCount else { throw GBDTError.featureCountMismatch(expected: featureCount, got: x.columns) }
        let predictor = GBDTPredictor(self)
        var out = [Double](repeating: 0, count: x.rows)
        let block = 1024
        let blocks = (x.rows + block - 1) / block
        let cols = x.columns
        x.storage.withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBufferPointer { op in
                let xp = xp.baseAddress!, op = op.baseAddress!
                Parallel.forEach(blocks: blocks, threads: threads) { b, _ in
                    let lo = b * block, hi = min(x.rows, lo + block)
                    predictor.predict(xp + lo * cols, rows: hi - lo, stride: cols, raw: raw, into: op + lo)
                }
            }
        }
        return out
    }

    /// Feature importance: how many splits use each feature, or their total gain.
    public func importance(byGain: Bool = false) -> [Double] {
        var imp = [Double](repeating: 0, count: featureCount)
        for t in trees {
            for (i, f) in t.feature.enumerated() where Int(f) < featureCount {
                imp[Int(f)] += byGain ? Double(t.gain[i]) : 1
            }
        }
        return imp
    }
}
