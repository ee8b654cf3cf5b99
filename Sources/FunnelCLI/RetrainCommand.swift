import ArgumentParser
import Foundation
import Funnel

/// `funnel retrain`: incremental retraining of a trained MovieLens model on new
/// interactions. Warm-starts from the saved towers, trains a few epochs on the new
/// interactions plus a replay sample of the model's earlier data, re-embeds the items and
/// updates the HNSW index in place (only the items whose embeddings moved), and writes the
/// result as the next registry version: the old version stays loadable for a rollback.
struct Retrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Retrain a model incrementally on new interactions; update its index in place; register a new version.")

    @Option(help: "A model folder, or a model name in the registry.") var model: String = "movielens"
    @Option(help: "Registry root.") var registry: String = "indexes"
    @Option(help: "The ml-100k folder the model was trained on (its users, items and earlier interactions).") var movielens: String?
    @Option(help: "Instead of --movielens: the interaction CSV the model was trained on (user_id,item_id,timestamp), replayed.")
    var baseInteractions: String?
    @Option(help: "Attributes of new items: CSV with a key column and the columns the item features read (coded as at training).")
    var items: String?
    @Option(help: "Attributes of new users, likewise.") var users: String?
    @Option(help: "Key column of --items.") var itemKey: String = "item_id"
    @Option(help: "Key column of --users.") var userKey: String = "user_id"
    @Option(help: "Separator of multi-valued columns in --items and --users.") var separator: String = "|"
    @Option(help: "New interactions: CSV with a header user_id,item_id,timestamp (ids as in the data; timestamps Unix seconds or dates).")
    var interactions: String
    @Option var epochs: Int = 2
    @Option(help: "Replayed earlier interactions per new one.") var replay: Double = 1
    @Option(help: "An item's index entry is updated when its embedding moved by more than this (relative L2).") var tolerance: Float = 1e-3
    @Option var seed: UInt64 = 42

    func run() throws {
        try FunnelCLI.run {
            let folder = try resolveModel(model, root: registry)
            let (towers, userIDs, itemIDs) = try TwoTowerModel.load(from: "\(folder)/towers.fnl")
            let base: InteractionLog
            switch (movielens, baseInteractions) {
            case (let dir?, nil): base = try MovieLens.load(directory: dir).interactions
            case (nil, let file?): base = try InteractionLog.readCSV(file, users: Vocabulary(userIDs), items: Vocabulary(itemIDs), allowNewIDs: false)
            default: throw ValidationError("give either --movielens DIR or --base-interactions FILE.csv (the data the model was trained on)")
            }
            guard base.users.keys.starts(with: userIDs) || userIDs.starts(with: base.users.keys),
                  base.items.keys.starts(with: itemIDs) || itemIDs.starts(with: base.items.keys) else {
                throw ValidationError("\(folder): the model's users or items differ from the data's")
            }
            guard separator.count == 1 else { throw ValidationError("--separator must be one character") }
            // New users and items get new rows in the id tables (their attributes unknown).
            let new = try InteractionLog.readCSV(interactions, users: Vocabulary(userIDs), items: Vocabulary(itemIDs), allowNewIDs: true)
            guard new.count > 0 else { throw ValidationError("\(interactions) holds no interactions") }
            let newUsers = new.users.count - userIDs.count, newItems = new.items.count - itemIDs.count
            let t0 = now()
            let before = towers.embedAll(towers.items)
            var p = towers.parameters
            p.epochs = epochs
            p.patience = 0
            p.seed = seed
            // New entities' features: from their attribute files when given (coded with the
            // vocabularies, edges and standardization saved with the model), else ids only.
            func grownFeatures(_ old: EntityFeatures, file: String?, key: String, ids: Vocabulary, added: Int, side: String) throws -> EntityFeatures {
                guard let file, added > 0 else { return old.appending(added) }
                let table = try AttributeTable.readCSV(file, key: key, columns: old.attributeColumns(separator: Character(separator)))
                let (aligned, missing) = table.aligned(to: ids)
                let (features, uncoded) = old.appending(table: aligned, from: old.count)
                let described = added - max(0, missing - old.count)
                print("\(side): \(added) new, \(described) described in \(file)"
                      + (uncoded.isEmpty ? "" : "; not coded (column missing or model saved without its vocabulary): \(Set(uncoded).sorted().joined(separator: ", "))"))
                return features
            }
            let userFeatures = try grownFeatures(towers.users.features, file: users, key: userKey, ids: new.users, added: newUsers, side: "users")
            let itemFeatures = try grownFeatures(towers.items.features, file: items, key: itemKey, ids: new.items, added: newItems, side: "items")
            let warm = newUsers + newItems > 0
                ? try towers.growing(users: userFeatures, items: itemFeatures, parameters: p)
                : towers.continuing(with: p)
            var rng = SeededGenerator(seed: seed)
            let fresh = (0..<new.count).map { (user: new.userIndex[$0], item: new.itemIndex[$0]) }
            var earlier = (0..<base.count).map { (user: base.userIndex[$0], item: base.itemIndex[$0]) }
            earlier.shuffle(using: &rng)
            let replayed = Array(earlier.prefix(Int(Double(fresh.count) * replay)))
            warm.fit(fresh + replayed, rng: &rng)
            let trainSeconds = now() - t0
            // Re-embed, then update the index in place.
            let t1 = now()
            let after = warm.embedAll(warm.items)
            let index = try HNSWIndex.load(from: "\(folder)/items.hnsw")
            let (updated, inserted) = try index.refresh(after, previous: before, tolerance: tolerance)
            let indexSeconds = now() - t1
            // The new version: towers, the updated index, histories with the new items, the ranker as it was.
            let out = "\(registry)/.incoming-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try warm.save(to: "\(out)/towers.fnl", userIDs: new.users.keys, itemIDs: new.items.keys)
            try index.save(to: "\(out)/items.hnsw")
            var seen = [Set<Int32>](repeating: [], count: new.users.count)
            if let h = try? UserHistory.load(from: "\(folder)/history.fnl", users: userIDs.count, items: itemIDs.count) {
                for u in 0..<userIDs.count { seen[u] = Set(h.items(of: u)) }
            }
            for pair in fresh { seen[Int(pair.user)].insert(pair.item) }
            try UserHistory(seen).save(to: "\(out)/history.fnl")
            for file in ["ranker.gbdt", "metrics.json"] where FileManager.default.fileExists(atPath: "\(folder)/\(file)") {
                try FileManager.default.copyItem(atPath: "\(folder)/\(file)", toPath: "\(out)/\(file)")
            }
            if newUsers + newItems > 0 {
                print("grew the id tables by \(newUsers) users and \(newItems) items"
                      + (items == nil && users == nil ? " (attributes unknown: give --items / --users to embed them from their features)" : ""))
            }
            print("retrained on \(fresh.count) new + \(replayed.count) replayed interactions, \(epochs) epochs, in \(fmt(trainSeconds, 1)) s; "
                  + "index updated in place in \(fmt(indexSeconds, 2)) s: \(updated) of \(after.rows) items moved, \(inserted) inserted")
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: model, isDirectory: &isDirectory), isDirectory.boolValue {
                print("model folder: \(out)/ (the original \(model)/ is unchanged)")
            } else {
                let v = try ModelRegistry(root: registry).register(model, from: out, dataFingerprint: fingerprint(new))
                print("registered \(model) v\(v.version) (staging); the previous versions stay loadable")
            }
        }
    }
}
