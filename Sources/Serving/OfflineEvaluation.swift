import Foundation
import LinearAlgebra
import Rerank

/// Quality of one list-producing variant over held-out requests.
public struct FunnelQuality: Sendable, CustomStringConvertible {
    public var hr = 0.0
    public var ndcg = 0.0
    /// Mean intra-list diversity: 1 - mean pairwise cosine similarity of the list's item embeddings.
    public var diversity = 0.0
    /// Distinct items recommended over all requests / catalog size.
    public var coverage = 0.0
    public var requests = 0

    public var description: String {
        String(format: "HR@k %.4f  NDCG@k %.4f  diversity %.3f  coverage %.3f", hr, ndcg, diversity, coverage)
    }
}

/// Offline evaluation of a funnel, stage by stage, on requests with one held-out target
/// each: retrieval order alone, after GBDT ranking, and after re-ranking for each MMR
/// lambda. The same stage code serves online requests; `FunnelRequest.asOf` keeps each
/// request's features in its own past.
public enum OfflineEvaluation {
    public struct Report: Sendable {
        public var retrieval: FunnelQuality
        public var ranked: FunnelQuality
        public var reranked: [(lambda: Double, quality: FunnelQuality)]
    }

    public static func run(_ pipeline: FunnelPipeline, requests: [(request: FunnelRequest, target: Int32)], k: Int,
                           lambdas: [Double]) throws -> Report {
        var accumulators = [Accumulator](repeating: Accumulator(), count: 2 + lambdas.count)
        for (request, target) in requests {
            let candidates = try pipeline.retrieve(request, count: pipeline.config.candidates)
            let ranked = try pipeline.rank(request, candidates)
            accumulators[0].add(candidates.prefix(k).map(\.id), target: Int(target), vectors: pipeline.itemVectors)
            accumulators[1].add(ranked.prefix(k).map(\.id), target: Int(target), vectors: pipeline.itemVectors)
            for (j, lambda) in lambdas.enumerated() {
                var c = pipeline.config
                c.mmrLambda = lambda
                let list = pipeline.rerank(request, ranked, k: k, override: c)
                accumulators[2 + j].add(list.map(\.id), target: Int(target), vectors: pipeline.itemVectors)
            }
        }
        let n = pipeline.itemVectors.rows
        return Report(retrieval: accumulators[0].quality(items: n), ranked: accumulators[1].quality(items: n),
                      reranked: lambdas.enumerated().map { ($0.element, accumulators[2 + $0.offset].quality(items: n)) })
    }

    struct Accumulator {
        var ranks = HeldOutRanks()
        var diversity = 0.0, k = 0
        var shown = Set<Int>()

        mutating func add(_ list: [Int], target: Int, vectors: Matrix) {
            ranks.add(rank: list.firstIndex(of: target))
            k = max(k, list.count)
            shown.formUnion(list)
            var m = Matrix(rows: list.count, columns: vectors.columns)
            for (r, id) in list.enumerated() { for c in 0..<vectors.columns { m[r, c] = vectors[id, c] } }
            diversity += MMR.diversity(m)
        }

        func quality(items: Int) -> FunnelQuality {
            // Every list holds at most k items, so a rank in it is below k.
            return FunnelQuality(hr: ranks.hitRate(at: k), ndcg: ranks.ndcg(at: k), diversity: diversity / Double(max(1, ranks.count)),
                                 coverage: Double(shown.count) / Double(max(1, items)), requests: ranks.count)
        }
    }
}
