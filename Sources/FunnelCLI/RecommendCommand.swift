import ArgumentParser
import Foundation
import Funnel

/// A trained model folder, loaded for queries.
struct ModelFolder {
    let model: TwoTowerModel
    let userIDs: [String]
    let itemIDs: [String]
    let index: HNSWIndex
    let history: UserHistory?

    init(_ dir: String) throws {
        (model, userIDs, itemIDs) = try TwoTowerModel.load(from: "\(dir)/towers.fnl")
        index = try HNSWIndex.load(from: "\(dir)/items.hnsw", mmap: true)
        history = try? UserHistory.load(from: "\(dir)/history.fnl", users: userIDs.count, items: itemIDs.count)
    }

    func printResults(_ results: [Neighbor], json: String?, header: String) throws {
        print(header)
        printAligned(header: ["rank", "item", "score"], rows: results.enumerated().map {
            [String($0.offset + 1), itemIDs[$0.element.id], fmt(Double(1 - $0.element.distance), 4)]
        })
        if let json {
            let arr = results.map { ["item": itemIDs[$0.id], "score": Double(1 - $0.distance)] as [String: Any] }
            let data = try JSONSerialization.data(withJSONObject: arr, options: [.prettyPrinted])
            try AtomicFile.write(Array(data) + [10], to: json)
        }
    }
}

struct Recommend: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Top-k items for a user. With --movielens, the whole funnel (HNSW -> GBDT -> MMR, freshness, rules) with explanations; else towers and HNSW only.")
    @Option(help: "A model folder, or a model name in the registry (production version; canary users get the canary).") var model: String
    @Option(help: "Registry root for model names.") var registry: String = "indexes"
    @Option(help: "User id (as in the data).") var user: String
    @Option var k: Int = 10
    @Option var ef: Int = 128
    @Flag(help: "Keep items the user already interacted with.") var includeSeen = false
    @Option(help: "Write the list as JSON.") var json: String?
    @Option(help: "The ml-100k folder the model was trained on: enables ranking and re-ranking (features come from its log).")
    var movielens: String?
    @Option(help: "A user the model has not seen: comma-separated ids of items they touched (their embeddings are pooled).")
    var touched: String?
    @Option(help: "A user the model has not seen: a users CSV with their attributes (key column user_id), coded as at training.")
    var users: String?

    func run() throws {
        try FunnelCLI.run {
            let folder = try resolveModel(model, root: registry, user: user)
            if let movielens {
                let served = try ServedModel(folder: folder, movielens: try MovieLens.load(directory: movielens))
                let r = try served.recommend(user: user, k: k)
                print("user \(user) (model \(folder)), path: \(r.path.joined(separator: " > ")), \(fmt(r.totalSeconds * 1e3, 2)) ms")
                for (n, item) in r.items.enumerated() {
                    print(String(format: "%3d. ", n + 1) + served.name(item.id))
                    print("      " + explain(item, categories: served.features.items.categoryNames))
                }
                if let json {
                    let data = try JSONSerialization.data(withJSONObject: served.json(r, user: user, version: folder), options: [.prettyPrinted, .sortedKeys])
                    try AtomicFile.write(Array(data) + [10], to: json)
                }
                return
            }
            let m = try ModelFolder(folder)
            var rng = SeededGenerator(seed: 0)
            let vector: [Float], seen: Set<Int>, how: String
            if let u = m.userIDs.firstIndex(of: user) {
                vector = m.model.users.forward([Int32(u)], rng: &rng)
                seen = includeSeen ? [] : Set((m.history?.items(of: u) ?? []).map { Int($0) })
                how = "\(seen.count) seen items left out"
            } else if let touched {
                // Cold user, a few interactions: the pooled embeddings of the items they touched.
                let items = Vocabulary(m.itemIDs)
                let ids = try touched.split(separator: ",").map { s -> Int32 in
                    let id = s.trimmingCharacters(in: .whitespaces)
                    guard let i = items.lookup(id) else { throw ValidationError("unknown item '\(id)' in --touched") }
                    return i
                }
                vector = try m.model.userVector(touched: ids)
                seen = includeSeen ? [] : Set(ids.map { Int($0) })
                how = "new user, pooled from \(ids.count) touched items (left out)"
            } else if let users {
                // Cold user, features only: coded with the saved vocabularies, id hidden.
                let old = m.model.users.features
                let table = try AttributeTable.readCSV(users, key: "user_id", columns: old.attributeColumns(separator: "|"))
                guard table.keys.lookup(user) != nil else { throw ValidationError("user '\(user)' is neither in the model nor in \(users)") }
                var ids = Vocabulary(m.userIDs)
                let row = Int(ids.intern(user))
                let (features, uncoded) = old.appending(table: table.aligned(to: ids).table, from: old.count)
                if !uncoded.isEmpty { print("note: not coded (column missing or model saved without its vocabulary): \(Set(uncoded).sorted().joined(separator: ", "))") }
                vector = try m.model.userVector(features: features, row: row)
                seen = []
                how = "new user, from the attributes in \(users)"
            } else {
                throw ValidationError("unknown user '\(user)': give --touched ITEMS or --users FILE.csv to recommend from what is known of them")
            }
            let found = try m.index.search(vector, k: k + seen.count, ef: max(ef, k + seen.count))
                .filter { !seen.contains($0.id) }.prefix(k)
            try m.printResults(Array(found), json: json, header: "user \(user): \(how)")
        }
    }
}

struct Similar: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Items nearest to an item in the item-embedding space.")
    @Option(help: "A model folder, or a model name in the registry (production version; canary users get the canary).") var model: String
    @Option(help: "Registry root for model names.") var registry: String = "indexes"
    @Option(help: "Item id (as in the data).") var item: String
    @Option var k: Int = 10
    @Option var ef: Int = 128
    @Option(help: "Write the list as JSON.") var json: String?

    func run() throws {
        try FunnelCLI.run {
            let m = try ModelFolder(try resolveModel(model, root: registry))
            guard let i = m.itemIDs.firstIndex(of: item) else { throw ValidationError("unknown item '\(item)'") }
            var rng = SeededGenerator(seed: 0)
            let vector = m.model.items.forward([Int32(i)], rng: &rng)
            let found = try m.index.search(vector, k: k + 1, ef: max(ef, k + 1)).filter { $0.id != i }.prefix(k)
            try m.printResults(Array(found), json: json, header: "items like \(item)")
        }
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A model folder's evaluation: recomputed on MovieLens when --movielens is given, else as recorded at training.")
    @Option(help: "A model folder, or a model name in the registry (production version; canary users get the canary).") var model: String
    @Option(help: "Registry root for model names.") var registry: String = "indexes"
    @Option(help: "Recompute on this ml-100k folder (same leave-last-one-out split).") var movielens: String?
    @Option(help: "Write the metrics as JSON.") var json: String?

    func run() throws {
        try FunnelCLI.run {
            var metrics: [String: Any]
            if let movielens {
                let m = try ModelFolder(try resolveModel(model, root: registry))
                let ml = try MovieLens.load(directory: movielens)
                guard ml.users.keys.keys == m.userIDs, ml.items.keys.keys == m.itemIDs else {
                    throw ValidationError("the data's users or items differ from the model's")
                }
                let split = LeaveLastOutSplit(ml.interactions)
                let r = try m.model.evaluate(heldOut: split.test, exclude: split.seenBeforeTest)
                metrics = ["HR@10": r.hr10, "NDCG@10": r.ndcg10, "HR@50": r.hr50, "MRR": r.mrr]
            } else {
                let path = "\(try resolveModel(model, root: registry))/metrics.json"
                guard let data = FileManager.default.contents(atPath: path),
                      let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                    throw ValidationError("\(path) is missing or not JSON; pass --movielens to recompute")
                }
                metrics = obj
            }
            let data = try JSONSerialization.data(withJSONObject: metrics, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            if let json { try AtomicFile.write(Array(data) + [10], to: json) }
        }
    }
}
