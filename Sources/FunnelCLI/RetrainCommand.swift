import ArgumentParser
import Foundation
import Funnel

/// `funnel retrain`: incremental retraining of a bundle on new interactions (see
/// `Retraining`), registered as the next version: the old version stays loadable for a rollback.
struct Retrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Retrain a model incrementally on new interactions; update its index in place; register a new version.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "New interactions: CSV with the bundle's interaction columns (default user_id,item_id,timestamp).")
    var interactions: String
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

    func run() throws {
        guard separator.count == 1 else { throw ValidationError("--separator must be one character") }
        guard epochs >= 1, replay >= 0, replay.isFinite, tolerance >= 0 else { throw ValidationError("--epochs >= 1, --replay >= 0, --tolerance >= 0") }
        let engine = try modelOptions.engine()
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
        var options = Retraining.Options()
        options.epochs = epochs
        options.replay = replay
        options.tolerance = tolerance
        options.seed = seed
        let target = out ?? "\(modelOptions.root)/.incoming-\(UUID().uuidString)"
        let bar = ProgressBar()
        let (bundle, r) = try Retraining.retrain(engine, interactions: new, items: itemTable, users: userTable, options: options, to: target) {
            if case .batches(let p) = $0 { bar.update(p) }
        }
        bar.finish()
        for note in r.notes { print("note: \(note)") }
        if r.newUsers + r.newItems > 0 {
            print("grew the id tables by \(r.newUsers) users and \(r.newItems) items"
                  + (items == nil && users == nil ? " (attributes unknown: give --items / --users to embed them from their features)" : ""))
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
