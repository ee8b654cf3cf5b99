import Foundation
import LinearAlgebra
import ExactSearch
import Datasets

func clustered(_ n: Int, _ d: Int, seed: UInt64, stream: UInt64 = 1) -> Matrix {
    GaussianMixture(dimension: d, clusters: max(2, n / 100), spread: 0.4, seed: seed).sample(n, stream: stream, threads: 1)
}

/// Recall@k of `got` (labels, k per query, -1 padded) against the exact top-k of `base`
/// rows whose label is `labelOf(row)`, counting ties at the k-th distance.
func recall(got: [Int64], k: Int, queries: Matrix, base: Matrix, metric: Metric,
            allowed: ((Int) -> Bool)? = nil, labelOf: (Int) -> Int64 = { Int64($0) }) throws -> Double {
    var hits = 0, total = 0
    var vectors = base
    var qs = queries
    if metric == .cosine { vectors.normalizeRows(); qs.normalizeRows() }
    for q in 0..<queries.rows {
        let qv = qs.row(q)
        var dist = [(Float, Int)]()
        for r in 0..<base.rows where allowed?(r) ?? true {
            dist.append((vectors.row(r).withUnsafeBufferPointer { b in qv.withUnsafeBufferPointer { metric.distance($0.baseAddress!, b.baseAddress!, base.columns) } }, r))
        }
        dist.sort { $0 < $1 }
        let kk = min(k, dist.count)
        if kk == 0 { continue }
        let kth = dist[kk - 1].0
        var byLabel = [Int64: Float]()
        for (d, r) in dist { byLabel[labelOf(r)] = d }
        for j in 0..<kk {
            let l = got[q * k + j]
            if l >= 0, let d = byLabel[l], d <= kth { hits += 1 }
        }
        total += kk
    }
    return total == 0 ? 1 : Double(hits) / Double(total)
}

