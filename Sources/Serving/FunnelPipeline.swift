@_exported import Features
import Dispatch
import ExactSearch
import Foundation
import GBDT
import HNSW
import LinearAlgebra
import Rerank

/// Errors of the serving layer, each naming what is wrong.
public enum ServingError: Error, CustomStringConvertible, Equatable {
    case invalidInput(String)
    case invalidModel(String)

    public var description: String {
        switch self {
        case .invalidInput(let s): return "invalid input: \(s)"
        case .invalidModel(let s): return "invalid model: \(s)"
        }
    }
}

/// The knobs of one funnel: how many candidates, how wide the HNSW beam, how strongly to
/// diversify and prefer fresh items, which rules apply, and each stage's budget.
public struct PipelineConfig: Sendable {
    /// Candidates retrieval hands to the ranker.
    public var candidates = 500
    /// HNSW beam width (raised to the number of items asked for).
    public var ef = 128
    /// MMR trade-off: 1 keeps ranker order, lower values diversify more.
    public var mmrLambda = 0.7
    /// MMR re-orders the ranker's top `mmrPool` items.
    public var mmrPool = 100
    /// MMR measures similarity between item embeddings with the catalog's mean embedding
    /// removed: the direction all relevant items share then no longer hides how different
    /// they are from each other.
    public var mmrCentered = true
    /// Freshness decay blended into the score (nil: ignore item age).
    public var freshness: FreshnessDecay? = .exponential(halfLife: 30 * 86_400)
    public var freshnessWeight = 0.2
    /// Business rules applied last (category cap, pins, boosts, exclusions).
    public var rules: BusinessRules = {
        var r = BusinessRules()
        r.maxPerCategory = 3
        return r
    }()
    /// How many TreeSHAP contributions each returned item carries (0: none; costs
    /// O(trees * leaves * depth^2) per returned item).
    public var explanations = 0
    public var retrievalBudget = 0.050
    public var rankingBudget = 0.050
    public var deadline = 0.150
    /// Run the stages on the caller's thread without enforcing budgets.
    public var inline = false

    public init() {}
}

/// One request to the funnel.
public struct FunnelRequest: Sendable {
    /// The user's row in the interaction statistics (history, affinity), nil when unknown.
    public var user: Int?
    /// The query embedding (user tower output, or a query's); nil: popular items only.
    public var vector: [Float]?
    /// Items never to return (typically everything the user has interacted with).
    public var exclude: Set<Int32>
    /// Replays a past request: features and freshness see only events before this time
    /// (offline evaluation and ranker training). Nil: now.
    public var asOf: Int64?
    /// Only items whose entry is true may be returned (a request's attribute filter); nil: all.
    /// Items past its end (added after it was made) are not allowed.
    public var allowed: [Bool]?
    /// This request's own retrieval and rule settings, over the pipeline's.
    public var overrides: RequestOverrides?
    /// Whether the answer carries the ranker's TreeSHAP contributions (when the pipeline's
    /// `explanations` asks for them): false saves their cost when nobody reads them.
    public var explain = true

    public init(user: Int?, vector: [Float]?, exclude: Set<Int32> = [], asOf: Int64? = nil, allowed: [Bool]? = nil) {
        self.allowed = allowed
        self.user = user
        self.vector = vector
        self.exclude = exclude
        self.asOf = asOf
    }
}

/// One request's settings over the pipeline's: how many candidates and how wide a beam,
/// and business rules (a category cap, items pinned first when they are candidates, boosts).
public struct RequestOverrides: Sendable, Equatable {
    public var candidates: Int?
    public var ef: Int?
    /// nil: the pipeline's cap; .some(nil): no cap.
    public var maxPerCategory: Int??
    public var pinned: [Int] = []
    public var boost: [Int: Double] = [:]
    public init(candidates: Int? = nil, ef: Int? = nil, maxPerCategory: Int?? = nil, pinned: [Int] = [], boost: [Int: Double] = [:]) {
        self.candidates = candidates
        self.ef = ef
        self.maxPerCategory = maxPerCategory
        self.pinned = pinned
        self.boost = boost
    }
}

extension FunnelRequest {
    /// Whether `item` may be returned: not excluded, and allowed by the filter.
    @inline(__always)
    func allows(_ item: Int) -> Bool {
        !exclude.contains(Int32(item)) && (allowed.map { item < $0.count && $0[item] } ?? true)
    }
}

/// The whole funnel over one catalog: HNSW retrieval (exact search as fallback, popular
/// items as the last resort) -> GBDT ranking on per-request features -> MMR, freshness and
/// business rules, with budgets, circuit breakers and metrics from `Recommender`.
///
/// Item ids are rows of `itemVectors` (unit length), ids of the HNSW index, and indices of
/// the ranking features' item tables.
public final class FunnelPipeline: @unchecked Sendable {
    public let index: HNSWIndex
    public private(set) var itemVectors: Matrix
    public private(set) var features: RankingFeatures
    public let ranker: GBDTModel?
    public let config: PipelineConfig
    let predictor: GBDTPredictor?
    /// TreeSHAP by tables for the answers' explanations: set when there is a ranker and the
    /// config asks for explanations.
    let explainer: TreeExplainer?
    let exact: ExactIndex
    var popularOrder: [Int]
    /// Unit item vectors minus their mean, renormalized (MMR's similarity space).
    var centeredVectors: Matrix
    var centerMean: [Float]
    /// Items deleted while serving: no stage returns them.
    public private(set) var deleted: Set<Int32> = []
    /// Stages read under it; live writes (`setItem`, `removeItem`, `record`) take it alone.
    /// Every stage takes it itself (a stage past its budget may still be running after the
    /// answer went out), so no locked section calls another.
    let state = ReadWriteLock()
    public private(set) var recommender: Recommender<FunnelRequest>!

    /// - Throws: `ServingError.invalidModel` when the index, vectors, features and ranker disagree in size.
    public init(index: HNSWIndex, itemVectors: Matrix, features: RankingFeatures, ranker: GBDTModel?,
                config: PipelineConfig = PipelineConfig(), metrics: StageMetrics? = nil) throws {
        guard itemVectors.rows == features.items.count else {
            throw ServingError.invalidModel("\(itemVectors.rows) item vectors for \(features.items.count) items")
        }
        guard index.dimension == itemVectors.columns else {
            throw ServingError.invalidModel("index dimension \(index.dimension), item vectors \(itemVectors.columns)")
        }
        if let ranker, ranker.featureCount != features.count {
            throw ServingError.invalidModel("the ranker expects \(ranker.featureCount) features, the pipeline computes \(features.count) (\(features.names.joined(separator: ", ")))")
        }
        self.index = index
        self.itemVectors = itemVectors
        self.features = features
        self.ranker = ranker
        self.config = config
        predictor = ranker.map { GBDTPredictor($0) }
        explainer = config.explanations > 0 ? ranker.map { TreeExplainer($0) } : nil
        exact = try ExactIndex(vectors: itemVectors, metric: .innerProduct)
        var centered = itemVectors
        var mean = [Float](repeating: 0, count: itemVectors.columns)
        if itemVectors.rows > 0 {
            for r in 0..<itemVectors.rows { for c in 0..<itemVectors.columns { mean[c] += itemVectors[r, c] } }
            for c in mean.indices { mean[c] /= Float(itemVectors.rows) }
            for r in 0..<itemVectors.rows { for c in 0..<itemVectors.columns { centered[r, c] -= mean[c] } }
            centered.normalizeRows()
        }
        centeredVectors = centered
        centerMean = mean
        let pop = features.logPopularity
        popularOrder = (0..<pop.count).sorted { pop[$0] != pop[$1] ? pop[$0] > pop[$1] : $0 < $1 }
        typealias R = Recommender<FunnelRequest>
        // Weak: a stage that outlived its budget may still be running when the pipeline goes.
        let gone = ServingError.invalidModel("the pipeline was released")
        let retrieve: R.Retrieve = { [weak self] request, count in
            guard let self else { throw gone }
            return try self.retrieve(request, count: request.overrides?.candidates ?? count)
        }
        let exact: R.Retrieve = { [weak self] request, count in
            guard let self else { throw gone }
            return try self.retrieveExact(request, count: request.overrides?.candidates ?? count)
        }
        let popular: @Sendable (FunnelRequest, Int) -> [RankedItem] = { [weak self] request, count in
            self?.popular(request, count: count) ?? []
        }
        let rank: R.Rank = { [weak self] request, list in
            guard let self else { throw gone }
            return try self.rank(request, list)
        }
        let rerank: R.Rerank = { [weak self] request, list, k in
            guard let self else { return Array(list.prefix(k)) }
            let final = self.rerank(request, list, k: k)
            return self.config.explanations > 0 && request.explain ? self.explain(request, final) : final
        }
        let r = R(retrieve: retrieve, fallbackRetrieve: exact, popular: popular,
                  rank: predictor == nil ? nil : rank, rerank: rerank, metrics: metrics)
        r.candidates = config.candidates
        r.retrievalBudget = config.retrievalBudget
        r.rankingBudget = config.rankingBudget
        r.deadline = config.deadline
        r.inline = config.inline
        recommender = r
    }

    /// The top `k` items for `request`, each explained. A request that is wrong in itself
    /// is refused (see `validate`); past that, a failing or slow stage never makes it throw:
    /// the answer comes from a fallback and says so (see `Recommender`).
    /// - Throws: `ServingError.invalidInput` from `validate`.
    public func recommend(_ request: FunnelRequest, k: Int) throws -> Recommendation {
        try validate(request, k: k)
        return recommender.recommend(request, k: k)
    }

    /// As `recommend(_:k:)`, with the stages on the calling thread and their budgets kept by
    /// a watchdog (no thread hand-off while every stage is in time; see
    /// `Recommender.recommend(_:k:completion:)`). `completion` is called exactly once.
    public func recommend(_ request: FunnelRequest, k: Int, completion: @escaping @Sendable (Result<Recommendation, Error>) -> Void) {
        do { try validate(request, k: k) } catch { return completion(.failure(error)) }
        recommender.recommend(request, k: k) { completion(.success($0)) }
    }

    /// Checks what the caller controls before any stage runs, so that a malformed request is
    /// an error for the caller rather than a silent fallback to popular items.
    /// - Throws: `ServingError.invalidInput` naming the problem: k below 1, a user outside
    ///   the known users, a query vector of another dimension than the index's, or one
    ///   holding NaN or an infinity.
    public func validate(_ request: FunnelRequest, k: Int) throws {
        guard k >= 1 else { throw ServingError.invalidInput("k must be at least 1, got \(k)") }
        let users = state.read { features.userCount }
        if let u = request.user, !(0..<users).contains(u) {
            throw ServingError.invalidInput("user \(u) is outside the \(users) known users")
        }
        if let v = request.vector {
            guard v.count == index.dimension else {
                throw ServingError.invalidInput("the query vector has \(v.count) values, the index \(index.dimension) dimensions")
            }
            if let bad = v.firstIndex(where: { !$0.isFinite }) {
                throw ServingError.invalidInput("the query vector holds \(v[bad]) at position \(bad)")
            }
        }
    }

    // MARK: - Stages (public so that each can be measured or run alone)

    /// A retrieved item; `items` is bound once per list by the caller (reading
    /// `features.items` per item copied its arrays' references each time: 4% of a request).
    func item(_ id: Int, score: Double, rank: Int, items: ItemAttributes) -> RankedItem {
        var x = RankedItem(id: id, score: score, category: items.primaryCategory(id), createdAt: items.created(id))
        x.retrievalRank = rank
        x.retrievalScore = score
        return x
    }

    /// Stage 1: the `count` most similar items by HNSW, excluded items left out.
    public func retrieve(_ request: FunnelRequest, count: Int) throws -> [RankedItem] {
        guard let v = request.vector else { throw ServingError.invalidInput("no query vector") }
        return try state.read {
            let want = count + request.exclude.count
            let filter = request.allowed.map { allowed in SearchFilter { $0 < allowed.count && allowed[Int($0)] } }
            let found = try index.search(v, k: want, ef: max(request.overrides?.ef ?? config.ef, want), filter: filter)
            var out = [RankedItem]()
            out.reserveCapacity(count)
            let items = features.items
            for n in found where !request.exclude.contains(Int32(n.id)) {
                out.append(item(n.id, score: Double(1 - n.distance), rank: out.count, items: items))
                if out.count == count { break }
            }
            return out
        }
    }

    /// The retrieval fallback: exact inner-product search over the item vectors.
    public func retrieveExact(_ request: FunnelRequest, count: Int) throws -> [RankedItem] {
        guard let v = request.vector else { throw ServingError.invalidInput("no query vector") }
        return try state.read {
            let found = try exact.search(v, k: request.allowed == nil ? min(itemVectors.rows, count + request.exclude.count + deleted.count) : itemVectors.rows)
            let items = features.items
            return found.filter { request.allows($0.id) && !deleted.contains(Int32($0.id)) }.prefix(count).enumerated()
                .map { item($0.element.id, score: Double(-$0.element.distance), rank: $0.offset, items: items) }
        }
    }

    /// The last resort: most popular items, excluded ones left out.
    public func popular(_ request: FunnelRequest, count: Int) -> [RankedItem] {
        state.read {
            var out = [RankedItem]()
            let items = features.items
            for i in popularOrder where request.allows(i) && !deleted.contains(Int32(i)) {
                out.append(item(i, score: Double(features.logPopularity[i]), rank: out.count, items: items))
                if out.count == count { break }
            }
            return out
        }
    }

    /// Stage 2: GBDT scores of the candidates' features, best first (ties by id).
    public func rank(_ request: FunnelRequest, _ candidates: [RankedItem]) throws -> [RankedItem] {
        guard let predictor else { throw ServingError.invalidModel("no ranker") }
        var x = [Float]()
        let d = state.read {
            features.compute(user: request.user, candidates: candidates, asOf: request.asOf, into: &x)
            return features.count
        }
        var scores = [Double](repeating: 0, count: candidates.count)
        x.withUnsafeBufferPointer { xp in
            scores.withUnsafeMutableBufferPointer { predictor.predict(xp.baseAddress!, rows: candidates.count, stride: d, into: $0.baseAddress!) }
        }
        // Sort a permutation, then copy each item once (the items are large).
        let order = candidates.indices.sorted {
            scores[$0] != scores[$1] ? scores[$0] > scores[$1] : candidates[$0].id < candidates[$1].id
        }
        var ranked = [RankedItem]()
        ranked.reserveCapacity(candidates.count)
        for i in order {
            var item = candidates[i]
            item.score = scores[i]
            item.rankerScore = scores[i]
            ranked.append(item)
        }
        return ranked
    }

    /// Adds each item's top `config.explanations` TreeSHAP contributions to the ranker score.
    /// - Complexity: O(items * trees * leaves * depth^2).
    public func explain(_ request: FunnelRequest, _ items: [RankedItem]) -> [RankedItem] {
        // Nothing ranked (the ranker's fallback): nothing to explain.
        guard let explainer, config.explanations > 0, items.contains(where: { $0.rankerScore != nil }) else { return items }
        var x = [Float]()
        let (d, names) = state.read {
            features.compute(user: request.user, candidates: items, asOf: request.asOf, into: &x)
            return (features.count, features.names)
        }
        var out = items
        guard let explained = try? explainer.explain(rows: x, count: items.count, stride: d) else { return out }
        for i in out.indices where out[i].rankerScore != nil {
            out[i].contributions = explained[i].top(config.explanations).map {
                FeatureContribution(feature: names[$0.feature], value: $0.contribution)
            }
        }
        return out
    }

    /// Stage 3: over the top `mmrPool`, scores scaled to [0, 1] (so relevance and similarity
    /// share a scale) and decayed by age, then MMR, then the business rules.
    /// - Parameter override: other re-ranking knobs for this call (e.g. an MMR lambda sweep).
    public func rerank(_ request: FunnelRequest, _ ranked: [RankedItem], k: Int, override: PipelineConfig? = nil) -> [RankedItem] {
        state.read { rerankLocked(request, ranked, k: k, override: override) }
    }

    func rerankLocked(_ request: FunnelRequest, _ ranked: [RankedItem], k: Int, override: PipelineConfig?) -> [RankedItem] {
        var config = override ?? self.config
        if let o = request.overrides {
            if let cap = o.maxPerCategory { config.rules.maxPerCategory = cap }
            config.rules.pinned = o.pinned + config.rules.pinned.filter { !o.pinned.contains($0) }
            config.rules.boost.merge(o.boost) { _, new in new }
        }
        let top = Array(ranked.prefix(max(config.mmrPool, k)))
        guard !top.isEmpty else { return [] }
        // Relevance on [0, 1] so that it shares a scale with similarity, then freshness.
        var list = top
        var lo = Double.infinity, hi = -Double.infinity
        for x in top { lo = min(lo, x.score); hi = max(hi, x.score) }
        for i in list.indices { list[i].score = hi > lo ? (list[i].score - lo) / (hi - lo) : 1 }
        if let f = config.freshness { list = f.apply(list, now: request.asOf ?? features.now, weight: config.freshnessWeight) }
        if config.mmrLambda < 1 {
            let d = itemVectors.columns
            var emb = Matrix(rows: list.count, columns: d)
            (config.mmrCentered ? centeredVectors : itemVectors).storage.withUnsafeBufferPointer { src in
                emb.storage.withUnsafeMutableBufferPointer { dst in
                    for (r, item) in list.enumerated() {
                        (dst.baseAddress! + r * d).update(from: src.baseAddress! + item.id * d, count: d)
                    }
                }
            }
            list = MMR.rerank(list, embeddings: emb, lambda: config.mmrLambda, k: list.count)
            // MMR's order becomes the score, so that the rules keep it.
            let n = Double(list.count)
            for i in list.indices { list[i].score = (n - Double(i)) / n }
        }
        return config.rules.apply(list, k: k)
    }
}

// MARK: - Live writes

extension FunnelPipeline {
    /// Reads the pipeline's per-item state (vectors, features) consistently with live writes.
    public func reading<T>(_ body: (_ itemVectors: Matrix, _ features: RankingFeatures) throws -> T) rethrows -> T {
        try state.read { try body(itemVectors, features) }
    }

    /// Sets item `item`'s vector and attributes, or appends a new item when `item` is the
    /// item count; the item is then in every stage (the index, the exact fallback, the
    /// ranker's features, MMR's space) for the next request. An item deleted before comes back.
    /// - Throws: `ServingError.invalidInput` for an item past the end, a vector of another
    ///   dimension or holding NaN, or attributes the catalog cannot hold. Nothing changes then.
    public func setItem(_ item: Int, vector: [Float], attributes: ItemAttributeRow) throws {
        guard vector.count == index.dimension else {
            throw ServingError.invalidInput("the item vector has \(vector.count) values, the index \(index.dimension) dimensions")
        }
        if let bad = vector.firstIndex(where: { !$0.isFinite }) { throw ServingError.invalidInput("the item vector holds \(vector[bad]) at \(bad)") }
        try state.write {
            let n = itemVectors.rows
            guard (0...n).contains(item) else { throw ServingError.invalidInput("item \(item) outside 0...\(n)") }
            // Checked before anything changes (ItemAttributes.set throws before it writes).
            do { try features.setItem(item, attributes) } catch { throw ServingError.invalidInput("\(error)") }
            var centered = zip(vector, centerMean).map { $0 - $1 }
            let norm = centered.reduce(0) { $0 + $1 * $1 }.squareRoot()
            if norm > 0 { centered = centered.map { $0 / norm } }
            if item == n {
                try itemVectors.append(rows: Matrix(rows: 1, columns: vector.count, storage: vector))
                try centeredVectors.append(rows: Matrix(rows: 1, columns: vector.count, storage: centered))
                try exact.add(Matrix(rows: 1, columns: vector.count, storage: vector))
                popularOrder.append(item)
            } else {
                for c in 0..<vector.count {
                    itemVectors[item, c] = vector[c]
                    centeredVectors[item, c] = centered[c]
                }
                try exact.replace(item, with: vector)
            }
            deleted.remove(Int32(item))
            try index.update(UInt64(item), vector: vector)
        }
    }

    /// Deletes an item while serving: no stage returns it again (until it is set again).
    public func removeItem(_ item: Int) throws {
        try state.write {
            guard (0..<itemVectors.rows).contains(item) else { throw ServingError.invalidInput("item \(item) outside 0..<\(itemVectors.rows)") }
            guard !deleted.contains(Int32(item)) else { return }
            deleted.insert(Int32(item))
            if index.contains(UInt64(item)) { try index.remove(UInt64(item)) }
        }
    }

    public func isDeleted(_ item: Int) -> Bool { state.read { deleted.contains(Int32(item)) } }
    public var deletedCount: Int { state.read { deleted.count } }

    /// Adds a user first seen while serving; returns their index (for `FunnelRequest.user`).
    public func addUser() -> Int { state.write { features.addUser() } }

    /// Records interactions that happened now (see `RankingFeatures.record`).
    public func record(_ events: [(user: Int, item: Int, weight: Float?)]) throws {
        try state.write {
            for e in events {
                do { try features.record(user: e.user, item: e.item, weight: e.weight) } catch { throw ServingError.invalidInput("\(error)") }
            }
        }
    }
}
