import Foundation
import LinearAlgebra

/// What the booster minimizes.
public enum Objective: String, Sendable, CaseIterable, Codable {
    /// Squared error on the raw score.
    case regression
    /// Logistic loss on labels 0/1; predictions are probabilities after the sigmoid.
    case binary
    /// LambdaRank: pairwise logistic loss weighted by the NDCG change of swapping a pair,
    /// within each query group.
    case lambdarank

    public init?(name: String) {
        switch name.lowercased() {
        case "regression", "l2", "mse", "regression_l2": self = .regression
        case "binary", "logloss", "binary_logloss": self = .binary
        case "lambdarank", "rank", "ranking": self = .lambdarank
        default: return nil
        }
    }
}

/// LambdaRank settings (LightGBM's defaults).
public struct LambdaRankOptions: Sendable, Equatable, Codable {
    /// Only pairs with a document in the top `truncationLevel` positions contribute.
    public var truncationLevel = 30
    /// Scale each query's gradients by log2(1 + sum) / sum.
    public var normalize = true
    /// The sigmoid's steepness.
    public var sigmoid: Double = 1
    /// Gain of each relevance label; default 2^label - 1.
    public var labelGain: [Double] = (0..<32).map { pow(2, Double($0)) - 1 }

    public init() {}
}

/// The per-query constants of LambdaRank, computed once per training rather than every
/// round: each query's 1 / ideal DCG at the truncation level (0 when no document has gain).
struct LambdaRankQueries {
    let groups: [Int]
    let inverseMaxDCG: [Double]

    init(groups: [Int], labels: [Float], rank: LambdaRankOptions) {
        self.groups = groups
        var inv = [Double](repeating: 0, count: max(0, groups.count - 1))
        for q in inv.indices {
            let ideal = labels[groups[q]..<groups[q + 1]].map { Gradients.gain($0, rank) }.sorted(by: >)
            var maxDCG = 0.0
            for i in 0..<min(ideal.count, rank.truncationLevel) { maxDCG += ideal[i] / log2(Double(i) + 2) }
            inv[q] = maxDCG > 0 ? 1 / maxDCG : 0
        }
        inverseMaxDCG = inv
    }
}

enum Gradients {
    /// Fills g, h for `objective` at `scores`. LambdaRank queries are independent and run on
    /// up to `threads` threads (each writes only its own rows, so the result does not depend
    /// on the thread count); `queries` saves recomputing their constants every round.
    static func compute(_ objective: Objective, scores: [Double], labels: [Float], weights: [Float]?,
                        groups: [Int]?, rank: LambdaRankOptions, g: inout [Float], h: inout [Float],
                        threads: Int = 1, queries: LambdaRankQueries? = nil) {
        let n = scores.count
        switch objective {
        case .regression:
            for i in 0..<n {
                let w = Double(weights?[i] ?? 1)
                g[i] = Float((scores[i] - Double(labels[i])) * w)
                h[i] = Float(w)
            }
        case .binary:
            for i in 0..<n {
                let w = Double(weights?[i] ?? 1)
                let p = 1 / (1 + exp(-scores[i]))
                g[i] = Float((p - Double(labels[i])) * w)
                h[i] = Float(max(p * (1 - p), 1e-16) * w)
            }
        case .lambdarank:
            let qs = queries ?? LambdaRankQueries(groups: groups ?? [0, n], labels: labels, rank: rank)
            let count = qs.groups.count - 1
            let blocks = min(count, max(1, threads) * 8)
            scores.withUnsafeBufferPointer { sp in labels.withUnsafeBufferPointer { lp in
            g.withUnsafeMutableBufferPointer { gp in h.withUnsafeMutableBufferPointer { hp in
                let sp = sp.baseAddress!, lp = lp.baseAddress!, gp = gp.baseAddress!, hp = hp.baseAddress!
                Parallel.forEach(blocks: blocks, threads: threads) { b, _ in
                    var scratch = LambdaScratch()
                    for q in (b * count / blocks)..<((b + 1) * count / blocks) {
                        lambdaRank(start: qs.groups[q], count: qs.groups[q + 1] - qs.groups[q], inverseMaxDCG: qs.inverseMaxDCG[q],
                                   scores: sp, labels: lp, rank: rank, g: gp, h: hp, scratch: &scratch)
                    }
                }
            }}}}
        }
    }

    @inline(__always) static func gain(_ label: Float, _ rank: LambdaRankOptions) -> Double {
        let l = Int(label)
        return l >= 0 && l < rank.labelGain.count ? rank.labelGain[l] : 0
    }

    /// Buffers one thread reuses from query to query.
    struct LambdaScratch {
        var order: [Int32] = []
        var lambdas: [Double] = []
        var hess: [Double] = []
        var gains: [Double] = []
        var discount: [Double] = []
    }

    /// One query's LambdaRank gradients: rows start ..< start + count.
    static func lambdaRank(start: Int, count cnt: Int, inverseMaxDCG invMax: Double,
                           scores: UnsafePointer<Double>, labels: UnsafePointer<Float>, rank: LambdaRankOptions,
                           g: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>, scratch: inout LambdaScratch) {
        let s = scores + start, lab = labels + start
        guard cnt > 1, invMax > 0 else {
            for i in 0..<cnt { g[start + i] = 0; h[start + i] = 0 }
            return
        }
        scratch.order.removeAll(keepingCapacity: true)
        scratch.order.append(contentsOf: (0..<Int32(cnt)))
        scratch.order.sort { s[Int($0)] > s[Int($1)] || (s[Int($0)] == s[Int($1)] && $0 < $1) }
        scratch.lambdas.removeAll(keepingCapacity: true)
        scratch.lambdas.append(contentsOf: repeatElement(0, count: cnt))
        scratch.hess.removeAll(keepingCapacity: true)
        scratch.hess.append(contentsOf: repeatElement(0, count: cnt))
        scratch.gains.removeAll(keepingCapacity: true)
        for i in 0..<cnt { scratch.gains.append(gain(lab[i], rank)) }
        // 1 / log2(position + 2), by position.
        if scratch.discount.count < cnt {
            scratch.discount = (0..<cnt).map { 1 / log2(Double($0) + 2) }
        }
        let sigma = rank.sigmoid
        var sumLambdas = 0.0
        scratch.order.withUnsafeBufferPointer { order in
        scratch.lambdas.withUnsafeMutableBufferPointer { lambdas in
        scratch.hess.withUnsafeMutableBufferPointer { hess in
        scratch.gains.withUnsafeBufferPointer { gains in
        scratch.discount.withUnsafeBufferPointer { disc in
            let best = s[Int(order[0])], worst = s[Int(order[cnt - 1])]
            for i in 0..<min(cnt - 1, rank.truncationLevel) {
                let a = Int(order[i]), la = lab[a]
                for j in (i + 1)..<cnt {
                    let b = Int(order[j]), lb = lab[b]
                    if la == lb { continue }
                    let (high, low, hiPos, loPos) = la > lb ? (a, b, i, j) : (b, a, j, i)
                    let deltaScore = s[high] - s[low]
                    let dcgGap = gains[high] - gains[low]
                    let discount = abs(disc[hiPos] - disc[loPos])
                    var deltaNDCG = dcgGap * discount * invMax
                    if rank.normalize && best != worst { deltaNDCG /= 0.01 + abs(deltaScore) }
                    var pLambda = 1 / (1 + exp(sigma * deltaScore))
                    var pHess = pLambda * (1 - pLambda)
                    pLambda *= -sigma * deltaNDCG
                    pHess *= sigma * sigma * deltaNDCG
                    lambdas[low] -= pLambda
                    hess[low] += pHess
                    lambdas[high] += pLambda
                    hess[high] += pHess
                    sumLambdas -= 2 * pLambda
                }
            }
            let f = rank.normalize && sumLambdas > 0 ? log2(1 + sumLambdas) / sumLambdas : 1
            for i in 0..<cnt {
                g[start + i] = Float(lambdas[i] * f)
                h[start + i] = Float(hess[i] * f)
            }
        }}}}}
    }
}
