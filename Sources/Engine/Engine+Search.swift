import Foundation
import LinearAlgebra
import Rerank
import Serving
import TextSearch

/// How text search generates candidates.
public enum SearchMode: String, Sendable, CaseIterable {
    /// BM25 over the items' search text only.
    case lexical
    /// BM25 fused (reciprocal rank fusion) with the embedding neighbours of the query's
    /// best lexical matches: items users treat alike, whatever their text says.
    case hybrid
}

extension Engine {
    /// Items for a typed query: BM25 over titles, text and category values (and, in hybrid
    /// mode, the HNSW neighbours of the mean embedding of the three best lexical matches),
    /// fused by RRF, then re-ranked as a recommendation is (MMR and rules; no freshness:
    /// a query says what it wants). With `rank`, the GBDT ranker orders the fused
    /// candidates first (it was trained on recommendation requests, so it favours what
    /// users pick over what the query says).
    /// - Throws: `EngineError.invalidRequest` for an empty query or k outside 1...maxK.
    public func search(_ text: String, k: Int, mode: SearchMode = .hybrid, candidates: Int = 100, rank: Bool = false) throws -> EngineAnswer {
        try check(k: k)
        guard !BM25Index.tokenize(text).isEmpty else { throw EngineError.invalidRequest("the query '\(text)' has no words") }
        guard (1...Self.maxK).contains(candidates) else { throw EngineError.invalidRequest("candidates must be in 1...\(Self.maxK)") }
        let t0 = Clock.now()
        // BM25 documents to items; items deleted (or changed: their old document) left out.
        let hits: [(id: Int, score: Double)] = state.read {
            var seen = Set<Int>()
            return lexical.search(text, k: max(candidates, k) + lexicalItem.count - liveCatalog.itemIDs.count + pipeline.deletedCount)
                .compactMap { hit in
                    let item = lexicalItem[hit.id]
                    guard live.document[item, default: item] == hit.id, !pipeline.isDeleted(item), seen.insert(item).inserted else { return nil }
                    return (item, hit.score)
                }
                .prefix(max(candidates, k)).map { $0 }
        }
        var answer = EngineAnswer(model: name, version: version, path: [], latencyUs: 0, stagesUs: [:], items: [])
        answer.query = text
        guard !hits.isEmpty else { return answer }
        var lists = [hits.map(\.id)]
        // The mean of the best lexical matches' embeddings (read in place: no copy of the item vectors).
        var q = pipeline.reading { vectors, _ -> [Float] in
            var q = [Float](repeating: 0, count: vectors.columns)
            for hit in hits.prefix(3) { for c in 0..<vectors.columns { q[c] += vectors[hit.id, c] } }
            return q
        }
        let norm = q.reduce(0) { $0 + $1 * $1 }.squareRoot()
        if norm > 0 { q = q.map { $0 / norm } }
        var similarity = [Int: Double]()
        answer.path = ["bm25"]
        if mode == .hybrid {
            let neighbours = try index.search(q, k: max(candidates, k), ef: max(pipeline.config.ef, candidates, k))
            lists.append(neighbours.map(\.id))
            for n in neighbours { similarity[n.id] = Double(1 - n.distance) }
            answer.path.append("hnsw")
        }
        let fused = reciprocalRankFusion(lists, limit: max(candidates, k))
        let t1 = Clock.now()
        let request = FunnelRequest(user: nil, vector: q)
        let list = pipeline.reading { vectors, features in
            fused.filter { !pipeline.deleted.contains(Int32($0.id)) }.enumerated().map { (position, f) -> RankedItem in
                var x = RankedItem(id: f.id, score: f.score, category: features.items.primaryCategory(f.id), createdAt: features.items.created(f.id))
                x.retrievalRank = position
                x.retrievalScore = similarity[f.id] ?? Double(Distance.dot(q, vectors.row(f.id)))
                return x
            }
        }
        var ranked = list
        if rank, ranker != nil {
            ranked = try pipeline.rank(request, list)
            answer.path.append("gbdt")
        }
        let t2 = Clock.now()
        var config = pipeline.config
        config.freshness = nil
        // An item whose title is the query (same words) is what was asked for: it leads.
        let words = BM25Index.tokenize(text)
        if let titles = state.read({ liveCatalog.titles }) {
            config.rules.pinned = hits.prefix(10).map(\.id).filter { BM25Index.tokenize(titles[$0]) == words }
        }
        let final = pipeline.explain(request, pipeline.rerank(request, ranked, k: k, override: config))
        answer.path.append("rerank")
        let t3 = Clock.now()
        let lexicalRank = Dictionary(hits.enumerated().map { ($0.element.id, $0.offset + 1) }, uniquingKeysWith: { a, _ in a })
        answer.items = served(final, lexicalRank: lexicalRank)
        answer.latencyUs = (t3 - t0) * 1e6
        answer.stagesUs = ["retrieval": (t1 - t0) * 1e6, "ranking": (t2 - t1) * 1e6, "rerank": (t3 - t2) * 1e6]
        return answer
    }
}
