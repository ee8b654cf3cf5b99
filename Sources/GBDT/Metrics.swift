import Foundation

/// Evaluation metrics, computed the way LightGBM reports them.
public enum RankingMetrics {
    /// Mean NDCG@k over query groups (gain 2^label - 1, log2 discount). A query whose
    /// labels are all 0 counts as 1, as in LightGBM. Ties in score keep row order.
    public static func ndcg(at k: Int, scores: [Double], labels: [Float], groups: [Int],
                            labelGain: [Double] = (0..<32).map { pow(2, Double($0)) - 1 }) -> Double {
        var total = 0.0
        let q = groups.count - 1
        guard q > 0 else { return 0 }
        for i in 0..<q {
            let range = groups[i]..<groups[i + 1]
            func gain(_ r: Int) -> Double { labelGain[min(max(Int(labels[r]), 0), labelGain.count - 1)] }
            let ideal = range.map(gain).sorted(by: >)
            var maxDCG = 0.0
            for j in 0..<min(k, ideal.count) { maxDCG += ideal[j] / log2(Double(j) + 2) }
            if maxDCG <= 0 {
                total += 1
                continue
            }
            let order = range.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
            var dcg = 0.0
            for j in 0..<min(k, order.count) { dcg += gain(order[j]) / log2(Double(j) + 2) }
            total += dcg / maxDCG
        }
        return total / Double(q)
    }

    /// Mean average precision@k (a label > 0 is relevant); queries with no relevant row count as 1.
    public static func map(at k: Int, scores: [Double], labels: [Float], groups: [Int]) -> Double {
        var total = 0.0
        let q = groups.count - 1
        guard q > 0 else { return 0 }
        for i in 0..<q {
            let range = groups[i]..<groups[i + 1]
            let relevant = range.filter { labels[$0] > 0 }.count
            if relevant == 0 {
                total += 1
                continue
            }
            let order = range.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
            var hits = 0, sum = 0.0
            for j in 0..<min(k, order.count) where labels[order[j]] > 0 {
                hits += 1
                sum += Double(hits) / Double(j + 1)
            }
            total += sum / Double(min(relevant, k))
        }
        return total / Double(q)
    }

    /// Area under the ROC curve for labels 0/1 (weighted); tied scores count half.
    public static func auc(scores: [Double], labels: [Float], weights: [Float]? = nil) -> Double {
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var pos = 0.0, neg = 0.0, area = 0.0
        var i = 0
        while i < order.count {
            var j = i
            var tp = 0.0, tn = 0.0
            while j < order.count && scores[order[j]] == scores[order[i]] {
                let w = Double(weights?[order[j]] ?? 1)
                if labels[order[j]] > 0.5 { tp += w } else { tn += w }
                j += 1
            }
            area += tp * (neg + tn / 2)
            pos += tp
            neg += tn
            i = j
        }
        return pos > 0 && neg > 0 ? area / (pos * neg) : 0.5
    }

    /// Mean logistic loss of probabilities (weighted).
    public static func logloss(probabilities: [Double], labels: [Float], weights: [Float]? = nil) -> Double {
        var s = 0.0, wsum = 0.0
        for i in probabilities.indices {
            let p = min(max(probabilities[i], 1e-15), 1 - 1e-15)
            let w = Double(weights?[i] ?? 1)
            s -= w * (labels[i] > 0.5 ? log(p) : log(1 - p))
            wsum += w
        }
        return s / max(wsum, 1e-300)
    }

    /// Root mean squared error.
    public static func rmse(predictions: [Double], labels: [Float]) -> Double {
        var s = 0.0
        for i in predictions.indices { s += pow(predictions[i] - Double(labels[i]), 2) }
        return (s / Double(max(1, predictions.count))).squareRoot()
    }
}
