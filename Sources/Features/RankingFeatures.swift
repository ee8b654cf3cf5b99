import Candidates
import Datasets
import Foundation
import LinearAlgebra

/// Errors of the ranking features, each naming what is wrong.
public enum FeaturesError: Error, CustomStringConvertible, Equatable {
    case invalidInput(String)

    public var description: String {
        switch self {
        case .invalidInput(let s): return "invalid input: \(s)"
        }
    }
}

/// The item attributes ranking and re-ranking read: categories (one or several per item),
/// creation time, and numeric attributes that become ranker features as they are.
public struct ItemAttributes: Sendable {
    public internal(set) var count: Int
    public internal(set) var categoryNames: [String]
    /// Item i's categories are `categoryCodes[categoryOffsets[i] ..< categoryOffsets[i + 1]]`.
    public internal(set) var categoryOffsets: [Int32]
    public internal(set) var categoryCodes: [Int32]
    /// Unix seconds; `Timestamp.missing` where unknown. Nil when the catalog has no dates.
    public internal(set) var createdAt: [Int64]?
    public let numericNames: [String]
    /// `numericValues[f][i]`: attribute f of item i (NaN where missing).
    public internal(set) var numericValues: [[Float]]

    public init(count: Int, categories: [[Int32]], categoryNames: [String], createdAt: [Int64]? = nil,
                numeric: [(name: String, values: [Float])] = []) throws {
        guard categories.isEmpty || categories.count == count else {
            throw FeaturesError.invalidInput("\(categories.count) category lists for \(count) items")
        }
        if let c = createdAt, c.count != count { throw FeaturesError.invalidInput("\(c.count) creation times for \(count) items") }
        for (name, v) in numeric where v.count != count {
            throw FeaturesError.invalidInput("numeric attribute '\(name)' has \(v.count) values for \(count) items")
        }
        var offsets: [Int32] = [0], codes = [Int32]()
        for i in 0..<count {
            if !categories.isEmpty {
                for c in categories[i] {
                    guard c >= 0, Int(c) < categoryNames.count else {
                        throw FeaturesError.invalidInput("item \(i): category code \(c) outside 0..<\(categoryNames.count)")
                    }
                    codes.append(c)
                }
            }
            offsets.append(Int32(codes.count))
        }
        self.count = count
        self.categoryNames = categoryNames
        categoryOffsets = offsets
        categoryCodes = codes
        self.createdAt = createdAt
        numericNames = numeric.map(\.name)
        numericValues = numeric.map(\.values)
    }

    /// Reads the attributes from a typed table: `category` may be a categorical or a
    /// multi-valued column, `createdAt` a timestamp column, `numeric` numeric columns.
    /// - Throws: `FeaturesError.invalidInput` naming a missing column or one of the wrong kind.
    public init(table: AttributeTable, category: String?, createdAt: String?, numeric: [String] = []) throws {
        var lists = [[Int32]](), names = [String]()
        if let category {
            switch table.columns[category] {
            case .categorical(let vocabulary, let codes)?:
                names = vocabulary.keys
                lists = codes.map { $0 >= 0 ? [$0] : [] }
            case .multiCategorical(let vocabulary, let offsets, let codes)?:
                names = vocabulary.keys
                lists = (0..<table.count).map { Array(codes[Int(offsets[$0])..<Int(offsets[$0 + 1])]) }
            case nil: throw FeaturesError.invalidInput("no column '\(category)' in the item table")
            default: throw FeaturesError.invalidInput("column '\(category)' is not categorical")
            }
        }
        var created: [Int64]? = nil
        if let createdAt {
            guard case .timestamp(let t)? = table.columns[createdAt] else {
                throw FeaturesError.invalidInput("column '\(createdAt)' is missing or not a timestamp")
            }
            created = t
        }
        var values = [(name: String, values: [Float])]()
        for name in numeric {
            guard case .numeric(let v)? = table.columns[name] else {
                throw FeaturesError.invalidInput("column '\(name)' is missing or not numeric")
            }
            values.append((name, v))
        }
        try self.init(count: table.count, categories: lists, categoryNames: names, createdAt: created, numeric: values)
    }

    @inline(__always)
    public func categories(of item: Int) -> ArraySlice<Int32> {
        categoryCodes[Int(categoryOffsets[item])..<Int(categoryOffsets[item + 1])]
    }

    /// The first category: the one business rules cap ("at most N per category").
    public func primaryCategory(_ item: Int) -> Int? {
        categoryOffsets[item] < categoryOffsets[item + 1] ? Int(categoryCodes[Int(categoryOffsets[item])]) : nil
    }

    public func created(_ item: Int) -> Int64? {
        guard let c = createdAt?[item], c != Timestamp.missing else { return nil }
        return c
    }
}

/// The ranker's features of one candidate for one user, computed per request:
///
/// | feature | meaning |
/// |---|---|
/// | tower_score | similarity of user and item embeddings (from retrieval) |
/// | retrieval_rank | position in the retrieval list (0 = first) |
/// | log_popularity | log(1 + interactions with the item so far) |
/// | log_recent_popularity | log(1 + interactions in the recent window) |
/// | item_age_days | days since the item was created (NaN when unknown) |
/// | category_affinity | share of the user's history in the item's categories |
/// | log_user_activity | log(1 + the user's interactions so far) |
/// | item_mean_rating | mean weight (rating) of the item's interactions (NaN when none) |
/// | *numeric attributes* | as given, e.g. price |
///
/// "So far" is as of the request: `compute(asOf:)` with a past time sees only events before
/// it (for training on replayed requests); without a time, the precomputed current values.
public struct RankingFeatures: Sendable {
    public static let baseNames = ["tower_score", "retrieval_rank", "log_popularity", "log_recent_popularity",
                                   "item_age_days", "category_affinity", "log_user_activity", "item_mean_rating"]
    public internal(set) var items: ItemAttributes
    public let statistics: InteractionStatistics
    /// "Now" for serving: item ages are measured from it. Default: the last event of the log.
    public var now: Int64
    public var names: [String] { Self.baseNames + items.numericNames }
    public var count: Int { Self.baseNames.count + items.numericNames.count }

    /// Each item's log(1 + interactions) now (precomputed; popular-item fallbacks order by it).
    public internal(set) var logPopularity: [Float]
    // Current values, precomputed (and moved by live interactions, see `record`).
    var logRecent: [Float]
    var meanRating: [Float]
    /// Interactions recorded while serving (see `record`), per user and per item.
    var liveHistory: [Int: [Int32]] = [:]
    var liveCounts: [Int: LiveCount] = [:]
    /// Users the features answer for: the statistics' users and those added while serving.
    public internal(set) var userCount: Int

    public init(items: ItemAttributes, statistics: InteractionStatistics, now: Int64? = nil) throws {
        guard items.count == statistics.itemCount else {
            throw FeaturesError.invalidInput("\(items.count) item attributes for \(statistics.itemCount) items in the statistics")
        }
        self.items = items
        self.statistics = statistics
        let t = (now ?? statistics.end) &+ 1
        self.now = now ?? statistics.end
        logPopularity = (0..<items.count).map { Float(log1p(Double(statistics.popularity($0, before: t)))) }
        logRecent = (0..<items.count).map { Float(log1p(Double(statistics.recentPopularity($0, before: t)))) }
        meanRating = (0..<items.count).map { statistics.meanWeight($0, before: t) }
        userCount = statistics.userCount
    }

    /// Writes `candidates.count` rows of `count` features into `out` (row-major).
    /// - Parameters:
    ///   - user: the requesting user's index in the statistics, or nil for a user with no history.
    ///   - candidates: retrieval order; the tower similarity and retrieval rank are taken from
    ///     `retrievalScore` / `retrievalRank` when set, else from `score` and the position.
    ///   - time: replay a past request (only events strictly before `time` count); nil = now.
    public func compute(user: Int?, candidates: [RankedItem], asOf time: Int64? = nil, into out: inout [Float]) {
        let d = count, n = candidates.count
        if out.count != n * d { out = [Float](repeating: 0, count: n * d) }
        // The user's category shares (dense: one slot per category) and activity.
        var history: ArraySlice<Int32> = []
        if let user, user >= 0 {
            history = time == nil ? self.history(user) : (user < statistics.userCount ? statistics.history(user, before: time!) : [])
        }
        var shares = [Float](repeating: 0, count: history.isEmpty ? 0 : items.categoryNames.count)
        if !history.isEmpty {
            for i in history { for c in items.categories(of: Int(i)) { shares[Int(c)] += 1 } }
            let scale = 1 / Float(history.count)
            for c in shares.indices { shares[c] *= scale }
        }
        let activity = Float(log1p(Double(history.count)))
        let reference = time ?? now
        let numeric = items.numericValues
        items.categoryOffsets.withUnsafeBufferPointer { offsets in
        items.categoryCodes.withUnsafeBufferPointer { codes in
        out.withUnsafeMutableBufferPointer { o in
            for (rank, candidate) in candidates.enumerated() {
                let i = candidate.id
                let row = o.baseAddress! + rank * d
                row[0] = Float(candidate.retrievalScore ?? candidate.score)
                row[1] = Float(candidate.retrievalRank ?? rank)
                if let time, i < statistics.itemCount {
                    row[2] = Float(log1p(Double(statistics.popularity(i, before: time))))
                    row[3] = Float(log1p(Double(statistics.recentPopularity(i, before: time))))
                    row[7] = statistics.meanWeight(i, before: time)
                } else {
                    row[2] = logPopularity[i]
                    row[3] = logRecent[i]
                    row[7] = meanRating[i]
                }
                if let c = items.createdAt?[i], c != Timestamp.missing { row[4] = Float((Double(reference) - Double(c)) / 86_400) } else { row[4] = .nan }
                let lo = Int(offsets[i]), hi = Int(offsets[i + 1])
                if lo == hi || shares.isEmpty { row[5] = 0 } else {
                    var s: Float = 0
                    for j in lo..<hi { s += shares[Int(codes[j])] }
                    row[5] = s / Float(hi - lo)
                }
                row[6] = activity
                for (f, values) in numeric.enumerated() { row[8 + f] = values[i] }
            }
        }}}
    }
}

/// One replayed request for ranker training: a user at a moment, the items they then
/// interacted with (the labels), and the items to leave out (already seen).
public struct RankerQuery: Sendable {
    public var user: Int
    public var time: Int64
    public var positives: Set<Int32>
    public var exclude: Set<Int32>

    public init(user: Int, time: Int64, positives: Set<Int32>, exclude: Set<Int32>) {
        self.user = user
        self.time = time
        self.positives = positives
        self.exclude = exclude
    }
}

/// Builds lambdarank training data from replayed requests: for each query, the candidates
/// retrieval would have returned, their features as of the query time, labeled 1 where the
/// user then interacted with the item. A query whose candidates hold no positive teaches a
/// ranker nothing and is skipped.
public enum RankerTrainingData {
    public static func build(queries: [RankerQuery], features: RankingFeatures,
                             retrieve: (RankerQuery) throws -> [RankedItem]) throws -> (data: LabeledData, queries: Int) {
        var values = [Float](), labels = [Float](), groups = [0]
        var row = [Float]()
        for q in queries {
            let candidates = try retrieve(q)
            guard candidates.contains(where: { q.positives.contains(Int32($0.id)) }) else { continue }
            features.compute(user: q.user, candidates: candidates, asOf: q.time, into: &row)
            values.append(contentsOf: row)
            labels.append(contentsOf: candidates.map { q.positives.contains(Int32($0.id)) ? 1 : 0 })
            groups.append(labels.count)
        }
        let m = try Matrix(rows: labels.count, columns: features.count, storage: values)
        return (LabeledData(features: m, labels: labels, groups: groups), groups.count - 1)
    }
}
