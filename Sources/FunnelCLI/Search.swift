import ArgumentParser
import Foundation
import Funnel

/// `funnel search`: a typed query through the funnel. Two candidate generators, fused:
/// BM25 over the item text (title and genres), and the item-embedding neighbours of the
/// query's best lexical matches (the mean of their embeddings, searched in HNSW: items
/// that users treat alike, whatever their titles say). Reciprocal rank fusion merges the
/// two lists; re-ranking (freshness, MMR, rules) then runs as for a recommendation, and
/// with --rank the GBDT ranker too.
struct Search: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Search items by text: BM25 + embedding neighbours, fused (RRF), then ranked and re-ranked.")

    @Option(help: "A model folder, or a model name in the registry.") var model: String = "movielens"
    @Option(help: "Registry root for model names.") var registry: String = "indexes"
    @Option(help: "The ml-100k folder the model was trained on.") var movielens: String
    @Option(help: "The query text.") var query: String
    @Option var k: Int = 10
    @Option(help: "Candidates from each generator.") var candidates: Int = 100
    @Option(help: "lexical: BM25 only; hybrid: BM25 fused with embedding neighbours.") var mode: String = "hybrid"
    @Option(help: "Write the list as JSON.") var json: String?
    @Flag(help: "Re-order the fused candidates with the model's GBDT ranker (trained on recommendation requests, so it favours what users watch over what the query says).")
    var rank = false

    func run() throws {
        try FunnelCLI.run {
            guard ["lexical", "hybrid"].contains(mode) else { throw ValidationError("--mode must be lexical or hybrid") }
            let ml = try MovieLens.load(directory: movielens)
            let served = try ServedModel(folder: try resolveModel(model, root: registry), movielens: ml)
            // The lexical index over titles and genres.
            var bm25 = BM25Index()
            let names = served.features.items.categoryNames
            for i in 0..<served.itemIDs.count {
                let genres = served.features.items.categories(of: i).map { names[Int($0)] }.joined(separator: " ")
                bm25.add((served.titles?[i] ?? "") + " " + genres)
            }
            let lexical = bm25.search(query, k: candidates)
            guard !lexical.isEmpty else { print("no item matches '\(query)'"); return }
            var lists = [lexical.map(\.id)]
            // The query's embedding: the mean of its three best lexical matches' embeddings.
            let vectors = served.pipeline.itemVectors
            var q = [Float](repeating: 0, count: vectors.columns)
            for hit in lexical.prefix(3) { for c in 0..<vectors.columns { q[c] += vectors[hit.id, c] } }
            let norm = sqrt(q.reduce(0) { $0 + $1 * $1 })
            if norm > 0 { q = q.map { $0 / norm } }
            var similarity = [Int: Double]()
            if mode == "hybrid" {
                let neighbours = try served.pipeline.index.search(q, k: candidates, ef: max(128, candidates))
                lists.append(neighbours.map(\.id))
                for n in neighbours { similarity[n.id] = Double(1 - n.distance) }
            }
            let fused = reciprocalRankFusion(lists, limit: candidates)
            // Ranking and re-ranking, for an anonymous user: tower score = similarity to the query embedding.
            let request = FunnelRequest(user: nil, vector: q)
            let list = fused.enumerated().map { (position, f) -> RankedItem in
                var x = RankedItem(id: f.id, score: f.score,
                                   category: served.features.items.primaryCategory(f.id), createdAt: served.features.items.created(f.id))
                x.retrievalRank = position
                x.retrievalScore = similarity[f.id] ?? Double(Distance.dot(q, vectors.row(f.id)))
                return x
            }
            let ranked = rank ? ((try? served.pipeline.rank(request, list)) ?? list) : list
            // A query says what it wants: no freshness preference, MMR and the category cap only.
            var config = served.pipeline.config
            config.freshness = nil
            let final = served.pipeline.explain(request, served.pipeline.rerank(request, ranked, k: k, override: config))
            let lexicalRank = Dictionary(lexical.enumerated().map { ($0.element.id, $0.offset + 1) }, uniquingKeysWith: { a, _ in a })
            print("'\(query)': \(lexical.count) lexical matches, \(mode) candidates \(fused.count), top \(k):")
            for (n, item) in final.enumerated() {
                let source = lexicalRank[item.id].map { "bm25 #\($0)" } ?? "embedding neighbour"
                print(String(format: "%3d. ", n + 1) + served.name(item.id) + "  [\(source)]")
                print("      " + explain(item, categories: names))
            }
            if let json {
                let out = final.map { ["item": served.itemIDs[$0.id], "title": served.titles?[$0.id] ?? "", "score": $0.score,
                                       "bm25_rank": lexicalRank[$0.id] ?? 0] as [String: Any] }
                let data = try JSONSerialization.data(withJSONObject: out, options: [.prettyPrinted, .sortedKeys])
                try AtomicFile.write(Array(data) + [10], to: json)
            }
        }
    }
}
