import Datasets
import Foundation
import HNSW
import LinearAlgebra
import Persistence
import Serving
import TwoTower

/// Incremental retraining of a bundle on new interactions: warm-starts the saved towers,
/// trains a few epochs on the new interactions plus a replay sample of the bundle's own
/// log, grows the id tables (and the vocabularies) for new users and items, re-embeds the
/// items and updates the index in place (only the items whose embeddings moved), merges
/// the new interactions into the catalog's log (histories and ranking statistics), and
/// writes the next bundle. The ranker is kept as it was.
public enum Retraining {
    public struct Options: Sendable {
        public var epochs = 2
        /// Replayed earlier interactions per new one.
        public var replay = 1.0
        /// An item's index entry is updated when its embedding moved by more than this (relative L2).
        public var tolerance: Float = 1e-3
        public var seed: UInt64 = 42
        /// The last write-ahead log record the new interactions and items fold in (recorded in
        /// the bundle, so that a server replaying the log does not apply those writes twice).
        public var changeLogThrough: UInt64?
        public init() {}
    }

    public struct Result: Sendable {
        public var newUsers = 0, newItems = 0, fresh = 0, replayed = 0
        public var trainSeconds = 0.0, indexSeconds = 0.0
        public var updated = 0, inserted = 0
        /// What the caller should know (fields of new entities that could not be coded).
        public var notes: [String] = []
    }

    /// - Parameters:
    ///   - interactions: the new interactions, read with the bundle's schema columns.
    ///   - items, users: attribute tables of new items and users (read with
    ///     `attributeColumns`), so they are embedded from their features and shown with their titles.
    ///   - out: the folder of the new bundle (must not exist).
    public static func retrain(_ engine: Engine, interactions new: InteractionLog, items: AttributeTable? = nil,
                               users: AttributeTable? = nil, options: Options = Options(), to out: String,
                               progress: @escaping (TrainingEvent) -> Void = { _ in }) throws -> (ModelBundle, Result) {
        let towers = engine.towers, catalog = engine.catalog
        var result = Result()
        guard new.count > 0 else { throw EngineError.invalidData("no new interactions") }
        guard new.users.keys.starts(with: catalog.userIDs), new.items.keys.starts(with: catalog.itemIDs) else {
            throw EngineError.invalidData("the new interactions must be read with the bundle's user and item vocabularies")
        }
        result.newUsers = new.users.count - catalog.userIDs.count
        result.newItems = new.items.count - catalog.itemIDs.count
        result.fresh = new.count
        let t0 = Clock.now()
        let before = towers.embedAll(towers.items)
        let merged = try catalog.merging(new, items: items, schema: engine.bundle.manifest.schema)
        // The settings the bundle was trained (or tuned) with; the towers file keeps only the shape.
        var p = towers.parameters.applying(summary: engine.bundle.manifest.parameters)
        p.epochs = options.epochs
        p.patience = 0
        p.seed = options.seed
        func grown(_ old: EntityFeatures, table: AttributeTable?, ids: Vocabulary, added: Int, side: String) -> EntityFeatures {
            guard let table, added > 0 else { return old.appending(added) }
            let (features, uncoded) = old.appending(table: table.aligned(to: ids).table, from: old.count)
            if !uncoded.isEmpty { result.notes.append("\(side): not coded (column missing or saved without a vocabulary): \(Set(uncoded).sorted().joined(separator: ", "))") }
            return features
        }
        let userFeatures = grown(towers.users.features, table: users, ids: new.users, added: result.newUsers, side: "users")
        let itemFeatures = grown(towers.items.features, table: items, ids: new.items, added: result.newItems, side: "items")
        let warm = result.newUsers + result.newItems > 0
            ? try towers.growing(users: userFeatures, items: itemFeatures, parameters: p)
            : towers.continuing(with: p)
        var rng = SeededGenerator(seed: options.seed)
        let fresh = (0..<new.count).map { (user: new.userIndex[$0], item: new.itemIndex[$0]) }
        let base = catalog.log
        var earlier = (0..<base.count).map { (user: base.userIndex[$0], item: base.itemIndex[$0]) }
        earlier.shuffle(using: &rng)
        let replayed = Array(earlier.prefix(Int(Double(fresh.count) * options.replay)))
        result.replayed = replayed.count
        warm.fit(fresh + replayed, rng: &rng, progress: { progress(.batches($0)) })
        result.trainSeconds = Clock.now() - t0

        let t1 = Clock.now()
        let after = warm.embedAll(warm.items)
        let index = try HNSWIndex.load(from: engine.bundle.path(ModelBundle.File.index))
        (result.updated, result.inserted) = try index.refresh(after, previous: before, tolerance: options.tolerance)
        result.indexSeconds = Clock.now() - t1

        var manifest = engine.bundle.manifest
        manifest.created = Int64(Date().timeIntervalSince1970)
        manifest.dataFingerprint = Fingerprint.of(merged.log)
        manifest.files = [:]
        manifest.parameters["retrained_from"] = engine.version ?? engine.bundle.folder
        if let through = options.changeLogThrough { manifest.parameters[ModelBundle.changeLogThroughKey] = String(through) }
        var files = [ModelBundle.File.towers, ModelBundle.File.index, ModelBundle.File.catalog]
        for f in [ModelBundle.File.ranker, ModelBundle.File.metrics] where engine.bundle.has(f) { files.append(f) }
        let bundle = try ModelBundle.write(to: out, manifest: manifest, files: files) { file, path in
            switch file {
            case ModelBundle.File.towers: try warm.save(to: path, userIDs: merged.userIDs, itemIDs: merged.itemIDs)
            case ModelBundle.File.index: try index.save(to: path)
            case ModelBundle.File.catalog: try merged.save(to: path)
            default: try FileManager.default.copyItem(atPath: engine.bundle.path(file), toPath: path)
            }
        }
        return (bundle, result)
    }
}

extension ItemCatalog {
    /// This catalog with `new` interactions appended (read with this catalog's
    /// vocabularies, grown by new users and items) and the new items' attributes from
    /// `items` (titles, categories by name, creation times, numeric attributes, search text).
    public func merging(_ new: InteractionLog, items table: AttributeTable?, schema: FeatureSchema?) throws -> ItemCatalog {
        let oldItems = itemIDs.count
        let newItems = new.items.keys.dropFirst(oldItems)
        var log = InteractionLog(users: new.users, items: new.items, hasWeights: self.log.weights != nil)
        for n in 0..<self.log.count {
            log.append(user: self.log.userIndex[n], item: self.log.itemIndex[n], timestamp: self.log.timestamps[n], weight: self.log.weights?[n])
        }
        for n in 0..<new.count {
            log.append(user: new.userIndex[n], item: new.itemIndex[n], timestamp: new.timestamps[n],
                       weight: self.log.weights == nil ? nil : (new.weights?[n] ?? .nan))
        }
        let side = schema?.items
        let aligned = table.map { $0.aligned(to: new.items).table }
        var titles = self.titles
        var text = searchText
        var names = attributes.categoryNames
        var codeOf = Dictionary(names.enumerated().map { ($1, Int32($0)) }, uniquingKeysWith: { a, _ in a })
        var lists = (0..<oldItems).map { Array(attributes.categories(of: $0)) }
        var created = attributes.createdAt
        var numeric = zip(attributes.numericNames, attributes.numericValues).map { (name: $0, values: $1) }
        for (offset, _) in newItems.enumerated() {
            let i = oldItems + offset
            var title = ""
            if let t = side?.title, let aligned {
                switch aligned.columns[t] {
                case .text(let v)?: title = v[i]
                case .categorical(let v, let codes)?: title = codes[i] >= 0 ? v[codes[i]] : ""
                default: break
                }
            }
            if titles != nil { titles!.append(title) }
            var cats = [String]()
            if let c = side?.category, let aligned {
                switch aligned.columns[c] {
                case .categorical(let v, let codes)?: if codes[i] >= 0 { cats = [v[codes[i]]] }
                case .multiCategorical?: cats = aligned.multiValues(c, row: i)
                default: break
                }
            }
            lists.append(cats.map { name in
                if let code = codeOf[name] { return code }
                names.append(name)
                codeOf[name] = Int32(names.count - 1)
                return Int32(names.count - 1)
            })
            if created != nil {
                var t = Timestamp.missing
                if let c = side?.createdAt, case .timestamp(let v)? = aligned?.columns[c] { t = v[i] }
                created!.append(t)
            }
            for f in numeric.indices {
                var x = Float.nan
                if case .numeric(let v)? = aligned?.columns[numeric[f].name] { x = v[i] }
                numeric[f].values.append(x)
            }
            var words = [title] + cats
            if let aligned {
                for column in aligned.columnOrder where column != side?.title && column != side?.category {
                    if case .text(let v)? = aligned.columns[column] { words.append(v[i]) }
                }
            }
            text.append(words.filter { !$0.isEmpty }.joined(separator: " "))
        }
        let grown = try ItemAttributes(count: new.items.count, categories: lists, categoryNames: names, createdAt: created, numeric: numeric)
        return try ItemCatalog(userIDs: new.users.keys, itemIDs: new.items.keys, titles: titles, attributes: grown,
                               searchText: text, log: log)
    }
}

extension Retraining {
    /// What a server's write-ahead log adds to a bundle, as `retrain` takes it: the logged
    /// interactions (new users and items grow the vocabularies) and the attributes of the
    /// items written while serving (the last write of each), read with the bundle's columns.
    /// Deletes are not folded: the server applies them again over the new version.
    /// Interactions the bundle already folded (sequences up to its `changeLogThrough`, when it
    /// was itself retrained from the log) are skipped and counted in `alreadyFolded`: they are
    /// in its interaction log, and a second retrain must not count them twice.
    public struct LoggedChanges: Sendable {
        public var interactions: InteractionLog
        public var items: AttributeTable?
        /// The last record read.
        public var through: UInt64
        public var records = 0, newItems = 0, skipped = 0
        /// Interaction records at or before the bundle's `changeLogThrough`, left out.
        public var alreadyFolded = 0
    }

    /// - Parameter engine: the bundle the changes apply to, loaded without them.
    public static func changes(inLog path: String, over engine: Engine) throws -> LoggedChanges {
        try changes(in: try WriteAheadLog.read(path), over: engine)
    }

    /// As `changes(inLog:over:)`, from records read from any change log (the PostgreSQL one
    /// replicas share, for example).
    public static func changes(in records: [ChangeRecord], over engine: Engine) throws -> LoggedChanges {
        let decoder = JSONDecoder()
        var users = Vocabulary(engine.catalog.userIDs), items = Vocabulary(engine.catalog.itemIDs)
        var given = [String: [String: AttributeValue]]()
        var events = [(String, String, Int64, Double?)]()
        let folded = engine.bundle.changeLogThrough
        var out = LoggedChanges(interactions: InteractionLog(), items: nil, through: max(records.last?.sequence ?? 0, folded), records: records.count)
        let now = Int64(Date().timeIntervalSince1970)
        for r in records {
            guard let change = try? decoder.decode(LiveChange.self, from: Data(r.payload)) else { out.skipped += 1; continue }
            if case .interactions = change, r.sequence <= folded { out.alreadyFolded += 1; continue }
            switch change {
            case .upsert(let id, let attributes):
                given[id] = attributes  // the last write of an item wins
                if items.lookup(id) == nil {  // new items in the order first written
                    items.intern(id)
                    out.newItems += 1
                }
            case .delete: break
            case .interactions(let list): for x in list { events.append((x.user, x.item, x.timestamp ?? now, x.weight)) }
            }
        }
        let weighted = engine.catalog.log.weights != nil
        var log = InteractionLog(users: users, items: items, hasWeights: weighted)
        for (u, i, t, w) in events {
            guard items.lookup(i) != nil else { out.skipped += 1; continue }
            let ui = users.intern(u)
            log.users = users
            log.append(user: ui, item: items.lookup(i)!, timestamp: t, weight: weighted ? Float(w ?? .nan) : nil)
        }
        log.users = users
        out.interactions = log
        if out.newItems > 0 {
            let specs = engine.itemColumns
            var builder = AttributeTable.Builder(specs: specs)
            var keys = Vocabulary()
            for id in items.keys.dropFirst(engine.catalog.itemIDs.count) {
                let (fields, _) = try engine.fields(item: id, attributes: given[id] ?? [:])
                try builder.append(fields: fields) { EngineError.invalidData("logged item '\(id)': \($0)") }
                keys.intern(id)
            }
            out.items = builder.table(keys: keys)
        }
        return out
    }
}
