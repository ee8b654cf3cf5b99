import LinearAlgebra

/// Recall@k against ground truth, with ties at the k-th distance counted as hits
/// (PROTOCOLS.md section 1): a returned id is a hit when it is among the true top k,
/// or when its exact distance is no greater than the true k-th distance.
public enum Recall {
    /// Mean recall@k over the queries.
    ///
    /// - Parameters:
    ///   - result: the engine's answers (k >= `k` columns).
    ///   - truth: true neighbor ids, `truthColumns` per query, nearest first (>= k columns).
    ///   - base, queries: the vectors, as the metric sees them (normalized for cosine).
    /// - Complexity: O(q * k * d).
    public static func atK(_ k: Int, result: KNNResult, truth: [Int32], truthColumns: Int,
                           base: Matrix, queries: Matrix, metric: Metric) throws -> Double {
        guard k >= 1, result.k >= k, truthColumns >= k else {
            throw ExactSearchError.invalidArgument("recall@\(k) needs k columns in results (\(result.k)) and ground truth (\(truthColumns))")
        }
        guard truth.count >= result.queryCount * truthColumns, queries.rows >= result.queryCount else {
            throw ExactSearchError.invalidArgument(
                "ground truth covers \(truth.count / max(1, truthColumns)) queries, results have \(result.queryCount)")
        }
        guard base.columns == queries.columns else {
            throw ExactSearchError.dimensionMismatch(expected: base.columns, got: queries.columns)
        }
        let d = base.columns
        var hits = 0
        try base.storage.withUnsafeBufferPointer { bp in
            try queries.storage.withUnsafeBufferPointer { qp in
                for q in 0..<result.queryCount {
                    let qv = qp.baseAddress! + q * d
                    let trueIds = truth[(q * truthColumns)..<(q * truthColumns + k)]
                    if let bad = trueIds.first(where: { $0 < 0 || Int($0) >= base.rows }) {
                        throw ExactSearchError.invalidArgument("ground truth of query \(q) names id \(bad), the base has \(base.rows) vectors")
                    }
                    let kth = Int(trueIds.last!)
                    let kthDistance = metric.distance(qv, bp.baseAddress! + kth * d, d)
                    let set = Set(trueIds)
                    for j in 0..<k {
                        let id = result.ids[q * result.k + j]
                        guard id >= 0, Int(id) < base.rows else { continue }
                        if set.contains(id) || metric.distance(qv, bp.baseAddress! + Int(id) * d, d) <= kthDistance {
                            hits += 1
                        }
                    }
                }
            }
        }
        return Double(hits) / Double(result.queryCount * k)
    }
}

extension Recall {
    /// Mean recall@k counting ids only: a returned id is a hit when it is among the true
    /// top k. For a base too large to hold beside the index; on continuous data, where ties
    /// at the k-th distance have probability zero, it equals `atK`.
    /// - Parameter baseCount: the base's size, to refuse ground truth naming ids past it.
    /// - Complexity: O(q * k).
    public static func ofIDs(_ k: Int, result: KNNResult, truth: [Int32], truthColumns: Int, baseCount: Int) throws -> Double {
        guard k >= 1, result.k >= k, truthColumns >= k else {
            throw ExactSearchError.invalidArgument("recall@\(k) needs k columns in results (\(result.k)) and ground truth (\(truthColumns))")
        }
        guard truth.count >= result.queryCount * truthColumns else {
            throw ExactSearchError.invalidArgument(
                "ground truth covers \(truth.count / max(1, truthColumns)) queries, results have \(result.queryCount)")
        }
        var hits = 0
        for q in 0..<result.queryCount {
            let trueIds = truth[(q * truthColumns)..<(q * truthColumns + k)]
            if let bad = trueIds.first(where: { $0 < 0 || Int($0) >= baseCount }) {
                throw ExactSearchError.invalidArgument("ground truth of query \(q) names id \(bad), the base has \(baseCount) vectors")
            }
            let set = Set(trueIds)
            for j in 0..<k where set.contains(result.ids[q * result.k + j]) { hits += 1 }
        }
        return Double(hits) / Double(result.queryCount * k)
    }
}
