import ArgumentParser
import Foundation
import Funnel

/// Prints an engine answer, one explained item per line, and writes it as JSON when asked.
func show(_ answer: EngineAnswer, header: String, json: String?) throws {
    print(header + "  (path: \(answer.path.joined(separator: " > ")), \(fmt(answer.latencyUs / 1000, 2)) ms)")
    for (n, item) in answer.items.enumerated() {
        print(String(format: "%3d. ", n + 1) + item.item + (item.title.map { " \($0)" } ?? "") + (item.category.map { "  (\($0))" } ?? ""))
        print("      " + describe(item))
    }
    if let json { try writeJSON(answer, to: json) }
}

/// Writes a Codable value as pretty JSON, atomically.
func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try AtomicFile.write(Array(try encoder.encode(value)) + [10], to: path)
}

/// One line saying why a served item is there.
func describe(_ item: ServedItem) -> String {
    var parts = [String]()
    let e = item.explanation
    if let r = e.lexicalRank { parts.append("bm25 #\(r)") }
    if let r = e.retrievalRank, let s = e.retrievalScore { parts.append("retrieved #\(r) sim \(fmt(s, 3))") }
    if let s = item.rankerScore {
        parts.append("ranker \(fmt(s, 3))" + (e.rankerContributions.map { " [" + $0.map {
            "\($0.feature) \(String(format: "%+.3f", $0.value))" }.joined(separator: ", ") + "]" } ?? ""))
    }
    if let rules = e.rules { parts.append("rules: " + rules.joined(separator: "; ")) }
    return parts.joined(separator: "  ")
}

struct Recommend: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Top-k items for a user through the whole funnel (HNSW -> GBDT -> MMR, freshness, rules), every item explained.")
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "User id (as in the data).") var user: String
    @Option var k: Int = 10
    @Flag(help: "Keep items the user already interacted with.") var includeSeen = false
    @Option(help: "Comma-separated item ids never to return.") var exclude: String?
    @Option(help: "Write the answer as JSON.") var json: String?
    @Option(help: "A user the model has not seen: comma-separated ids of items they touched (their embeddings are pooled).")
    var touched: String?
    @Option(help: "A user the model has not seen: a users CSV with their attributes (key column --user-key), coded as at training.")
    var users: String?
    @Option(help: "Key column of --users.") var userKey: String = "user_id"
    @Option(name: .customLong("movielens"), help: .hidden) var movielens: String?

    func run() throws {
        let engine = try modelOptions.engine(user: user)
        let list = { (s: String?) in s.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } } ?? [] }
        if let users, !engine.knows(user: user), touched == nil {
            let table = try AttributeTable.readCSV(users, key: userKey, columns: engine.userAttributeColumns())
            let (answer, uncoded) = try engine.recommend(newUser: user, attributes: table, k: k)
            if !uncoded.isEmpty { print("note: not coded (column missing or model saved without its vocabulary): \(uncoded.joined(separator: ", "))") }
            try show(answer, header: "user \(user): new, from the attributes in \(users)", json: json)
            return
        }
        let answer = try engine.recommend(user: user, k: k, touched: list(touched), exclude: list(exclude), includeSeen: includeSeen)
        let how = engine.knows(user: user) ? "known" : "new, pooled from \(list(touched).count) touched items"
        try show(answer, header: "user \(user) (\(how); model \(engine.name ?? engine.bundle.folder) \(engine.version ?? ""))", json: json)
    }
}

struct Similar: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Items nearest to an item in the item-embedding space, re-ranked (MMR, category cap).")
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Item id (as in the data).") var item: String
    @Option var k: Int = 10
    @Option(help: "Write the answer as JSON.") var json: String?

    func run() throws {
        let engine = try modelOptions.engine()
        let i = engine.item(item).map { engine.catalog.name($0) } ?? item
        try show(try engine.similar(item: item, k: k), header: "items like \(item) \(i == item ? "" : i)", json: json)
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "A model's evaluation as recorded at training (metrics.json of its bundle).")
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Write the metrics as JSON.") var json: String?
    @Option(name: .customLong("movielens"), help: .hidden) var movielens: String?

    func run() throws {
        let engine = try modelOptions.engine()
        guard engine.bundle.has(ModelBundle.File.metrics) else { throw ValidationError("\(engine.bundle.folder) has no metrics.json") }
        let bytes = try FileBytes.read(engine.bundle.path(ModelBundle.File.metrics))
        print(String(decoding: bytes, as: UTF8.self), terminator: "")
        if let json { try AtomicFile.write(bytes, to: json) }
    }
}
