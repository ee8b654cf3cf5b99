import Foundation
import Testing
import Rerank
import LinearAlgebra

@Suite("Re-ranking")
struct RerankTests {
    func unitRows(_ n: Int, _ d: Int, seed: UInt64) -> Matrix {
        var rng = SeededGenerator(seed: seed)
        var m = Matrix(rows: n, columns: d)
        for i in m.storage.indices { m.storage[i] = rng.nextGaussian() }
        m.normalizeRows()
        return m
    }

    @Test("MMR equals the textbook greedy recomputation", arguments: [1.0, 0.9, 0.7, 0.5, 0.0])
    func mmrAgainstNaive(lambda: Double) {
        let n = 40, d = 8
        let e = unitRows(n, d, seed: 3)
        var rng = SeededGenerator(seed: 4)
        let items = (0..<n).map { RankedItem(id: $0, score: Double(rng.nextUnit())) }
        let fast = MMR.rerank(items, embeddings: e, lambda: lambda, k: 10).map(\.id)
        // Naive: recompute max similarity to the whole picked set for every candidate each round.
        var picked = [Int]()
        while picked.count < 10 {
            var best = -1, bestValue = -Double.infinity
            for i in 0..<n where !picked.contains(i) {
                let sim = picked.map { Double(Distance.dot(e.row(i), e.row($0))) }.max() ?? 0
                let v = lambda * items[i].score - (1 - lambda) * sim
                if v > bestValue { bestValue = v; best = i }
            }
            picked.append(best)
        }
        #expect(fast == picked)
        if lambda == 1 { #expect(fast == items.sorted { $0.score > $1.score }.prefix(10).map(\.id)) }
    }

    @Test("lower lambda raises intra-list diversity on clustered candidates")
    func diversityRises() {
        // Two tight clusters; the most relevant items all sit in the first.
        var e = Matrix(rows: 20, columns: 2)
        for i in 0..<20 { e[i, 0] = i < 12 ? 1 : 0; e[i, 1] = i < 12 ? 0.05 * Float(i % 3) : 1 }
        e.normalizeRows()
        let items = (0..<20).map { RankedItem(id: $0, score: $0 < 12 ? 1 - Double($0) * 0.01 : 0.8) }
        func div(_ lambda: Double) -> Double {
            let ids = MMR.rerank(items, embeddings: e, lambda: lambda, k: 5).map(\.id)
            var sub = Matrix(rows: 5, columns: 2)
            for (r, id) in ids.enumerated() { sub[r, 0] = e[id, 0]; sub[r, 1] = e[id, 1] }
            return MMR.diversity(sub)
        }
        #expect(div(0.5) > div(1.0) + 0.2)
    }

    @Test("freshness decays as defined, and the blend weight scales it", arguments: [
        (FreshnessDecay.exponential(halfLife: 10), 10.0, 0.5), (.exponential(halfLife: 10), 20.0, 0.25),
        (.gaussian(scale: 2), 2.0, exp(-0.5)), (.linear(scale: 4), 1.0, 0.75), (.linear(scale: 4), 9.0, 0.0),
    ])
    func decay(kind: FreshnessDecay, age: Double, expected: Double) {
        #expect(abs(kind.weight(age: age) - expected) < 1e-12)
        let items = [RankedItem(id: 1, score: 2, createdAt: 100 - Int64(age))]
        let out = kind.apply(items, now: 100, weight: 0.5)
        #expect(abs(out[0].score - 2 * (0.5 + 0.5 * expected)) < 1e-9)
    }

    @Test("business rules: exclude, dedupe, boost, bury, pin, at most N per category")
    func rules() {
        let items = [
            RankedItem(id: 1, score: 0.9, category: 0), RankedItem(id: 2, score: 0.8, category: 0),
            RankedItem(id: 3, score: 0.7, category: 0), RankedItem(id: 4, score: 0.6, category: 1),
            RankedItem(id: 2, score: 0.5, category: 0), RankedItem(id: 5, score: 0.4, category: 1),
            RankedItem(id: 6, score: 0.3, category: 2),
        ]
        var r = BusinessRules()
        r.exclude = [5]
        r.boost = [6: 3]       // 0.9 ties with item 1; id order breaks the tie
        r.bury = [1]
        r.pinned = [4]
        r.maxPerCategory = 1
        r.fillPastCap = false
        let out = r.apply(items, k: 4)
        // By hand: after exclude and dedupe, scores 1:.9 6:.9 (boosted) 2:.8 3:.7 4:.6; bury 1 -> 6 2 3 4 1;
        // pin 4 -> 4 6 2 3 1; one per category fills 4 (c1), 6 (c2), 2 (c0) and skips 3 and 1 (c0).
        #expect(out.map(\.id) == [4, 6, 2])
        // By default the cap is filled past to k: the best capped-out item (3) comes last, marked.
        r.fillPastCap = true
        let filled = r.apply(items, k: 4)
        #expect(filled.map(\.id) == [4, 6, 2, 3])
        #expect(filled.last?.reasons.contains("over the category cap (filled to k)") == true)
        #expect(r.apply(items, k: 5).map(\.id) == [4, 6, 2, 3, 1])
        #expect(r.apply(items, k: 2).map(\.id) == [4, 6])
        #expect(out.first?.reasons.contains("pinned") == true)
        #expect(Set(out.map(\.id)).count == out.count)
        #expect(!out.contains { $0.id == 5 })
        // At most one per category: categories 1, 2, 0 once each.
        #expect(Dictionary(grouping: out, by: { $0.category! }).values.allSatisfy { $0.count <= 1 })
    }
}
