import Datasets
import Foundation
import Synchronization
import GBDT
import HNSW
import LinearAlgebra
import Rerank
import Registry
import Serving
import TextSearch
import TwoTower

/// One request's own settings over the bundle's serving settings: candidates and beam
/// width of retrieval, and business rules (items pinned first when they are candidates,
/// score factors, a category cap).
public struct RequestRules: Sendable, Equatable, Codable {
    public var candidates: Int?
    public var ef: Int?
    public var maxPerCategory: Int?
    public var pin: [String] = []
    public var boost: [String: Double] = [:]

    public init(candidates: Int? = nil, ef: Int? = nil, maxPerCategory: Int? = nil, pin: [String] = [], boost: [String: Double] = [:]) {
        self.candidates = candidates
        self.ef = ef
        self.maxPerCategory = maxPerCategory
        self.pin = pin
        self.boost = boost
    }

    public var isEmpty: Bool { self == RequestRules() }

    enum CodingKeys: String, CodingKey { case candidates, ef, pin, boost, maxPerCategory = "max_per_category" }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        candidates = try c.decodeIfPresent(Int.self, forKey: .candidates)
        ef = try c.decodeIfPresent(Int.self, forKey: .ef)
        maxPerCategory = try c.decodeIfPresent(Int.self, forKey: .maxPerCategory)
        pin = try c.decodeIfPresent([String].self, forKey: .pin) ?? []
        boost = try c.decodeIfPresent([String: Double].self, forKey: .boost) ?? [:]
    }
}

/// A loaded model bundle, answering requests with the whole funnel: recommendations for
/// known users, for new users from the items they touched or their attributes, similar
/// items, and text search, each item named and explained.
///
/// Loading validates the bundle's every file (see `ModelBundle.open`) and checks that the
/// files agree with each other (the same users and items, the index's dimension and
/// size, the ranker's feature count) before the engine answers anything.
///
/// Thread-safe: every method may be called from many threads at once.
public final class Engine: @unchecked Sendable {
    public let bundle: ModelBundle
    /// The catalog as served: the bundle's, plus the items written while serving.
    public var catalog: ItemCatalog { state.read { liveCatalog } }
    public let towers: TwoTowerModel
    public let index: HNSWIndex
    public let ranker: GBDTModel?
    /// The ranking features as served (live interactions and items included).
    public var features: RankingFeatures { pipeline.reading { $1 } }
    public let pipeline: FunnelPipeline
    /// The registry name and version this engine serves as (shown in answers).
    public let name: String?
    public let version: String?
    public let userVectors: Matrix
    // Engine-level state that live writes change (see Engine+Live.swift), under `state`.
    // Lock order: `state` before the pipeline's own lock, never the other way.
    let state = ReadWriteLock()
    var liveCatalog: ItemCatalog
    var userRows: [String: Int]
    var itemRows: [String: Int]
    var lexical: BM25Index
    /// The item of each BM25 document (an item changed while serving gets a new document).
    var lexicalItem: [Int]
    var live = LiveItems()
    /// The last write-ahead log record applied (kept by `LiveService` under its lock).
    var liveSequence: UInt64 = 0
    /// Bumped by every item write (upsert, delete) and by each user's interactions: what a
    /// cached answer was computed at (see `freshness(of:)`).
    let itemWrites = Atomic<UInt64>(0)
    var userWrites: [String: UInt64] = [:]
    /// Serializes live writes (readers never wait on it).
    let writer = NSLock()

    /// The largest k a request may ask for.
    public static let maxK = 10_000

    /// Loads and checks a bundle.
    /// - Parameters:
    ///   - metrics: where the pipeline's stage timers go (labels carry the version when several serve).
    ///   - inline: run the stages on the caller's thread without budgets (offline work).
    ///   - writable: take live writes (the index is loaded into memory instead of mmapped read-only).
    ///   - serving: replaces some of the bundle's serving settings (a JSON object, see `ServingSettings.overlaid`).
    /// - Throws: `EngineError.corruptBundle` naming the file that is missing, corrupt or disagrees.
    public init(bundle: ModelBundle, name: String? = nil, version: String? = nil, metrics: StageMetrics? = nil,
                inline: Bool = false, writable: Bool = false, serving: Data? = nil) throws {
        guard bundle.manifest.kind == .funnel else {
            throw EngineError.corruptBundle(folder: bundle.folder, file: ModelBundle.File.manifest,
                                            reason: "an index bundle; the engine serves funnel bundles")
        }
        let bad = bundle.failure
        self.bundle = bundle
        self.name = name
        self.version = version
        let catalog = try bundle.loadCatalog()
        self.liveCatalog = catalog
        let (towers, userIDs, itemIDs) = try bundle.reading(ModelBundle.File.towers) { try TwoTowerModel.load(from: bundle.path(ModelBundle.File.towers)) }
        guard userIDs == catalog.userIDs, itemIDs == catalog.itemIDs else {
            throw bad(ModelBundle.File.towers, "its \(userIDs.count) users and \(itemIDs.count) items are not the catalog's "
                      + "\(catalog.userIDs.count) and \(catalog.itemIDs.count): the files come from different models")
        }
        self.towers = towers
        let index = try bundle.loadIndex(items: itemIDs.count, dimension: towers.parameters.dimension, writable: writable)
        self.index = index
        let features = try bundle.reading(ModelBundle.File.catalog) { try catalog.rankingFeatures() }
        if bundle.has(ModelBundle.File.ranker) {
            let r = try bundle.reading(ModelBundle.File.ranker) { try GBDTModel.load(from: bundle.path(ModelBundle.File.ranker)) }
            guard r.featureCount == features.count else {
                throw bad(ModelBundle.File.ranker, "expects \(r.featureCount) features, the catalog gives \(features.count)")
            }
            ranker = r
        } else {
            ranker = nil
        }
        userVectors = towers.embedAll(towers.users)
        let itemVectors = towers.embedAll(towers.items)
        var config = (try serving.map { try bundle.manifest.serving.overlaid(with: $0) } ?? bundle.manifest.serving).pipelineConfig
        config.inline = inline
        pipeline = try FunnelPipeline(index: index, itemVectors: itemVectors, features: features, ranker: ranker, config: config,
                                      metrics: metrics ?? StageMetrics(label: "funnel", dimensions: version.map { [("version", $0)] } ?? []))
        userRows = Dictionary(userIDs.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        itemRows = Dictionary(itemIDs.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        var bm25 = BM25Index()
        for text in catalog.searchText { bm25.add(text) }
        lexical = bm25
        lexicalItem = Array(0..<catalog.searchText.count)
    }

    /// Opens the bundle in `folder` and loads it.
    public convenience init(folder: String, name: String? = nil, version: String? = nil, metrics: StageMetrics? = nil,
                            inline: Bool = false, writable: Bool = false, serving: Data? = nil) throws {
        try self.init(bundle: try ModelBundle.open(folder), name: name, version: version, metrics: metrics, inline: inline, writable: writable,
                      serving: serving)
    }

    /// Loads the version of `name` a registry serves (production, else the newest), or the
    /// version a user is routed to when `user` is given.
    public static func fromRegistry(_ root: String, name: String, user: String? = nil, inline: Bool = false) throws -> Engine {
        let registry = ModelRegistry(root: root)
        let v = try user.map { try registry.route(name, userID: $0).version } ?? registry.current(name)
        return try Engine(folder: try registry.checkedFolder(name, v), name: name, version: "v\(v.version)", inline: inline)
    }

    public var itemCount: Int { state.read { liveCatalog.itemIDs.count } }
    public func knows(user: String) -> Bool { state.read { userRows[user] != nil } }
    /// An item's row, nil for an unknown or deleted item.
    public func item(_ id: String) -> Int? {
        state.read { itemRows[id] }.flatMap { pipeline.isDeleted($0) ? nil : $0 }
    }

    // MARK: - Recommendations

    /// The funnel's top `k` for a user. A known user is served from their embedding with
    /// everything they have interacted with left out (unless `includeSeen`). A user the
    /// model has not seen is served from the items they `touched` (their pooled embeddings).
    /// - Throws: `EngineError.unknown` for an unknown user with no touched items or an
    ///   unknown item id; `EngineError.invalidRequest` for k outside 1...maxK.
    public func recommend(user: String, k: Int, touched: [String] = [], exclude: [String] = [],
                          includeSeen: Bool = false, filter: ItemFilter = ItemFilter(), rules: RequestRules = RequestRules(),
                          explain: Bool = true) throws -> EngineAnswer {
        var request = try self.request(user: user, k: k, touched: touched, exclude: exclude, includeSeen: includeSeen, filter: filter, rules: rules)
        request.explain = explain
        var answer = try answer(pipeline.recommend(request, k: k))
        answer.user = user
        return answer
    }

    /// As `recommend(user:k:...)`, with the stages on the calling thread and their budgets
    /// kept by a watchdog (see `FunnelPipeline.recommend(_:k:completion:)`): what the HTTP
    /// server calls. `completion` is called exactly once.
    public func recommend(user: String, k: Int, touched: [String] = [], exclude: [String] = [],
                          includeSeen: Bool = false, filter: ItemFilter = ItemFilter(), rules: RequestRules = RequestRules(),
                          explain: Bool = true, completion: @escaping @Sendable (Result<EngineAnswer, Error>) -> Void) {
        var request: FunnelRequest
        do {
            request = try self.request(user: user, k: k, touched: touched, exclude: exclude, includeSeen: includeSeen, filter: filter, rules: rules)
            request.explain = explain
        } catch {
            return completion(.failure(error))
        }
        pipeline.recommend(request, k: k) { [self] result in
            completion(result.map { r in
                var answer = answer(r)
                answer.user = user
                return answer
            })
        }
    }

    /// A user's request as the pipeline takes it: their vector (or their touched items'),
    /// what to leave out, the filter and the rules as rows.
    func request(user: String, k: Int, touched: [String], exclude: [String], includeSeen: Bool, filter: ItemFilter,
                 rules: RequestRules) throws -> FunnelRequest {
        try check(k: k)
        let (u, excludedRows, touchedRows) = try state.read {
            (userRows[user], try exclude.map { try row(item: $0) }, try touched.map { try row(item: $0) })
        }
        let overrides: RequestOverrides? = rules.isEmpty ? nil : try state.read { try self.overrides(rules) }
        var excluded = Set(excludedRows)
        var request: FunnelRequest
        // A user's history: the log's and what they did while serving.
        let history = u.map { u in pipeline.reading { Array($1.history(u)) } } ?? []
        if !includeSeen { excluded.formUnion(history); excluded.formUnion(touchedRows) }
        if let u, u < userVectors.rows {
            request = FunnelRequest(user: u, vector: Array(userVectors.row(u)), exclude: excluded)
        } else if !(touchedRows + history).isEmpty {
            // A user the model has not seen: the items they touched (given, or recorded while serving).
            request = FunnelRequest(user: u, vector: pooled(touchedRows + history), exclude: excluded)
        } else {
            throw EngineError.unknown(kind: "user", id: user)
        }
        if !filter.isEmpty { request.allowed = try pipeline.reading { try filter.allowed(in: $1.items) } }
        request.overrides = overrides
        return request
    }

    /// A request's rules with item ids as rows (call under `state`).
    func overrides(_ r: RequestRules) throws -> RequestOverrides {
        if let c = r.candidates, !(1...Self.maxK).contains(c) { throw EngineError.invalidRequest("candidates must be in 1...\(Self.maxK), got \(c)") }
        if let ef = r.ef, !(1...100_000).contains(ef) { throw EngineError.invalidRequest("ef must be in 1...100000, got \(ef)") }
        if let m = r.maxPerCategory, m < 1 { throw EngineError.invalidRequest("max_per_category must be at least 1, got \(m)") }
        if let bad = r.boost.first(where: { !$0.value.isFinite || $0.value < 0 }) {
            throw EngineError.invalidRequest("the boost of '\(bad.key)' must be a finite factor >= 0, got \(bad.value)")
        }
        var boost = [Int: Double]()
        for (id, b) in r.boost { boost[Int(try row(item: id))] = b }
        return RequestOverrides(candidates: r.candidates, ef: r.ef, maxPerCategory: r.maxPerCategory.map { .some($0) },
                                pinned: try r.pin.map { Int(try row(item: $0)) }, boost: boost)
    }

    /// The write counters an answer for `user` depends on: item writes, then the user's own
    /// interactions. A cached answer is still the engine's answer while both are unchanged
    /// (interactions move other users' ranking statistics too, which a cache's TTL bounds).
    public func freshness(of user: String) -> (items: UInt64, user: UInt64) {
        (itemWrites.load(ordering: .acquiring), state.read { userWrites[user] ?? 0 })
    }

    /// The funnel's top `k` for a query vector in the item-embedding space (a caller's own
    /// user or query embedding): retrieval, ranking without a user history, re-ranking.
    /// - Throws: `EngineError.invalidRequest` for a vector of another dimension or holding NaN.
    public func query(vector: [Float], k: Int, exclude: [String] = [], filter: ItemFilter = ItemFilter()) throws -> EngineAnswer {
        try check(k: k)
        guard vector.count == index.dimension else {
            throw EngineError.invalidRequest("the vector has \(vector.count) values, the model's embeddings \(index.dimension)")
        }
        guard vector.allSatisfy(\.isFinite) else { throw EngineError.invalidRequest("the vector holds NaN or an infinity") }
        var request = FunnelRequest(user: nil, vector: vector, exclude: Set(try state.read { try exclude.map { try row(item: $0) } }))
        if !filter.isEmpty { request.allowed = try pipeline.reading { try filter.allowed(in: $1.items) } }
        return try answer(pipeline.recommend(request, k: k))
    }

    /// The normalized mean of the items' embeddings: the query of a user known by what they touched.
    func pooled(_ items: [Int32]) -> [Float] {
        pipeline.reading { vectors, _ in
            var mean = [Float](repeating: 0, count: vectors.columns)
            for i in items { for c in mean.indices { mean[c] += vectors[Int(i), c] } }
            let norm = max(mean.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
            return mean.map { $0 / norm }
        }
    }

    /// The funnel's top `k` for a user the model has never seen, from their attributes
    /// alone: `attributes` holds the user's row, with the columns the user features read,
    /// coded with the vocabularies saved at training (id hidden).
    /// - Returns: the answer and the fields that could not be coded (column missing).
    public func recommend(newUser user: String, attributes: AttributeTable, k: Int) throws -> (answer: EngineAnswer, uncoded: [String]) {
        try check(k: k)
        guard attributes.keys.lookup(user) != nil else { throw EngineError.unknown(kind: "user", id: "\(user) (not in the attribute table)") }
        let old = towers.users.features
        var ids = Vocabulary(Array(catalog.userIDs.prefix(towers.users.features.count)))
        let row = Int(ids.intern(user))
        let (grown, uncoded) = old.appending(table: attributes.aligned(to: ids).table, from: old.count)
        let vector = try towers.userVector(features: grown, row: row)
        var answer = try answer(pipeline.recommend(FunnelRequest(user: nil, vector: vector), k: k))
        answer.user = user
        return (answer, Array(Set(uncoded)).sorted())
    }

    /// The attribute columns a new user's table must hold (see `recommend(newUser:attributes:k:)`).
    public func userAttributeColumns(separator: Character = "|") -> [ColumnSpec] {
        towers.users.features.attributeColumns(separator: separator)
    }

    /// Items nearest to `item` in the item-embedding space, re-ranked (MMR, category cap)
    /// without freshness or the ranker (which was trained for users, not items).
    public func similar(item: String, k: Int, filter: ItemFilter = ItemFilter()) throws -> EngineAnswer {
        try check(k: k)
        let i = try state.read { try row(item: item) }
        let t0 = Clock.now()
        var request = FunnelRequest(user: nil, vector: pipeline.reading { v, _ in v.row(Int(i)) }, exclude: [i])
        if !filter.isEmpty { request.allowed = try pipeline.reading { try filter.allowed(in: $1.items) } }
        let candidates = try pipeline.retrieve(request, count: max(pipeline.config.candidates, k))
        let t1 = Clock.now()
        var config = pipeline.config
        config.freshness = nil
        let list = pipeline.rerank(request, candidates, k: k, override: config)
        let t2 = Clock.now()
        var answer = EngineAnswer(model: name, version: version, path: ["hnsw", "rerank"], latencyUs: (t2 - t0) * 1e6,
                                  stagesUs: ["retrieval": (t1 - t0) * 1e6, "rerank": (t2 - t1) * 1e6], items: served(list))
        answer.query = item
        return answer
    }

    // MARK: - Helpers

    func check(k: Int) throws {
        guard (1...Self.maxK).contains(k) else { throw EngineError.invalidRequest("k must be in 1...\(Self.maxK), got \(k)") }
    }

    /// An item's row (call under `state`): unknown and deleted items are refused.
    func row(item: String) throws -> Int32 {
        guard let i = itemRows[item], !pipeline.isDeleted(i) else { throw EngineError.unknown(kind: "item", id: item) }
        return Int32(i)
    }

    func answer(_ r: Recommendation) -> EngineAnswer {
        EngineAnswer(model: name, version: version, path: r.path, latencyUs: r.totalSeconds * 1e6,
                     stagesUs: Dictionary(r.stageSeconds.map { ($0.stage, $0.seconds * 1e6) }, uniquingKeysWith: +),
                     items: served(r.items))
    }

    /// Ranked items as they are shown: named, categorized, explained.
    public func served(_ list: [RankedItem], lexicalRank: [Int: Int] = [:]) -> [ServedItem] {
        let names = pipeline.reading { $1.items.categoryNames }
        return state.read {
            let catalog = liveCatalog  // once per list: a copy per item retained each of its arrays
            return list.map { served($0, catalog: catalog, names: names, lexicalRank: lexicalRank[$0.id]) }
        }
    }

    func served(_ x: RankedItem, catalog: ItemCatalog, names: [String], lexicalRank: Int?) -> ServedItem {
        let contributions = x.contributions.map { ServedItem.Contribution(feature: $0.feature, value: $0.value) }
        let rules = x.explanation
        return ServedItem(
            item: catalog.itemIDs[x.id], title: catalog.titles.map { $0[x.id] },
            category: x.category.flatMap { $0 < names.count ? names[$0] : nil }, score: x.score, rankerScore: x.rankerScore,
            explanation: .init(retrievalRank: x.retrievalRank.map { $0 + 1 }, retrievalScore: x.retrievalScore, lexicalRank: lexicalRank,
                               rankerContributions: contributions.isEmpty ? nil : contributions, rules: rules.isEmpty ? nil : rules))
    }
}
