import Datasets
import Foundation
import LinearAlgebra
import Serving
import TwoTower

/// One attribute value of a live item write, as JSON gives it.
public enum AttributeValue: Codable, Sendable, Equatable {
    case string(String)
    case number(Double)
    case list([String])
    case null

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let x = try? c.decode(Double.self) { self = .number(x) }
        else if let l = try? c.decode([String].self) { self = .list(l) }
        else { throw EngineError.invalidRequest("an attribute value must be a string, a number, a list of strings or null") }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .string(let s): try c.encode(s)
        case .number(let x): try c.encode(x)
        case .list(let l): try c.encode(l)
        case .null: try c.encodeNil()
        }
    }

    /// The value as a CSV field of a column (lists joined by the column's separator).
    func field(separator: Character) -> String {
        switch self {
        case .string(let s): return s
        case .number(let x): return x.rounded() == x && abs(x) < 1e15 ? String(Int64(x)) : String(x)
        case .list(let l): return l.joined(separator: String(separator))
        case .null: return ""
        }
    }
}

/// An item as the engine serves it now (`Engine.itemRecord`).
public struct ItemRecord: Codable, Sendable, Equatable {
    public var item: String
    public var title: String?
    public var categories: [String]
    /// Unix seconds.
    public var createdAt: Int64?
    public var numeric: [String: Double]
    /// Written while serving (not in the bundle the model was trained on).
    public var live: Bool
    /// The attributes the last live write gave, as given.
    public var attributes: [String: AttributeValue]?

    enum CodingKeys: String, CodingKey {
        case item, title, categories, numeric, live, attributes
        case createdAt = "created_at"
    }
}

/// A user as the engine serves them now (`Engine.userRecord`).
public struct UserRecord: Codable, Sendable, Equatable {
    public var user: String
    /// The model was trained on this user (else: known from interactions written while serving).
    public var trained: Bool
    public var interactions: Int
    /// The newest items of their history, oldest first.
    public var recent: [String]
}

/// One interaction written while serving.
public struct LiveInteraction: Codable, Sendable, Equatable {
    public var user: String
    public var item: String
    /// Unix seconds; nil: now.
    public var timestamp: Int64?
    public var weight: Double?

    public init(user: String, item: String, timestamp: Int64? = nil, weight: Double? = nil) {
        self.user = user
        self.item = item
        self.timestamp = timestamp
        self.weight = weight
    }
}

/// One live write, as the write-ahead log holds it (JSON: `{"op": "upsert", "item", "attributes"}`,
/// `{"op": "delete", "item"}`, `{"op": "interactions", "interactions": [...]}`).
public enum LiveChange: Codable, Sendable, Equatable {
    case upsert(item: String, attributes: [String: AttributeValue])
    case delete(item: String)
    case interactions([LiveInteraction])

    enum CodingKeys: String, CodingKey { case op, item, attributes, interactions }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        switch try c.decode(String.self, forKey: .op) {
        case "upsert": self = .upsert(item: try c.decode(String.self, forKey: .item), attributes: try c.decode([String: AttributeValue].self, forKey: .attributes))
        case "delete": self = .delete(item: try c.decode(String.self, forKey: .item))
        case "interactions": self = .interactions(try c.decode([LiveInteraction].self, forKey: .interactions))
        case let op: throw EngineError.invalidData("unknown change '\(op)'")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .upsert(let item, let attributes):
            try c.encode("upsert", forKey: .op)
            try c.encode(item, forKey: .item)
            try c.encode(attributes, forKey: .attributes)
        case .delete(let item):
            try c.encode("delete", forKey: .op)
            try c.encode(item, forKey: .item)
        case .interactions(let list):
            try c.encode("interactions", forKey: .op)
            try c.encode(list, forKey: .interactions)
        }
    }
}

/// What live writes added to a loaded bundle (under `Engine.state`).
struct LiveItems {
    /// The BM25 document of an item whose text changed while serving.
    var document: [Int: Int] = [:]
    /// The item tower's features grown by the items added while serving.
    var features: EntityFeatures?
    /// The attributes each live write gave.
    var given: [Int: [String: AttributeValue]] = [:]
}

extension Engine {
    /// The columns an item write may give: the item tower's inputs and the schema's item
    /// columns (title, category, creation time, numeric and text attributes).
    public var itemColumns: [ColumnSpec] {
        var specs = towers.items.features.attributeColumns()
        if let side = bundle.manifest.schema?.items {
            for s in FeatureSchema.columnSpecs(side) where !specs.contains(where: { $0.name == s.name }) { specs.append(s) }
        }
        return specs
    }

    /// Adds an item while serving, or changes one: embedded from its attributes by the item
    /// tower (its id hidden: the model has never seen it), put in the index, the exact
    /// fallback, the ranking features and text search; visible to the next request.
    ///
    /// An item the model was trained on keeps its trained embedding (the interactions that
    /// shaped it did not change) and takes the new attributes (title, categories, creation
    /// time, numeric attributes, text). An item written before gets a new embedding.
    /// A deleted item written again comes back.
    /// - Parameter attributes: by column name (see `itemColumns`); a missing column is a missing value.
    /// - Returns: the item's row.
    /// - Throws: `EngineError.invalidRequest` naming an unknown column or a value its column
    ///   cannot hold; nothing changes then.
    @discardableResult
    public func upsert(item id: String, attributes: [String: AttributeValue]) throws -> Int {
        writer.lock()
        defer { writer.unlock() }
        let (one, row, title, text, attributes) = try parse(item: id, attributes: attributes)
        let (existing, trained) = state.read { (itemRows[id], itemRows[id].map { $0 < towers.items.features.count } ?? false) }
        // The embedding: trained items keep theirs; others come from their attributes.
        var vector: [Float]
        var grown: EntityFeatures? = nil
        if let existing, trained {
            vector = pipeline.reading { v, _ in v.row(existing) }
        } else {
            // The live features, taken out so that appending the row changes them in place
            // (writes are serialized by `writer`; no reader looks at them).
            var features = state.write { () -> EntityFeatures? in defer { live.features = nil }; return live.features } ?? towers.items.features
            let row = features.count
            features.append(rowsOf: one)
            do { vector = try towers.items.embed(features, row: row, hideID: true) } catch {
                features = state.write { live.features = features; return features }
                throw error
            }
            grown = features
        }
        guard vector.allSatisfy(\.isFinite) else { throw EngineError.invalidRequest("item '\(id)': its attributes give a non-finite embedding") }

        // Apply: the catalog first, so that a row the pipeline returns always has a name.
        return try state.write {
            let item = existing ?? liveCatalog.itemIDs.count
            if existing == nil {
                liveCatalog.itemIDs.append(id)
                if liveCatalog.titles != nil { liveCatalog.titles!.append(title) }
                liveCatalog.searchText.append(text)
                itemRows[id] = item
            } else {
                if liveCatalog.titles != nil { liveCatalog.titles![item] = title }
                liveCatalog.searchText[item] = text
            }
            do { try pipeline.setItem(item, vector: vector, attributes: row) } catch {
                if existing == nil {  // undo the catalog rows
                    liveCatalog.itemIDs.removeLast()
                    if liveCatalog.titles != nil { liveCatalog.titles!.removeLast() }
                    liveCatalog.searchText.removeLast()
                    itemRows[id] = nil
                }
                throw EngineError.invalidRequest("item '\(id)': \(error)")
            }
            let document = lexical.add(text)
            lexicalItem.append(item)
            live.document[item] = document
            if let grown { live.features = grown }
            live.given[item] = attributes
            itemWrites.add(1, ordering: .releasing)
            return item
        }
    }

    /// An item write's attributes as CSV fields in `itemColumns` order (what a CSV of new
    /// items would hold), after the adapter's derived columns.
    func fields(item id: String, attributes: [String: AttributeValue]) throws -> ([String], [String: AttributeValue]) {
        let specs = itemColumns
        var attributes = attributes
        // The MovieLens adapter derives `year` from `release_date`; a write does the same.
        if bundle.manifest.schema?.items == DataSource.movieLensSchema.items, attributes["year"] == nil, case .string(let d)? = attributes["release_date"],
           let t = Timestamp.parse(d) {
            attributes["year"] = .number(Double(Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: Date(timeIntervalSince1970: Double(t))).year!))
        }
        let fields = specs.map { spec -> String in
            var separator: Character = "|"
            if case .multiCategorical(let s) = spec.kind { separator = s }
            return attributes[spec.name]?.field(separator: separator) ?? ""
        }
        return (fields, attributes)
    }

    /// Reads an item write's attributes with the model's columns (nothing changes).
    func parse(item id: String, attributes: [String: AttributeValue]) throws
        -> (table: AttributeTable, row: ItemAttributeRow, title: String, text: String, attributes: [String: AttributeValue]) {
        guard !id.isEmpty, id.utf8.count <= 1024 else { throw EngineError.invalidRequest("an item id must have 1 to 1024 bytes") }
        let specs = itemColumns
        let schema = bundle.manifest.schema?.items
        if let unknown = attributes.keys.sorted().first(where: { k in !specs.contains { $0.name == k } }) {
            throw EngineError.invalidRequest("unknown item attribute '\(unknown)'; this model's item columns are \(specs.map(\.name).joined(separator: ", "))")
        }
        let (fields, attributes) = try self.fields(item: id, attributes: attributes)
        var builder = AttributeTable.Builder(specs: specs)
        try builder.append(fields: fields) { EngineError.invalidRequest("item '\(id)': \($0)") }
        let one = builder.table(keys: Vocabulary([id]))

        // What ranking and re-ranking read.
        var row = ItemAttributeRow()
        if let c = schema?.category { row.categories = one.categoricalCodes(c).map { v, codes in codes.filter { $0 >= 0 }.map { v.keys[Int($0)] } } ?? one.multiValues(c, row: 0) }
        if let c = schema?.createdAt, case .timestamp(let t)? = one.columns[c], t[0] != Timestamp.missing { row.createdAt = t[0] }
        let numericNames = pipeline.reading { $1.items.numericNames }
        for name in numericNames { if case .numeric(let v)? = one.columns[name], !v[0].isNaN { row.numeric[name] = v[0] } }
        var title = ""
        if let t = schema?.title {
            switch one.columns[t] {
            case .text(let v)?: title = v[0]
            case .categorical(let v, let codes)?: title = codes[0] >= 0 ? v.keys[Int(codes[0])] : ""
            default: break
            }
        }
        var words = [title] + row.categories
        for column in one.columnOrder where column != schema?.title && column != schema?.category {
            if case .text(let v)? = one.columns[column], !v[0].isEmpty { words.append(v[0]) }
        }
        let text = words.filter { !$0.isEmpty }.joined(separator: " ")

        return (one, row, title, text, attributes)
    }

    /// Checks a write as `apply` would take it, without changing anything (so that a write
    /// that would be refused is never logged).
    public func check(_ change: LiveChange) throws {
        switch change {
        case .upsert(let id, let attributes): _ = try parse(item: id, attributes: attributes)
        case .delete(let id): _ = try state.read { try row(item: id) }
        case .interactions(let list):
            guard !list.isEmpty else { throw EngineError.invalidRequest("no interactions") }
            try state.read {
                for x in list {
                    guard !x.user.isEmpty, x.user.utf8.count <= 1024 else { throw EngineError.invalidRequest("a user id must have 1 to 1024 bytes") }
                    if let w = x.weight, !w.isFinite { throw EngineError.invalidRequest("interaction weight \(w) is not finite") }
                    _ = try row(item: x.item)
                }
            }
        }
    }

    /// Applies a live write (see `upsert`, `delete`, `record`).
    public func apply(_ change: LiveChange) throws {
        switch change {
        case .upsert(let id, let attributes): try upsert(item: id, attributes: attributes)
        case .delete(let id): try delete(item: id)
        case .interactions(let list): try record(list)
        }
    }

    /// Deletes an item while serving: no answer returns it again (until it is written again).
    /// - Throws: `EngineError.unknown` for an unknown (or already deleted) item.
    public func delete(item id: String) throws {
        writer.lock()
        defer { writer.unlock() }
        try state.write {
            let i = try row(item: id)
            try pipeline.removeItem(Int(i))
            itemWrites.add(1, ordering: .releasing)
        }
    }

    /// An item as served now.
    /// - Throws: `EngineError.unknown` for an unknown or deleted item.
    public func itemRecord(_ id: String) throws -> ItemRecord {
        let (i, title, given) = try state.read { () throws -> (Int, String?, [String: AttributeValue]?) in
            let i = Int(try row(item: id))
            return (i, liveCatalog.titles?[i], live.given[i])
        }
        return pipeline.reading { _, f in
            let a = f.items
            var numeric = [String: Double]()
            for (n, v) in zip(a.numericNames, a.numericValues) where !v[i].isNaN { numeric[n] = Double(v[i]) }
            return ItemRecord(item: id, title: title, categories: a.categories(of: i).map { a.categoryNames[Int($0)] },
                              createdAt: a.created(i), numeric: numeric, live: i >= towers.items.features.count || given != nil,
                              attributes: given)
        }
    }

    /// A user as served now: whether the model was trained on them, and their history (the
    /// bundle's log and what they did while serving), the newest `limit` items.
    /// - Throws: `EngineError.unknown` for a user with no history and not in the model.
    public func userRecord(_ user: String, limit: Int = 100) throws -> UserRecord {
        guard let u = state.read({ userRows[user] }) else { throw EngineError.unknown(kind: "user", id: user) }
        let history = pipeline.reading { Array($1.history(u)) }
        let ids = state.read { history.suffix(max(0, limit)).map { liveCatalog.itemIDs[Int($0)] } }
        return UserRecord(user: user, trained: u < userVectors.rows, interactions: history.count, recent: ids)
    }

    /// Records interactions while serving: each user's history (what they saw is left out of
    /// their next answer) and the ranking statistics move at once; a user the model has
    /// never seen is served from the items they touched.
    /// - Throws: `EngineError` for an unknown or deleted item, an empty user id or a
    ///   non-finite weight; nothing is recorded then.
    public func record(_ interactions: [LiveInteraction]) throws {
        writer.lock()
        defer { writer.unlock() }
        try state.write {
            var events = [(user: Int, item: Int, weight: Float?)]()
            var newUsers = [String]()
            for x in interactions {
                guard !x.user.isEmpty, x.user.utf8.count <= 1024 else { throw EngineError.invalidRequest("a user id must have 1 to 1024 bytes") }
                if let w = x.weight, !w.isFinite { throw EngineError.invalidRequest("interaction weight \(w) is not finite") }
                let i = Int(try row(item: x.item))
                var u = userRows[x.user]
                if u == nil, let j = newUsers.firstIndex(of: x.user) { u = -1 - j }
                if u == nil {
                    newUsers.append(x.user)
                    u = -newUsers.count
                }
                events.append((u!, i, x.weight.map { Float($0) }))
            }
            // Checked: now write. New users get rows after the known ones.
            var rows = [Int]()
            for user in newUsers {
                let u = pipeline.addUser()
                userRows[user] = u
                liveCatalog.userIDs.append(user)
                rows.append(u)
            }
            for n in events.indices where events[n].user < 0 { events[n].user = rows[-1 - events[n].user] }
            try pipeline.record(events)
            for x in interactions { userWrites[x.user, default: 0] += 1 }
        }
    }
}
