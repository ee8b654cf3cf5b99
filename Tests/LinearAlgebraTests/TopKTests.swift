import Foundation
import LinearAlgebra
import Testing

@Suite("Bounded top-k selection")
struct TopKTests {
    @Test("keeps the k smallest, nearest first, ties by id, against a full sort",
          arguments: [0, 1, 5, 10, 100, 1000], [1, 3, 10, 64])
    func againstSort(n: Int, k: Int) {
        var rng = SeededGenerator(seed: UInt64(n * 131 + k))
        // Few distinct values so ties are common.
        let values = (0..<n).map { _ in Float(rng.nextInt(below: 20)) }
        let got = TopK.smallest(k, of: values)
        let expected = values.enumerated().sorted { ($0.element, $0.offset) < ($1.element, $1.offset) }.prefix(k)
        #expect(got.map(\.id) == expected.map(\.offset))
        #expect(got.map(\.distance) == expected.map(\.element))
    }

    @Test("threshold is +infinity until full, then the k-th best")
    func threshold() {
        let h = TopK(k: 3)
        #expect(h.threshold == .infinity)
        h.push(5, 0); h.push(1, 1)
        #expect(h.threshold == .infinity)
        h.push(3, 2)
        #expect(h.threshold == 5)
        h.push(2, 3)
        #expect(h.threshold == 3)
        h.push(10, 4)
        #expect(h.threshold == 3)
    }

    @Test("drainSorted pads with -1 and +infinity, and reset reuses the heap")
    func drainPadding() {
        let h = TopK(k: 4)
        h.push(2, 7); h.push(1, 9)
        var ids = [Int32](repeating: 0, count: 4), d = [Float](repeating: 0, count: 4)
        h.drainSorted(ids: &ids, distances: &d)
        #expect(ids == [9, 7, -1, -1])
        #expect(d[0] == 1 && d[1] == 2 && d[2] == .infinity && d[3] == .infinity)
        #expect(h.count == 0)
        h.reset(k: 2)
        for i in 0..<10 { h.push(Float(10 - i), Int32(i)) }
        #expect(h.drainSorted().map(\.id) == [9, 8])
    }
}

@Suite("Seeded generator")
struct GeneratorTests {
    @Test("same seed gives the same stream; streams differ")
    func determinism() {
        var a = SeededGenerator(seed: 5), b = SeededGenerator(seed: 5), c = SeededGenerator(seed: 5, stream: 1)
        let xa = (0..<100).map { _ in a.next() }, xb = (0..<100).map { _ in b.next() }, xc = (0..<100).map { _ in c.next() }
        #expect(xa == xb)
        #expect(xa != xc)
    }

    @Test("uniform and Gaussian moments are close to their targets")
    func moments() {
        var r = SeededGenerator(seed: 11)
        let n = 200_000
        var su = 0.0, sg = 0.0, sg2 = 0.0
        var below = [Int](repeating: 0, count: 7)
        for _ in 0..<n {
            let u = Double(r.nextUnit()); su += u
            #expect(u >= 0 && u < 1)
            let g = Double(r.nextGaussian()); sg += g; sg2 += g * g
            below[r.nextInt(below: 7)] += 1
        }
        #expect(abs(su / Double(n) - 0.5) < 0.005)
        #expect(abs(sg / Double(n)) < 0.01)
        #expect(abs(sg2 / Double(n) - 1) < 0.02)
        for c in below { #expect(abs(Double(c) / Double(n) - 1.0 / 7) < 0.005) }
    }
}

@Suite("Held-out ranks") struct HeldOutRanksTests {
    @Test("HR, NDCG and MRR against values worked out by hand")
    func handComputed() {
        var r = HeldOutRanks()
        for rank in [0, 3, 9, 10, nil, 49] as [Int?] { r.add(rank: rank) }
        #expect(r.count == 6)
        #expect(abs(r.hitRate(at: 10) - 3.0 / 6) < 1e-12)
        #expect(abs(r.hitRate(at: 50) - 5.0 / 6) < 1e-12)
        let gains: [Double] = [1 / log2(2.0), 1 / log2(5.0), 1 / log2(11.0)]
        let ndcg = gains.reduce(0, +) / 6
        #expect(abs(r.ndcg(at: 10) - ndcg) < 1e-12)
        let reciprocal: [Double] = [1, 1.0 / 4, 1.0 / 10, 1.0 / 11, 1.0 / 50]
        #expect(abs(r.mrr - reciprocal.reduce(0, +) / 6) < 1e-12)
        #expect(HeldOutRanks().hitRate(at: 10) == 0)
    }
}
