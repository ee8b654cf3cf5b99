import Testing
import _FunnelKernels
@testable import HNSW
import LinearAlgebra
import ExactSearch
import Foundation

@Suite("HNSW search quality against brute force")
struct HNSWSearchTests {
    @Test("recall@10 >= 0.98 at ef 200 for every metric, several sizes and dimensions",
          arguments: Metric.allCases, [(n: 500, d: 8), (n: 2000, d: 32), (n: 4000, d: 100)])
    func recallAtHighEf(metric: Metric, shape: (n: Int, d: Int)) throws {
        let base = clustered(shape.n, shape.d, seed: 1)
        let queries = clustered(50, shape.d, seed: 1, stream: 9)
        let index = try HNSWIndex(dimension: shape.d, parameters: .init(metric: metric, M: 16, efConstruction: 200))
        try index.add(base, ids: (0..<UInt64(shape.n)).map { $0 }, threads: 2)
        #expect(index.count == shape.n)
        let got = try index.searchLabels(queries, k: 10, ef: 200, threads: 2)
        let r = try recall(got: got.ids, k: 10, queries: queries, base: base, metric: metric)
        // Inner product is not a metric (no triangle inequality): graphs navigate it less well.
        #expect(r >= (metric == .innerProduct ? 0.95 : 0.98), "recall \(r)")
        // Distances are the metric's, nearest first.
        for q in 0..<queries.rows {
            let row = Array(got.distances[(q * 10)..<(q * 10 + 10)])
            #expect(row == row.sorted())
        }
    }

    @Test("a two-thread build leaves every node reachable from the entry point on layer 0")
    func concurrentBuildKeepsEveryNodeReachable() throws {
        // Small clustered sets are where a lost link shows: before links written by a
        // neighbor were merged into a new node's list, 4 in 5 such builds left a node that
        // no list pointed to (and recall at ef 200 fell to 0.91).
        let base = clustered(500, 8, seed: 1)
        for attempt in 0..<8 {
            let index = try HNSWIndex(dimension: 8, parameters: .init(M: 16, efConstruction: 200))
            try index.add(base, threads: 2)
            let entry = try #require(index.loadEntry()).node
            var seen = Set([entry]), stack = [entry]
            while let n = stack.popLast() {
                let l = index.links0(n)
                for i in 0..<Int(l[0]) where seen.insert(Int(l[1 + i])).inserted { stack.append(Int(l[1 + i])) }
                #expect(Int(l[0]) <= 32, "node \(n) has \(l[0]) links, more than 2M")
            }
            #expect(seen.count == 500, "build \(attempt): \(500 - seen.count) nodes unreachable")
        }
    }

    @Test("one thread builds the identical graph twice; two threads reach the same recall")
    func determinism() throws {
        let base = clustered(1500, 16, seed: 2)
        let queries = clustered(40, 16, seed: 2, stream: 5)
        func build(_ threads: Int) throws -> HNSWIndex {
            let i = try HNSWIndex(dimension: 16, parameters: .init(M: 8, efConstruction: 64, seed: 7))
            try i.add(base, threads: threads)
            return i
        }
        let a = try build(1), b = try build(1)
        #expect(memcmp(a.level0, b.level0, a.slotCount * a.blockSize) == 0)
        for i in 0..<a.slotCount where a.levels[i] > 0 {
            #expect(memcmp(a.upperLinks[i]!, b.upperLinks[i]!, Int(a.levels[i]) * a.linkWords * 4) == 0)
        }
        let ra = try a.searchLabels(queries, k: 10, ef: 50, threads: 1)
        let rb = try b.searchLabels(queries, k: 10, ef: 50, threads: 2)
        #expect(ra.ids == rb.ids)
        let c = try build(2)
        let rc = try c.searchLabels(queries, k: 10, ef: 100, threads: 2)
        #expect(try recall(got: rc.ids, k: 10, queries: queries, base: base, metric: .l2) >= 0.97)
    }

    @Test("int8 codes keep recall high and return exact float distances", arguments: [Metric.l2, .cosine, .innerProduct])
    func quantized(metric: Metric) throws {
        let base = clustered(3000, 48, seed: 3)
        let queries = clustered(40, 48, seed: 3, stream: 4)
        let index = try HNSWIndex(dimension: 48, parameters: .init(metric: metric, M: 16, efConstruction: 100, quantization: .int8))
        try index.add(base, threads: 2)
        let got = try index.searchLabels(queries, k: 10, ef: 200)
        #expect(try recall(got: got.ids, k: 10, queries: queries, base: base, metric: metric) >= 0.95)
        forEachReturned(got, k: 10, base: base, queries: queries, metric: metric) { distance, want, _ in
            #expect(abs(distance - want) <= 1e-4 * max(1, abs(want)))
        }
        #expect(index.bytesPerVector > 48)  // codes + the float copy for rescoring
    }

    @Test("int8 quantizer: each value within half a step of its dimension's scale; asymmetric dot products match the decoded vector's")
    func quantizerBounds() throws {
        // Dimensions of very different widths: each keeps its own precision.
        var rng = SeededGenerator(seed: 8)
        let d = 16
        var data = Matrix(rows: 500, columns: d)
        for r in 0..<500 { for j in 0..<d { data[r, j] = Float(rng.nextGaussian()) * Float(j + 1) * (j % 2 == 0 ? 0.01 : 10) } }
        let sq = ScalarQuantizer(training: data)
        var codes = [UInt8](repeating: 0, count: d), scaled = [Int16](repeating: 0, count: d)
        var dims = [Int32](repeating: 0, count: ScalarQuantizer.maxOutliers + 1), weights = [Float](repeating: 0, count: ScalarQuantizer.maxOutliers + 1)
        for r in 0..<500 {
            let x = Array(data.row(r))
            let norm = sq.encode(x, into: &codes, dimension: d)
            let decoded = sq.decode(codes, dimension: d)
            for j in 0..<d { #expect(abs(decoded[j] - x[j]) <= sq.scales[j] * 0.5001, "row \(r) dim \(j)") }
            #expect(abs(Double(norm) - naiveDotD(decoded, decoded)) <= 1e-4 * max(1, naiveDotD(decoded, decoded)))
            let q = Array(data.row((r + 1) % 500))
            let (base, step, outliers) = sq.prepare(q, into: &scaled, outliers: &dims, weights: &weights, dimension: d)
            var dot = Double(base) + Double(step) * Double(fk_adc_dot_u8(scaled, codes, d))
            // Outlier dimensions are summed in floats, exactly.
            for t in 0..<outliers {
                #expect(scaled[Int(dims[t])] == 0)
                dot += Double(weights[t]) * Double(codes[Int(dims[t])])
            }
            // The query keeps ~15 bits: its rounding moves the dot by at most step/2 per code unit.
            let codeSum = codes.reduce(0.0) { $0 + Double($1) }
            #expect(abs(dot - naiveDotD(q, decoded)) <= Double(step) * 0.5 * codeSum + 1e-4 * max(1, sqrt(naiveDotD(q, q) * naiveDotD(decoded, decoded))))
        }
    }

    @Test("fp16 storage: recall as float, distances within half precision, half the vector bytes",
          arguments: [Metric.l2, .cosine, .innerProduct])
    func halfPrecision(metric: Metric) throws {
        let base = clustered(3000, 48, seed: 3)
        let queries = clustered(40, 48, seed: 3, stream: 4)
        func build(_ quantization: HNSWIndex.Quantization) throws -> HNSWIndex {
            let index = try HNSWIndex(dimension: 48, parameters: .init(metric: metric, M: 16, efConstruction: 100, quantization: quantization))
            try index.add(base, threads: 1)
            return index
        }
        let half = try build(.fp16), full = try build(.none)
        let got = try half.searchLabels(queries, k: 10, ef: 200)
        #expect(try recall(got: got.ids, k: 10, queries: queries, base: base, metric: metric) >= (metric == .innerProduct ? 0.95 : 0.98))
        forEachReturned(got, k: 10, base: base, queries: queries, metric: metric) { distance, want, norms in
            // Each stored value is within 2^-11 of the float (relative): a distance moves
            // by about that times the norms involved.
            #expect(abs(Double(distance - want)) <= 2e-3 * max(1, norms))
        }
        // Same seed, same levels: the blocks differ only by the vector (2 instead of 4 bytes a value).
        #expect(full.bytesPerVector - half.bytesPerVector == 2 * 48)
        // Values float16 cannot hold are refused by position (cosine normalizes them first).
        if metric != .cosine {
            #expect(throws: HNSWError.self) { try half.add(Matrix(rows: 1, columns: 48, storage: [Float](repeating: 70_000, count: 48)), ids: [99_999]) }
        }
    }

    @Test("k larger than the index returns every item, padded; an empty index returns nothing")
    func smallIndexes() throws {
        let index = try HNSWIndex(dimension: 3)
        #expect(try index.search([1, 2, 3], k: 5).isEmpty)
        try index.add(try Matrix(rowArrays: [[0, 0, 0], [1, 1, 1], [5, 5, 5]]), ids: [10, 20, 30])
        let r = try index.search([0.9, 1, 1], k: 5)
        #expect(r.map(\.id) == [20, 10, 30])
    }

    @Test("bad input is an error naming the problem")
    func badInput() throws {
        #expect(throws: HNSWError.self) { try HNSWIndex(dimension: 0) }
        #expect(throws: HNSWError.self) { try HNSWIndex(dimension: 4, parameters: .init(M: 1)) }
        let index = try HNSWIndex(dimension: 2)
        try index.add(try Matrix(rowArrays: [[0, 0], [1, 1]]), ids: [1, 2])
        #expect(throws: HNSWError.dimensionMismatch(expected: 2, got: 3)) { try index.search([1, 2, 3], k: 1) }
        #expect(throws: HNSWError.nonFinite(row: 0, column: 1)) { try index.search([1, .nan], k: 1) }
        #expect(throws: HNSWError.self) { try index.search([1, 2], k: 0) }
        #expect(throws: HNSWError.duplicateLabel(2)) { try index.add(try Matrix(rowArrays: [[3, 3]]), ids: [2]) }
        #expect(throws: HNSWError.nonFinite(row: 0, column: 0)) { try index.add(try Matrix(rowArrays: [[.infinity, 3]]), ids: [5]) }
        #expect(throws: HNSWError.unknownLabel(99)) { try index.remove(99) }
        #expect(index.count == 2)
    }
}

func naiveDotD(_ a: [Float], _ b: [Float]) -> Double {
    var s = 0.0
    for i in 0..<min(a.count, b.count) { s += Double(a[i]) * Double(b[i]) }
    return s
}

/// Calls `check(returned distance, exact distance, |q|^2 + |x|^2)` for every result of a
/// k-per-query search, computing the exact float distance of the metric (rows normalized
/// for cosine).
func forEachReturned(_ got: (ids: [Int64], distances: [Float]), k: Int, base: Matrix, queries: Matrix, metric: Metric,
                     _ check: (Float, Float, Double) -> Void) {
    var b = base, q = queries
    if metric == .cosine { b.normalizeRows(); q.normalizeRows() }
    for qi in 0..<queries.rows {
        for j in 0..<k {
            let id = Int(got.ids[qi * k + j])
            let want = b.row(id).withUnsafeBufferPointer { x in q.row(qi).withUnsafeBufferPointer { metric.distance($0.baseAddress!, x.baseAddress!, base.columns) } }
            let norms = q.row(qi).reduce(0) { $0 + Double($1 * $1) } + b.row(id).reduce(0) { $0 + Double($1 * $1) }
            check(got.distances[qi * k + j], want, norms)
        }
    }
}
