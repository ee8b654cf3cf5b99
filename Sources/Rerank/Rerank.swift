@_exported import Candidates
import _FunnelKernels
import Foundation
import LinearAlgebra

/// Maximal marginal relevance (Carbonell & Goldstein, 1998): pick, one at a time, the
/// candidate maximizing lambda * relevance - (1 - lambda) * max similarity to the picks.
///
/// Each candidate keeps a running maximum similarity to the picked set, updated with the
/// newest pick only, so selecting k of n costs O(k * n) similarity computations.
public enum MMR {
    /// Re-ranks `items` (relevance = `score`) using unit-length `embeddings` (row per
    /// item, in the order of `items`). lambda 1 keeps relevance order; 0 maximizes diversity.
    public static func rerank(_ items: [RankedItem], embeddings: Matrix, lambda: Double, k: Int) -> [RankedItem] {
        precondition(embeddings.rows == items.count, "one embedding row per candidate")
        let n = items.count
        guard n > 0, k > 0 else { return [] }
        // All pairwise similarities at once, on this thread (see fk_gram_f32).
        var gram = Matrix(rows: n, columns: n)
        embeddings.storage.withUnsafeBufferPointer { e in
            gram.storage.withUnsafeMutableBufferPointer { fk_gram_f32(e.baseAddress!, n, embeddings.columns, $0.baseAddress!) }
        }
        // Per candidate: its running max similarity to the picks (-inf: none yet), and
        // whether it is taken. Unchecked buffers: this loop is n * k steps.
        var maxSim = [Float](repeating: -.infinity, count: n)
        var taken = [Bool](repeating: false, count: n)
        let relevance = items.map(\.score)
        var picks = [Int](), pickedSimilarity = [Float]()
        picks.reserveCapacity(min(k, n))
        pickedSimilarity.reserveCapacity(min(k, n))
        let l = lambda, penaltyWeight = 1 - lambda
        gram.storage.withUnsafeBufferPointer { g in
        maxSim.withUnsafeMutableBufferPointer { ms in
        taken.withUnsafeMutableBufferPointer { tk in
        relevance.withUnsafeBufferPointer { rel in
            for _ in 0..<min(k, n) {
                var best = -1
                var bestValue = -Double.infinity
                for i in 0..<n where !tk[i] {
                    let penalty = ms[i] == -.infinity ? 0 : Double(ms[i])
                    let v = l * rel[i] - penaltyWeight * penalty
                    if v > bestValue { bestValue = v; best = i }
                }
                tk[best] = true
                picks.append(best)
                pickedSimilarity.append(ms[best])
                let row = g.baseAddress! + best * n
                for i in 0..<n where !tk[i] && row[i] > ms[i] { ms[i] = row[i] }
            }
        }}}}
        var out = [RankedItem]()
        out.reserveCapacity(picks.count)
        for (j, p) in picks.enumerated() {
            var item = items[p]
            if j > 0 && lambda < 1 { item.mmrSimilarity = Double(pickedSimilarity[j]) }
            out.append(item)
        }
        return out
    }

    /// Intra-list diversity: 1 - the mean pairwise similarity of a list's unit embeddings.
    public static func diversity(_ embeddings: Matrix) -> Double {
        let n = embeddings.rows
        guard n > 1 else { return 0 }
        var s = 0.0
        for i in 0..<n { for j in (i + 1)..<n { s += Double(Distance.dot(embeddings.row(i), embeddings.row(j))) } }
        return 1 - s / Double(n * (n - 1) / 2)
    }
}

/// Freshness: a multiplier in (0, 1] that decays with an item's age.
public enum FreshnessDecay: Sendable, Equatable {
    /// 0.5 ^ (age / halfLife).
    case exponential(halfLife: Double)
    /// exp(-(age / scale)^2 / 2).
    case gaussian(scale: Double)
    /// max(0, 1 - age / scale).
    case linear(scale: Double)

    /// The multiplier for an age in seconds (negative ages count as 0).
    public func weight(age: Double) -> Double {
        let a = max(0, age)
        switch self {
        case .exponential(let h): return pow(0.5, a / h)
        case .gaussian(let s): return exp(-0.5 * (a / s) * (a / s))
        case .linear(let s): return max(0, 1 - a / s)
        }
    }

    /// Blends freshness into scores: score * ((1 - weight) + weight * decay), so `weight`
    /// 0 ignores age and 1 multiplies by the full decay.
    public func apply(_ items: [RankedItem], now: Int64, weight: Double) -> [RankedItem] {
        items.map { item in
            guard let created = item.createdAt else { return item }
            var x = item
            let f = self.weight(age: Double(now) - Double(created))
            x.score = item.score * ((1 - weight) + weight * f)
            if f < 0.999 { x.freshness = (1 - weight) + weight * f }
            return x
        }.sorted { $0.score != $1.score ? $0.score > $1.score : $0.id < $1.id }
    }
}

/// Business rules applied after ranking, in a fixed order: exclude, dedupe, bury, boost,
/// pin, then at most N per category while filling k slots.
public struct BusinessRules: Sendable {
    public var exclude: Set<Int> = []
    public var maxPerCategory: Int? = nil
    /// When the category cap leaves fewer than k items while more candidates remain, the
    /// rest of the list is filled with the best capped-out items, in order, each marked
    /// "over the category cap" (false: a hard cap, fewer than k items).
    public var fillPastCap = true
    public var boost: [Int: Double] = [:]
    public var bury: Set<Int> = []
    /// Items forced to the front, in this order (when they are candidates).
    public var pinned: [Int] = []

    public init() {}

    public func apply(_ items: [RankedItem], k: Int) -> [RankedItem] {
        var seen = Set<Int>()
        var list = [RankedItem]()
        for var item in items {
            if exclude.contains(item.id) || !seen.insert(item.id).inserted { continue }
            if let b = boost[item.id] {
                item.score *= b
                item.reasons.append("boost x" + Decimals.fixed(b, places: 2))
            }
            list.append(item)
        }
        list.sort { $0.score != $1.score ? $0.score > $1.score : $0.id < $1.id }
        // Buried items go after all others, keeping their relative order.
        let buried = list.filter { bury.contains($0.id) }.map { item -> RankedItem in
            var x = item
            x.reasons.append("buried")
            return x
        }
        list = list.filter { !bury.contains($0.id) } + buried
        var front = [RankedItem]()
        for id in pinned {
            if let i = list.firstIndex(where: { $0.id == id }) {
                var x = list.remove(at: i)
                x.reasons.append("pinned")
                front.append(x)
            }
        }
        list = front + list
        guard let cap = maxPerCategory else { return Array(list.prefix(k)) }
        var perCategory = [Int: Int]()
        var out = [RankedItem](), over = [RankedItem]()
        for item in list where out.count < k {
            if let c = item.category {
                if perCategory[c, default: 0] >= cap && !front.contains(where: { $0.id == item.id }) {
                    if fillPastCap && over.count < k { over.append(item) }
                    continue
                }
                perCategory[c, default: 0] += 1
            }
            out.append(item)
        }
        for var item in over where out.count < k {
            item.reasons.append("over the category cap (filled to k)")
            out.append(item)
        }
        return out
    }
}
