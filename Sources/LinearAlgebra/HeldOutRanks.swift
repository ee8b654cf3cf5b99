import Foundation

/// Hit rate, NDCG and MRR of held-out targets, one target per request, from where each
/// target ranked (0-based; nil when it was not ranked at all): the one implementation
/// every evaluation of the towers, the baselines, the protocols and the funnel's stages uses.
///
///     HR@k   = share of targets ranked below k
///     NDCG@k = mean of 1 / log2(rank + 2) over targets ranked below k (one relevant item: IDCG = 1)
///     MRR    = mean of 1 / (rank + 1)
public struct HeldOutRanks: Sendable, Equatable {
    public private(set) var ranks: [Int?] = []

    public init() {}

    public var count: Int { ranks.count }

    /// Records one target's rank (nil: not in the list).
    public mutating func add(rank: Int?) { ranks.append(rank) }

    public func hitRate(at k: Int) -> Double {
        mean { r in r < k ? 1 : 0 }
    }

    public func ndcg(at k: Int) -> Double {
        mean { r in r < k ? 1 / log2(Double(r) + 2) : 0 }
    }

    public var mrr: Double { mean { r in 1 / Double(r + 1) } }

    private func mean(_ gain: (Int) -> Double) -> Double {
        guard !ranks.isEmpty else { return 0 }
        var sum = 0.0
        for r in ranks { if let r { sum += gain(r) } }
        return sum / Double(ranks.count)
    }
}
