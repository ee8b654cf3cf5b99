import Rerank

/// One served item, as every front end shows it (library, CLI JSON, HTTP): its id and
/// display name, its final score, and why it is there.
public struct ServedItem: Codable, Sendable, Equatable {
    public var item: String
    public var title: String?
    public var category: String?
    /// The final score (after re-ranking: the list order).
    public var score: Double
    /// The GBDT ranker's score, when the ranker ran.
    public var rankerScore: Double?
    public var explanation: Explanation

    public init(item: String, title: String? = nil, category: String? = nil, score: Double, rankerScore: Double? = nil,
                explanation: Explanation = .init()) {
        self.item = item
        self.title = title
        self.category = category
        self.score = score
        self.rankerScore = rankerScore
        self.explanation = explanation
    }

    /// Why an item is in a list: where retrieval put it, what the ranker saw, what the
    /// re-ranking rules did.
    public struct Explanation: Codable, Sendable, Equatable {
        /// 1-based position in the retrieval list.
        public var retrievalRank: Int?
        /// Similarity to the query embedding.
        public var retrievalScore: Double?
        /// BM25 position of a text search hit (nil: found as an embedding neighbour).
        public var lexicalRank: Int?
        /// The largest TreeSHAP contributions to the ranker score, largest first.
        public var rankerContributions: [Contribution]?
        /// What freshness, MMR and the business rules did.
        public var rules: [String]?

        public init(retrievalRank: Int? = nil, retrievalScore: Double? = nil, lexicalRank: Int? = nil,
                    rankerContributions: [Contribution]? = nil, rules: [String]? = nil) {
            self.retrievalRank = retrievalRank
            self.retrievalScore = retrievalScore
            self.lexicalRank = lexicalRank
            self.rankerContributions = rankerContributions
            self.rules = rules
        }

        enum CodingKeys: String, CodingKey {
            case retrievalRank = "retrieval_rank", retrievalScore = "retrieval_score", lexicalRank = "lexical_rank"
            case rankerContributions = "ranker_contributions", rules
        }
    }

    public struct Contribution: Codable, Sendable, Equatable {
        public var feature: String
        public var value: Double

        public init(feature: String, value: Double) {
            self.feature = feature
            self.value = value
        }
    }

    enum CodingKeys: String, CodingKey {
        case item, title, category, score, explanation
        case rankerScore = "ranker_score"
    }
}

/// An answer of the engine: the items, the model that answered, the path the request took
/// through the stages (fallbacks included) and the time each stage took.
public struct EngineAnswer: Codable, Sendable, Equatable {
    /// The model's name and version ("v3"), when it came from a registry.
    public var model: String?
    public var version: String?
    /// The user or the query the answer is for.
    public var user: String?
    public var query: String?
    /// Stages in the order they answered, e.g. ["hnsw", "gbdt", "rerank"].
    public var path: [String]
    public var latencyUs: Double
    public var stagesUs: [String: Double]
    public var items: [ServedItem]

    public init(model: String? = nil, version: String? = nil, user: String? = nil, query: String? = nil, path: [String],
                latencyUs: Double, stagesUs: [String: Double], items: [ServedItem]) {
        self.model = model
        self.version = version
        self.user = user
        self.query = query
        self.path = path
        self.latencyUs = latencyUs
        self.stagesUs = stagesUs
        self.items = items
    }

    enum CodingKeys: String, CodingKey {
        case model, version, user, query, path, items
        case latencyUs = "latency_us", stagesUs = "stages_us"
    }
}
