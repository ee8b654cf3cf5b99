import Datasets
import Foundation

/// How one side's features are described in a schema file, and how the tower sees them:
/// a feature kind with an optional embedding width (otherwise the fourth-root rule).
public struct FeatureSpec: Sendable, Equatable {
    public var name: String
    public var kind: FeatureKind
    /// Embedding width; nil: `FeatureField.defaultDimension(vocabulary:)`.
    public var dimension: Int?

    public init(_ name: String, _ kind: FeatureKind, dimension: Int? = nil) {
        self.name = name
        self.kind = kind
        self.dimension = dimension
    }
}

/// A JSON description of training data in CSV files: which columns of the interaction log
/// hold the user, the item, the time and an optional weight, and for users and items the
/// key column of their attribute file and the features built from its other columns.
///
/// ```json
/// {
///   "interactions": {"user": "user_id", "item": "item_id", "timestamp": "timestamp"},
///   "items": {
///     "key": "item_id",
///     "category": "genres", "created_at": "released",
///     "features": [
///       {"column": "genres", "type": "multi_categorical", "separator": "|"},
///       {"column": "brand", "type": "hashed_categorical", "buckets": 4096},
///       {"column": "price", "type": "numeric"},
///       {"column": "weight", "type": "numeric_buckets", "buckets": 10},
///       {"column": "released", "type": "age", "buckets": 12},
///       {"column": "title", "type": "text", "buckets": 20000, "dimension": 32}
///     ]
///   },
///   "users": {"key": "user_id", "features": [{"column": "country", "type": "categorical"}]}
/// }
/// ```
///
/// Types: `categorical` (a vocabulary of the values seen), `hashed_categorical` (values
/// hashed into `buckets`, for unbounded vocabularies), `multi_categorical` (values split on
/// `separator`, pooled by `pooling`: `mean` or `sum`), `numeric` (standardized, fed to the
/// tower as is), `numeric_buckets` (quantile buckets), `age` (a timestamp turned into an age
/// at the newest interaction, log-scale buckets), `text` (lower-cased words hashed into
/// `buckets`, mean-pooled). Each side also gets its id as a feature unless `"id": false`.
/// `category` and `created_at` name the item columns the ranker's category-affinity and
/// item-age features use; `title` the column that names an item (shown with every served
/// item, indexed for text search with the text and categorical columns).
public struct FeatureSchema: Codable, Sendable, Equatable {
    public struct Interactions: Codable, Sendable, Equatable {
        public var user: String
        public var item: String
        public var timestamp: String?
        public var weight: String?

        public init(user: String = "user_id", item: String = "item_id", timestamp: String? = "timestamp", weight: String? = nil) {
            self.user = user
            self.item = item
            self.timestamp = timestamp
            self.weight = weight
        }

        /// Absent keys take the defaults; `"timestamp": null` means the log has no times
        /// (rows are taken in file order).
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            user = try c.decodeIfPresent(String.self, forKey: .user) ?? "user_id"
            item = try c.decodeIfPresent(String.self, forKey: .item) ?? "item_id"
            timestamp = c.contains(.timestamp) ? try c.decodeIfPresent(String.self, forKey: .timestamp) : "timestamp"
            weight = try c.decodeIfPresent(String.self, forKey: .weight)
        }

        /// A log without times is written as `"timestamp": null` (an absent key means the default).
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(user, forKey: .user)
            try c.encode(item, forKey: .item)
            try c.encode(timestamp, forKey: .timestamp)
            try c.encodeIfPresent(weight, forKey: .weight)
        }

        enum CodingKeys: String, CodingKey { case user, item, timestamp, weight }
    }

    public enum FeatureType: String, Codable, Sendable {
        case categorical
        case hashedCategorical = "hashed_categorical"
        case multiCategorical = "multi_categorical"
        case numeric
        case numericBuckets = "numeric_buckets"
        case age
        case text
    }

    public struct Feature: Codable, Sendable, Equatable {
        public var column: String
        public var type: FeatureType
        public var buckets: Int?
        public var separator: String?
        public var pooling: Pooling?
        public var dimension: Int?

        public init(column: String, type: FeatureType, buckets: Int? = nil, separator: String? = nil,
                    pooling: Pooling? = nil, dimension: Int? = nil) {
            self.column = column
            self.type = type
            self.buckets = buckets
            self.separator = separator
            self.pooling = pooling
            self.dimension = dimension
        }
    }

    public struct Side: Codable, Sendable, Equatable {
        public var key: String
        public var id: Bool?
        public var idDimension: Int?
        public var features: [Feature]
        public var category: String?
        public var createdAt: String?
        /// The column that names an item for people (a title): shown beside every served
        /// item and indexed for text search.
        public var title: String?

        public init(key: String, id: Bool? = nil, idDimension: Int? = nil, features: [Feature],
                    category: String? = nil, createdAt: String? = nil, title: String? = nil) {
            self.key = key
            self.id = id
            self.idDimension = idDimension
            self.features = features
            self.category = category
            self.createdAt = createdAt
            self.title = title
        }

        enum CodingKeys: String, CodingKey {
            case key, id, features, category, title
            case idDimension = "id_dimension"
            case createdAt = "created_at"
        }
    }

    public var interactions: Interactions
    public var users: Side?
    public var items: Side?
    /// The CSV field separator of every file (default ",").
    public var delimiter: String?

    public init(interactions: Interactions = Interactions(), users: Side? = nil, items: Side? = nil, delimiter: String? = nil) {
        self.interactions = interactions
        self.users = users
        self.items = items
        self.delimiter = delimiter
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        interactions = try c.decodeIfPresent(Interactions.self, forKey: .interactions) ?? Interactions()
        users = try c.decodeIfPresent(Side.self, forKey: .users)
        items = try c.decodeIfPresent(Side.self, forKey: .items)
        delimiter = try c.decodeIfPresent(String.self, forKey: .delimiter)
    }

    enum CodingKeys: String, CodingKey { case interactions, users, items, delimiter }

    /// Keys the decoder would silently ignore (a misspelt "seperator" must not pass unnoticed).
    static func unknownKeys(_ json: Any) -> [String] {
        func check(_ value: Any?, _ allowed: Set<String>, _ at: String, _ out: inout [String]) {
            guard let object = value as? [String: Any] else { return }
            for key in object.keys.sorted() where !allowed.contains(key) { out.append(at.isEmpty ? key : "\(at).\(key)") }
        }
        var out = [String]()
        let top = json as? [String: Any]
        check(top, ["interactions", "users", "items", "delimiter"], "", &out)
        check(top?["interactions"], ["user", "item", "timestamp", "weight"], "interactions", &out)
        for side in ["users", "items"] {
            let object = top?[side] as? [String: Any]
            check(object, ["key", "id", "id_dimension", "features", "category", "created_at", "title"], side, &out)
            for (i, f) in ((object?["features"] as? [Any]) ?? []).enumerated() {
                check(f, ["column", "type", "buckets", "separator", "pooling", "dimension"], "\(side).features[\(i)]", &out)
            }
        }
        return out
    }

    /// The columns to read from the attribute file of `side`, typed for `AttributeTable`.
    public static func columnSpecs(_ side: Side) -> [ColumnSpec] {
        var specs = [ColumnSpec]()
        func add(_ name: String, _ kind: ColumnKind) {
            if !specs.contains(where: { $0.name == name }) { specs.append(ColumnSpec(name, kind)) }
        }
        for f in side.features {
            switch f.type {
            case .categorical, .hashedCategorical: add(f.column, .categorical)
            case .multiCategorical: add(f.column, .multiCategorical(separator: Character(f.separator ?? "|")))
            case .numeric, .numericBuckets: add(f.column, .numeric)
            case .age: add(f.column, .timestamp)
            case .text: add(f.column, .text)
            }
        }
        if let c = side.category, !specs.contains(where: { $0.name == c }) {
            add(c, .multiCategorical(separator: "|"))
        }
        if let c = side.createdAt, !specs.contains(where: { $0.name == c }) { add(c, .timestamp) }
        if let c = side.title, !specs.contains(where: { $0.name == c }) { add(c, .text) }
        return specs
    }

    /// The tower features of `side`: its id (unless switched off), then one per schema entry.
    /// `now` is the time ages are measured at.
    public static func featureSpecs(_ side: Side?, now: Int64) -> [FeatureSpec] {
        guard let side else { return [FeatureSpec("id", .id)] }
        var out = side.id == false ? [] : [FeatureSpec("id", .id, dimension: side.idDimension)]
        for f in side.features {
            let kind: FeatureKind
            switch f.type {
            case .categorical: kind = .categorical(column: f.column)
            case .hashedCategorical: kind = .hashedCategorical(column: f.column, buckets: f.buckets ?? 4096)
            case .multiCategorical: kind = .multiCategorical(column: f.column, pooling: f.pooling ?? .mean)
            case .numeric: kind = .numericStandardized(column: f.column)
            case .numericBuckets: kind = .numericBuckets(column: f.column, buckets: f.buckets ?? 10)
            case .age: kind = .ageBuckets(column: f.column, now: now, buckets: f.buckets ?? 12)
            case .text: kind = .hashedText(column: f.column, buckets: f.buckets ?? 20_000)
            }
            out.append(FeatureSpec(f.column, kind, dimension: f.dimension))
        }
        return out
    }

    /// Reads and checks a schema file.
    /// - Throws: `TwoTowerError.invalidData` naming the file and what is wrong (malformed
    ///   JSON, an unknown type, a bad bucket count, separator, width or duplicate feature).
    public static func load(_ path: String) throws -> FeatureSchema {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw TwoTowerError.invalidData("cannot read schema \(path): \(error.localizedDescription)")
        }
        let schema: FeatureSchema
        do { schema = try JSONDecoder().decode(FeatureSchema.self, from: data) } catch let DecodingError.dataCorrupted(c) {
            throw TwoTowerError.invalidData("schema \(path): \(Self.where(c.codingPath))\(c.debugDescription)")
        } catch let DecodingError.keyNotFound(key, c) {
            throw TwoTowerError.invalidData("schema \(path): \(Self.where(c.codingPath))missing \"\(key.stringValue)\"")
        } catch let DecodingError.typeMismatch(_, c) {
            throw TwoTowerError.invalidData("schema \(path): \(Self.where(c.codingPath))\(c.debugDescription)")
        } catch {
            throw TwoTowerError.invalidData("schema \(path): \(error)")
        }
        if let json = try? JSONSerialization.jsonObject(with: data) {
            let unknown = unknownKeys(json)
            guard unknown.isEmpty else {
                throw TwoTowerError.invalidData("schema \(path): unknown key\(unknown.count > 1 ? "s" : "") \(unknown.joined(separator: ", "))")
            }
        }
        try schema.validate(path)
        return schema
    }

    private static func `where`(_ path: [CodingKey]) -> String {
        path.isEmpty ? "" : path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined() + ": "
    }

    /// Checks the values JSON decoding cannot: bucket counts, separators, widths, duplicates.
    public func validate(_ path: String = "schema") throws {
        if let d = delimiter, d.count != 1 { throw TwoTowerError.invalidData("\(path): delimiter must be one character, not \"\(d)\"") }
        for (name, side) in [("users", users), ("items", items)] {
            guard let side else { continue }
            var seen = Set<String>()
            if let w = side.idDimension, !(1...512).contains(w) {
                throw TwoTowerError.invalidData("\(path): \(name).id_dimension \(w) is outside 1...512")
            }
            for f in side.features {
                let at = "\(path): \(name) feature \"\(f.column)\""
                guard seen.insert(f.column).inserted else { throw TwoTowerError.invalidData("\(at) appears twice") }
                guard f.column != side.key else { throw TwoTowerError.invalidData("\(at) is the key column") }
                if let b = f.buckets, !(2...(1 << 22)).contains(b) { throw TwoTowerError.invalidData("\(at): buckets \(b) is outside 2...4194304") }
                if let b = f.buckets, b * (f.dimension ?? FeatureField.defaultDimension(vocabulary: b)) > 1 << 27 {
                    throw TwoTowerError.invalidData("\(at): \(b) buckets of width \(f.dimension ?? FeatureField.defaultDimension(vocabulary: b)) would take more than 512 MiB; use fewer buckets or a narrower dimension")
                }
                if let s = f.separator, s.count != 1 { throw TwoTowerError.invalidData("\(at): separator must be one character, not \"\(s)\"") }
                if let w = f.dimension, !(1...512).contains(w) { throw TwoTowerError.invalidData("\(at): dimension \(w) is outside 1...512") }
                if f.type == .numeric, let w = f.dimension, w != 1 {
                    throw TwoTowerError.invalidData("\(at): a standardized numeric feature is one input, not \(w)")
                }
            }
        }
    }
}

/// How a multi-valued feature's embeddings combine.
public enum Pooling: String, Codable, Sendable {
    case mean
    case sum
}
