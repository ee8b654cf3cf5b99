import Datasets
import Foundation
import GBDT
import HNSW
import LinearAlgebra
import Rerank
import Registry
import Serving
import TextSearch
import TwoTower

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
    public let catalog: ItemCatalog
    public let towers: TwoTowerModel
    public let index: HNSWIndex
    public let ranker: GBDTModel?
    public let features: RankingFeatures
    public let pipeline: FunnelPipeline
    /// The registry name and version this engine serves as (shown in answers).
    public let name: String?
    public let version: String?
    public let userVectors: Matrix
    let userRows: [String: Int]
    let itemRows: [String: Int]
    let lexical: BM25Index

    /// The largest k a request may ask for.
    public static let maxK = 10_000

    /// Loads and checks a bundle.
    /// - Parameters:
    ///   - metrics: where the pipeline's stage timers go (labels carry the version when several serve).
    ///   - inline: run the stages on the caller's thread without budgets (offline work).
    /// - Throws: `EngineError.corruptBundle` naming the file that is missing, corrupt or disagrees.
    public init(bundle: ModelBundle, name: String? = nil, version: String? = nil, metrics: StageMetrics? = nil,
                inline: Bool = false) throws {
        guard bundle.manifest.kind == .funnel else {
            throw EngineError.corruptBundle(folder: bundle.folder, file: ModelBundle.File.manifest,
                                            reason: "an index bundle; the engine serves funnel bundles")
        }
        let bad = bundle.failure
        self.bundle = bundle
        self.name = name
        self.version = version
        let catalog = try bundle.loadCatalog()
        self.catalog = catalog
        let (towers, userIDs, itemIDs) = try bundle.reading(ModelBundle.File.towers) { try TwoTowerModel.load(from: bundle.path(ModelBundle.File.towers)) }
        guard userIDs == catalog.userIDs, itemIDs == catalog.itemIDs else {
            throw bad(ModelBundle.File.towers, "its \(userIDs.count) users and \(itemIDs.count) items are not the catalog's "
                      + "\(catalog.userIDs.count) and \(catalog.itemIDs.count): the files come from different models")
        }
        self.towers = towers
        let index = try bundle.loadIndex(items: itemIDs.count, dimension: towers.parameters.dimension)
        self.index = index
        let features = try bundle.reading(ModelBundle.File.catalog) { try catalog.rankingFeatures() }
        self.features = features
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
        var config = bundle.manifest.serving.pipelineConfig
        config.inline = inline
        pipeline = try FunnelPipeline(index: index, itemVectors: itemVectors, features: features, ranker: ranker, config: config,
                                      metrics: metrics ?? StageMetrics(label: "funnel", dimensions: version.map { [("version", $0)] } ?? []))
        userRows = Dictionary(userIDs.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        itemRows = Dictionary(itemIDs.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        var bm25 = BM25Index()
        for text in catalog.searchText { bm25.add(text) }
        lexical = bm25
    }

    /// Opens the bundle in `folder` and loads it.
    public convenience init(folder: String, name: String? = nil, version: String? = nil, metrics: StageMetrics? = nil,
                            inline: Bool = false) throws {
        try self.init(bundle: try ModelBundle.open(folder), name: name, version: version, metrics: metrics, inline: inline)
    }

    /// Loads the version of `name` a registry serves (production, else the newest), or the
    /// version a user is routed to when `user` is given.
    public static func fromRegistry(_ root: String, name: String, user: String? = nil, inline: Bool = false) throws -> Engine {
        let registry = ModelRegistry(root: root)
        let v = try user.map { try registry.route(name, userID: $0).version } ?? registry.current(name)
        return try Engine(folder: registry.folder(name, v), name: name, version: "v\(v.version)", inline: inline)
    }

    public var itemCount: Int { catalog.itemIDs.count }
    public func knows(user: String) -> Bool { userRows[user] != nil }
    public func item(_ id: String) -> Int? { itemRows[id] }

    // MARK: - Recommendations

    /// The funnel's top `k` for a user. A known user is served from their embedding with
    /// everything they have interacted with left out (unless `includeSeen`). A user the
    /// model has not seen is served from the items they `touched` (their pooled embeddings).
    /// - Throws: `EngineError.unknown` for an unknown user with no touched items or an
    ///   unknown item id; `EngineError.invalidRequest` for k outside 1...maxK.
    public func recommend(user: String, k: Int, touched: [String] = [], exclude: [String] = [],
                          includeSeen: Bool = false) throws -> EngineAnswer {
        try check(k: k)
        var excluded = Set(try exclude.map { try row(item: $0) })
        let request: FunnelRequest
        if let u = userRows[user] {
            if !includeSeen { excluded.formUnion(features.statistics.history(u, before: features.now &+ 1)) }
            request = FunnelRequest(user: u, vector: Array(userVectors.row(u)), exclude: excluded)
        } else if !touched.isEmpty {
            let items = try touched.map { try row(item: $0) }
            if !includeSeen { excluded.formUnion(items) }
            request = FunnelRequest(user: nil, vector: try towers.userVector(touched: items), exclude: excluded)
        } else {
            throw EngineError.unknown(kind: "user", id: user)
        }
        var answer = try answer(pipeline.recommend(request, k: k))
        answer.user = user
        return answer
    }

    /// The funnel's top `k` for a user the model has never seen, from their attributes
    /// alone: `attributes` holds the user's row, with the columns the user features read,
    /// coded with the vocabularies saved at training (id hidden).
    /// - Returns: the answer and the fields that could not be coded (column missing).
    public func recommend(newUser user: String, attributes: AttributeTable, k: Int) throws -> (answer: EngineAnswer, uncoded: [String]) {
        try check(k: k)
        guard attributes.keys.lookup(user) != nil else { throw EngineError.unknown(kind: "user", id: "\(user) (not in the attribute table)") }
        let old = towers.users.features
        var ids = Vocabulary(catalog.userIDs)
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
    public func similar(item: String, k: Int) throws -> EngineAnswer {
        try check(k: k)
        let i = try row(item: item)
        let t0 = Clock.now()
        let request = FunnelRequest(user: nil, vector: Array(pipeline.itemVectors.row(Int(i))), exclude: [i])
        let candidates = try pipeline.retrieve(request, count: max(pipeline.config.candidates, k))
        let t1 = Clock.now()
        var config = pipeline.config
        config.freshness = nil
        let list = pipeline.rerank(request, candidates, k: k, override: config)
        let t2 = Clock.now()
        var answer = EngineAnswer(model: name, version: version, path: ["hnsw", "rerank"], latencyUs: (t2 - t0) * 1e6,
                                  stagesUs: ["retrieval": (t1 - t0) * 1e6, "rerank": (t2 - t1) * 1e6], items: list.map { served($0) })
        answer.query = item
        return answer
    }

    // MARK: - Helpers

    func check(k: Int) throws {
        guard (1...Self.maxK).contains(k) else { throw EngineError.invalidRequest("k must be in 1...\(Self.maxK), got \(k)") }
    }

    func row(item: String) throws -> Int32 {
        guard let i = itemRows[item] else { throw EngineError.unknown(kind: "item", id: item) }
        return Int32(i)
    }

    func answer(_ r: Recommendation) -> EngineAnswer {
        EngineAnswer(model: name, version: version, path: r.path, latencyUs: r.totalSeconds * 1e6,
                     stagesUs: Dictionary(r.stageSeconds.map { ($0.stage, $0.seconds * 1e6) }, uniquingKeysWith: +),
                     items: r.items.map { served($0) })
    }

    /// A ranked item as it is shown: named, categorized, explained.
    public func served(_ x: RankedItem, lexicalRank: Int? = nil) -> ServedItem {
        let names = features.items.categoryNames
        let contributions = x.contributions.map { ServedItem.Contribution(feature: $0.feature, value: $0.value) }
        let rules = x.explanation
        return ServedItem(
            item: catalog.itemIDs[x.id], title: catalog.titles.map { $0[x.id] },
            category: x.category.flatMap { $0 < names.count ? names[$0] : nil }, score: x.score, rankerScore: x.rankerScore,
            explanation: .init(retrievalRank: x.retrievalRank.map { $0 + 1 }, retrievalScore: x.retrievalScore, lexicalRank: lexicalRank,
                               rankerContributions: contributions.isEmpty ? nil : contributions, rules: rules.isEmpty ? nil : rules))
    }
}
