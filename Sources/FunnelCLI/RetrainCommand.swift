import ArgumentParser
import Foundation
import Funnel
import PostgresLog

/// `funnel retrain`: incremental retraining of a bundle on new interactions (see
/// `Retraining`), registered as the next version: the old version stays loadable for a rollback.
struct Retrain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Retrain a model incrementally on new interactions; update its index in place; register a new version.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "New interactions: CSV with the bundle's interaction columns (default user_id,item_id,timestamp).")
    var interactions: String?
    @Flag(help: "Fold in what a running server logged instead: the interactions and new items of its write-ahead log (see --log).")
    var fromLog = false
    @Option(help: "The write-ahead log for --from-log (default: <registry root>/<model>.wal, or <folder>.wal).") var log: String?
    @Option(help: "For --from-log: the PostgreSQL change log replicas share (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE) instead of a file log; read only.")
    var changeLog: String?
    @Option(help: "The change log's table (default: funnel_changes_ + the model's name, as funnel serve).") var changeLogTable: String?
    @Option(help: "Attributes of new items: CSV with a key column and the columns the item features read (coded as at training).")
    var items: String?
    @Option(help: "Attributes of new users, likewise.") var users: String?
    @Option(help: "Key column of --items (default: the schema's).") var itemKey: String?
    @Option(help: "Key column of --users (default: the schema's).") var userKey: String?
    @Option(help: "Separator of multi-valued columns in --items and --users.") var separator: String = "|"
    @Option var epochs: Int = 2
    @Option(help: "Replayed earlier interactions per new one.") var replay: Double = 1
    @Option(help: "An item's index entry is updated when its embedding moved by more than this (relative L2).") var tolerance: Float = 1e-3
    @Option var seed: UInt64 = 42
    @Option(help: "Write the new bundle to this folder instead of registering it.") var out: String?
    @Option(name: .customLong("movielens"), help: .hidden) var movielens: String?
    @Option(name: .customLong("base-interactions"), help: .hidden) var baseInteractions: String?

    func run() async throws {
        guard changeLog == nil || (fromLog && log == nil) else { throw ValidationError("--change-log goes with --from-log, instead of --log") }
        guard separator.count == 1 else { throw ValidationError("--separator must be one character") }
        guard epochs >= 1, replay >= 0, replay.isFinite, tolerance >= 0 else { throw ValidationError("--epochs >= 1, --replay >= 0, --tolerance >= 0") }
        try checkDestination(out: out, registry: modelOptions.root, name: nil)
        let engine = try modelOptions.engine()
        guard fromLog != (interactions != nil) else { throw ValidationError("give --interactions FILE or --from-log (one of them)") }
        var options = Retraining.Options()
        options.epochs = epochs
        options.replay = replay
        options.tolerance = tolerance
        options.seed = seed
        let new: InteractionLog, itemTable: AttributeTable?, userTable: AttributeTable?
        if fromLog {
            let model = modelOptions.model
            let path: String, c: Retraining.LoggedChanges
            if let changeLog {
                let table = changeLogTable ?? Serve.defaultChangeLogTable(modelOptions.isFolder ? (model as NSString).lastPathComponent : model)
                path = "change log \(table)"
                c = try Retraining.changes(in: try await PostgresChangeLog.read(url: changeLog, table: table), over: engine)
            } else {
                path = log ?? (modelOptions.isFolder ? "\(model.hasSuffix("/") ? String(model.dropLast()) : model).wal" : "\(modelOptions.root)/\(model).wal")
                c = try Retraining.changes(inLog: path, over: engine)
            }
            guard c.interactions.count > 0 else { throw ValidationError("\(path) holds no interactions to retrain on (\(c.records) records)") }
            print("\(changeLog == nil ? "write-ahead log " : "")\(path): \(c.records) records through \(c.through): \(c.interactions.count) interactions, \(c.newItems) new items"
                  + (c.alreadyFolded > 0 ? ", \(c.alreadyFolded) interaction records left out (the model folded them already)" : "")
                  + (c.skipped > 0 ? ", \(c.skipped) skipped (unreadable, or on items never written)" : ""))
            (new, itemTable, userTable) = (c.interactions, c.items, nil)
            options.changeLogThrough = c.through
        } else {
            (new, itemTable, userTable) = try readFiles(engine)
        }
        try finish(engine, new: new, itemTable: itemTable, userTable: userTable, options: options)
    }

    func readFiles(_ engine: Engine) throws -> (InteractionLog, AttributeTable?, AttributeTable?) {
        let interactions = self.interactions!
        let schema = engine.bundle.manifest.schema ?? FeatureSchema()
        let delimiter = Character(schema.delimiter ?? ",")
        let columns = InteractionLog.Columns(user: schema.interactions.user, item: schema.interactions.item,
                                             timestamp: schema.interactions.timestamp, weight: schema.interactions.weight)
        let new = try InteractionLog.readCSV(interactions, columns: columns, delimiter: delimiter,
                                             users: Vocabulary(engine.catalog.userIDs), items: Vocabulary(engine.catalog.itemIDs), allowNewIDs: true)
        guard new.count > 0 else { throw ValidationError("\(interactions) holds no interactions") }
        func table(_ file: String?, key: String?, side: FeatureSchema.Side?, features: EntityFeatures) throws -> AttributeTable? {
            guard let file else { return nil }
            var specs = features.attributeColumns(separator: Character(separator))
            if let side { for s in FeatureSchema.columnSpecs(side) where !specs.contains(where: { $0.name == s.name }) { specs.append(s) } }
            return try AttributeTable.readCSV(file, key: key ?? side?.key ?? "item_id", columns: specs)
        }
        let itemTable = try table(items, key: itemKey, side: schema.items, features: engine.towers.items.features)
        let userTable = try table(users, key: userKey ?? schema.users?.key ?? "user_id", side: schema.users, features: engine.towers.users.features)
        return (new, itemTable, userTable)
    }

    func finish(_ engine: Engine, new: InteractionLog, itemTable: AttributeTable?, userTable: AttributeTable?, options: Retraining.Options) throws {
        let target = out ?? "\(modelOptions.root)/.incoming-\(getpid())-\(UUID().uuidString)"
        let bar = ProgressBar()
        let (bundle, r) = try Retraining.retrain(engine, interactions: new, items: itemTable, users: userTable, options: options, to: target) {
            if case .batches(let p) = $0 { bar.update(p) }
        }
        bar.finish()
        for note in r.notes { print("note: \(note)") }
        if r.newUsers + r.newItems > 0 {
            print("grew the id tables by \(r.newUsers) users and \(r.newItems) items"
                  + (itemTable == nil && userTable == nil ? " (attributes unknown: give --items / --users to embed them from their features)" : ""))
        }
        print("retrained on \(r.fresh) new + \(r.replayed) replayed interactions, \(epochs) epochs, in \(fmt(r.trainSeconds, 1)) s; "
              + "index updated in place in \(fmt(r.indexSeconds, 2)) s: \(r.updated) of \(engine.itemCount + r.newItems) items moved, \(r.inserted) inserted")
        if out != nil {
            print("bundle: \(bundle.folder)/ (the original is unchanged)")
        } else if let name = engine.name {
            let v = try ModelRegistry(root: modelOptions.root).register(name, from: bundle.folder, dataFingerprint: bundle.manifest.dataFingerprint,
                                                                         metrics: bundle.manifest.metrics)
            print("registered \(name) v\(v.version) (staging); the previous versions stay loadable")
        } else {
            throw ValidationError("a bundle folder was given as --model: give --out for the new bundle")
        }
    }
}
