import Foundation

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

enum Gradients {
    /// Fills g, h for `objective` at `scores`.
    static func compute(_ objective: Objective, scores: [Double], labels: [Float], weights: [Float]?,
                        groups: [Int]?, rank: LambdaRankOptions, g: inout [Float], h: inout [Float]) {
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
            let gs = groups ?? [0, n]
            for q in 0..<(gs.count - 1) {
                lambdaRank(range: gs[q]..<gs[q + 1], scores: scores, labels: labels, rank: rank, g: &g, h: &h)
            }
        }
    }

    static func lambdaRank(range: Range<Int>, scores: [Double], labels: [Float], rank: LambdaRankOptions,
                           g: inout [Float], h: inout [Float]) {
        let cnt = range.count
        let start = range.lowerBound
        var lambdas = [Double](repeating: 0, count: cnt), hess = [Double](repeating: 0, count: cnt)
        defer {
            for i in 0..<cnt {
                g[start + i] = Float(lambdas[i])
                h[start + i] = Float(hess[i])
            }
        }
        guard cnt > 1 else { return }
        func gain(_ i: Int) -> Double {
            let l = Int(labels[start + i])
            return l >= 0 && l < rank.labelGain.count ? rank.labelGain[l] : 0
        }
        // Ideal DCG at the truncation level.
        let ideal = (0..<cnt).map(gain).sorted(by: >)
        var maxDCG = 0.0
        for i in 0..<min(cnt, rank.truncationLevel) { maxDCG += ideal[i] / log2(Double(i) + 2) }
        guard maxDCG > 0 else { return }
        let invMax = 1 / maxDCG
        let order = (0..<cnt).sorted { scores[start + $0] > scores[start + $1] || (scores[start + $0] == scores[start + $1] && $0 < $1) }
        let best = scores[start + order[0]], worst = scores[start + order[cnt - 1]]
        var sumLambdas = 0.0
        let sigma = rank.sigmoid
        for i in 0..<min(cnt - 1, rank.truncationLevel) {
            let a = order[i]
            for j in (i + 1)..<cnt {
                let b = order[j]
                let la = labels[start + a], lb = labels[start + b]
                if la == lb { continue }
                let (high, low, hiPos, loPos) = la > lb ? (a, b, i, j) : (b, a, j, i)
                let deltaScore = scores[start + high] - scores[start + low]
                let dcgGap = gain(high) - gain(low)
                let discount = abs(1 / log2(Double(hiPos) + 2) - 1 / log2(Double(loPos) + 2))
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
        if rank.normalize && sumLambdas > 0 {
            let f = log2(1 + sumLambdas) / sumLambdas
            for i in 0..<cnt {
                lambdas[i] *= f
                hess[i] *= f
            }
        }
    }
}
