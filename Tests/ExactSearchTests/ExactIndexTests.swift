import Testing
import ExactSearch
import LinearAlgebra
import Foundation

/// Brute force in double precision: the oracle. Plain loops over buffers: the sums are
/// the definition, and they stay cheap in debug and sanitizer builds.
func bruteForce(base: Matrix, query: [Float], k: Int, metric: Metric) -> [(id: Int, distance: Double)] {
    let d = query.count
    func doubles(_ v: [Float]) -> [Double] {
        var out = [Double](repeating: 0, count: v.count)
        var n = 0.0
        for i in 0..<v.count { out[i] = Double(v[i]); n += out[i] * out[i] }
        n = n.squareRoot()
        if metric == .cosine && n > 0 { for i in 0..<v.count { out[i] /= n } }
        return out
    }
    let q = doubles(query)
    var all = [(id: Int, distance: Double)]()
    all.reserveCapacity(base.rows)
    for r in 0..<base.rows {
        let x = doubles(base.row(r))
        var dot = 0.0, l2 = 0.0
        q.withUnsafeBufferPointer { q in
            x.withUnsafeBufferPointer { x in
                for i in 0..<d { dot += q[i] * x[i]; l2 += (q[i] - x[i]) * (q[i] - x[i]) }
            }
        }
        switch metric {
        case .l2: all.append((r, l2))
        case .innerProduct: all.append((r, -dot))
        case .cosine: all.append((r, 1 - dot))
        }
    }
    return Array(all.sorted { ($0.distance, $0.id) < ($1.distance, $1.id) }.prefix(k))
}

func gaussian(_ r: Int, _ c: Int, seed: UInt64) -> Matrix {
    var rng = SeededGenerator(seed: seed)
    var m = Matrix(rows: r, columns: c)
    for i in m.storage.indices { m.storage[i] = rng.nextGaussian() }
    return m
}

/// Results agree with the oracle when every returned distance matches the oracle's at
/// the same rank (ids may swap only between near-equal distances).
func expectMatches(_ got: [Neighbor], _ want: [(id: Int, distance: Double)], tolerance: Double,
                   sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(got.count == want.count, sourceLocation: sourceLocation)
    for (g, w) in zip(got, want) {
        let ok = g.id == w.id || abs(Double(g.distance) - w.distance) <= tolerance
        #expect(ok, "got \(g), want \(w)", sourceLocation: sourceLocation)
        #expect(abs(Double(g.distance) - w.distance) <= tolerance, sourceLocation: sourceLocation)
    }
}

@Suite("Exact search against brute force")
struct ExactIndexTests {
    @Test("single and batch search equal brute force, every metric and several shapes",
          arguments: Metric.allCases, [(n: 1, d: 3), (n: 50, d: 7), (n: 700, d: 33), (n: 3000, d: 128)])
    func againstBruteForce(metric: Metric, shape: (n: Int, d: Int)) throws {
        let base = gaussian(shape.n, shape.d, seed: 1)
        let queries = gaussian(23, shape.d, seed: 2)
        let index = try ExactIndex(vectors: base, metric: metric)
        // Small blocks so that the blocking and multi-block merges are exercised.
        index.baseBlock = 64
        index.queryBlock = 5
        let k = 10
        let batch = try index.search(queries, k: k, threads: 2)
        let tol = 1e-4 * Double(shape.d)
        for q in 0..<queries.rows {
            let want = bruteForce(base: base, query: queries.row(q), k: k, metric: metric)
            expectMatches(try index.search(queries.row(q), k: k), want, tolerance: tol)
            expectMatches(batch.neighbors(of: q), want, tolerance: tol)
        }
    }

    @Test("thread count and block sizes do not change the answer")
    func threadInvariance() throws {
        let base = gaussian(1000, 16, seed: 3), queries = gaussian(100, 16, seed: 4)
        let index = try ExactIndex(vectors: base, metric: .l2)
        let one = try index.search(queries, k: 7, threads: 1)
        index.baseBlock = 100
        index.queryBlock = 3
        let two = try index.search(queries, k: 7, threads: 2)
        #expect(one.ids == two.ids)
    }

    @Test("ties are broken by the smaller id, and duplicates are all found")
    func ties() throws {
        // Four copies of the same vector and one far away.
        let v: [Float] = [1, 2, 3]
        let base = try Matrix(rowArrays: [[9, 9, 9], v, v, v, v])
        let index = try ExactIndex(vectors: base, metric: .l2)
        #expect(try index.search(v, k: 3).map(\.id) == [1, 2, 3])
        let batch = try index.search(try Matrix(rowArrays: [v]), k: 3)
        #expect(batch.neighbors(of: 0).map(\.id) == [1, 2, 3])
    }

    @Test("k larger than the index pads with -1; add() appends with the next ids")
    func paddingAndAdd() throws {
        let index = ExactIndex(dimension: 2, metric: .innerProduct)
        try index.add(try Matrix(rowArrays: [[1, 0], [0, 1]]))
        let r = try index.search(try Matrix(rowArrays: [[1, 0.5]]), k: 4)
        #expect(r.ids == [0, 1, -1, -1])
        #expect(r.distances[0] == -1 && r.distances[1] == -0.5 && r.distances[2] == .infinity)
        try index.add(try Matrix(rowArrays: [[5, 5]]))
        #expect(try index.search([1, 0.5], k: 1).map(\.id) == [2])
        #expect(index.count == 3)
    }

    @Test("L2 distances are re-scored directly: large-norm integer data keeps exact distances")
    func l2Refinement() throws {
        // MNIST-like magnitudes: |x|^2 ~ 1e7, where the expanded form loses whole units.
        var rng = SeededGenerator(seed: 5)
        var base = Matrix(rows: 500, columns: 784)
        for i in base.storage.indices { base.storage[i] = Float(rng.nextInt(below: 256)) }
        let queries = base.rows(0..<20)
        let index = try ExactIndex(vectors: base, metric: .l2)
        let r = try index.search(queries, k: 5)
        for q in 0..<20 {
            let want = bruteForce(base: base, query: queries.row(q), k: 5, metric: .l2)
            #expect(r.ids[q * 5] == Int32(q))
            for j in 0..<5 { #expect(Double(r.distances[q * 5 + j]) == want[j].distance) }
        }
    }

    @Test("bad input: wrong dimension, NaN vector or query, k < 1")
    func badInput() throws {
        let index = try ExactIndex(vectors: gaussian(10, 4, seed: 1), metric: .cosine)
        #expect(throws: ExactSearchError.dimensionMismatch(expected: 4, got: 3)) { try index.search([1, 2, 3], k: 1) }
        #expect(throws: ExactSearchError.dimensionMismatch(expected: 4, got: 5)) { try index.search(gaussian(2, 5, seed: 1), k: 1) }
        #expect(throws: ExactSearchError.nonFinite(what: "query", row: 0, column: 2)) { try index.search([1, 2, .nan, 3], k: 1) }
        #expect(throws: ExactSearchError.self) { try index.search([1, 2, 3, 4], k: 0) }
        var bad = gaussian(3, 4, seed: 2)
        bad[1, 3] = .infinity
        #expect(throws: ExactSearchError.nonFinite(what: "vector", row: 1, column: 3)) { try index.add(bad) }
        #expect(index.count == 10)
    }
}

@Suite("Recall@k with ties")
struct RecallTests {
    @Test("hand-computed recall: misses, ties at the k-th distance, padding")
    func handComputed() throws {
        // Points on a line; query at 0. Distances: id0 -> 0, id1 -> 1, id2 -> 1, id3 -> 4, id4 -> 9.
        let base = try Matrix(rowArrays: [[0], [1], [-1], [2], [3]])
        let queries = try Matrix(rowArrays: [[0]])
        let truth: [Int32] = [0, 1, 2]
        var result = KNNResult(queryCount: 1, k: 2)
        // k = 2: true top-2 is {0, 1}; id 2 ties with the 2nd distance and counts as a hit.
        result.ids = [2, 0]
        #expect(try Recall.atK(2, result: result, truth: truth, truthColumns: 3, base: base, queries: queries, metric: .l2) == 1.0)
        result.ids = [3, 0]
        #expect(try Recall.atK(2, result: result, truth: truth, truthColumns: 3, base: base, queries: queries, metric: .l2) == 0.5)
        result.ids = [-1, 4]
        #expect(try Recall.atK(2, result: result, truth: truth, truthColumns: 3, base: base, queries: queries, metric: .l2) == 0.0)
        #expect(throws: ExactSearchError.self) {
            try Recall.atK(3, result: result, truth: truth, truthColumns: 3, base: base, queries: queries, metric: .l2)
        }
    }
}
