import Foundation

/// A candidate on its way through the funnel: its id, its current score, what retrieval,
/// the ranker and re-ranking made of it, so every returned item can say why it is there.
/// Retrieval creates it, the ranker scores it, re-ranking moves it; each stage's module
/// reads it, none owns it.
public struct RankedItem: Sendable, Equatable {
    public var id: Int
    public var score: Double
    public var category: Int?
    /// Unix seconds the item was created, for freshness.
    public var createdAt: Int64?
    /// Rules that moved the item ("pinned", "boost x1.50", "buried").
    public var reasons: [String] = []
    /// MMR: the item's largest similarity to the items picked before it (nil: first pick or no MMR).
    public var mmrSimilarity: Double? = nil
    /// Freshness: the factor its score was multiplied by (nil: none applied).
    public var freshness: Double? = nil
    /// Where retrieval put the item (0 = first) and with what similarity.
    public var retrievalRank: Int? = nil
    public var retrievalScore: Double? = nil
    /// The ranker's score, and the features that moved it most (TreeSHAP), largest first.
    public var rankerScore: Double? = nil
    public var contributions: [FeatureContribution] = []

    public init(id: Int, score: Double, category: Int? = nil, createdAt: Int64? = nil) {
        self.id = id
        self.score = score
        self.category = category
        self.createdAt = createdAt
    }
}

extension RankedItem {
    /// Everything re-ranking did to the item, as text (formatted on demand: formatting
    /// every candidate's reasons would cost more than re-ranking itself).
    public var explanation: [String] {
        var out = [String]()
        if let f = freshness { out.append("freshness x" + Decimals.fixed(f, places: 3)) }
        if let s = mmrSimilarity { out.append("mmr: max similarity " + Decimals.fixed(s, places: 3) + " to earlier picks") }
        return out + reasons
    }
}

/// One feature's share of a ranker score (a TreeSHAP value).
public struct FeatureContribution: Sendable, Equatable {
    public var feature: String
    public var value: Double

    public init(feature: String, value: Double) {
        self.feature = feature
        self.value = value
    }
}
