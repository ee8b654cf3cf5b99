import Datasets
import ExactSearch
import Foundation
import HNSW
import LinearAlgebra
import Testing

@Suite("int8 storage on hard columns")
struct HNSWQuantizationTests {
    /// Clustered base vectors with small informative values, plus the columns that break a
    /// naive scalar quantizer: zero in nearly every row, constant over the base but not over
    /// the queries, heavy-tailed; and queries reaching outside the base's range.
    static func hardData(n: Int = 3_000, queries: Int = 100, seed: UInt64 = 5) -> (base: Matrix, queries: Matrix) {
        let informative = 24, d = informative + 4
        var g = SeededGenerator(seed: seed)
        let centers = (0..<30).map { _ in (0..<informative).map { _ in Float.random(in: 0..<0.02, using: &g) } }
        func row(_ query: Bool) -> [Float] {
            let c = centers[Int.random(in: 0..<centers.count, using: &g)]
            var v = c.map { $0 + Float.random(in: -0.002..<0.002, using: &g) }
            v.append(Float.random(in: 0..<1, using: &g) < 0.01 ? 5 : 0)                 // zero in nearly every row
            v.append(query ? Float.random(in: -3..<3, using: &g) : 0.5)                  // constant over the base
            let u = Float.random(in: 0.001..<1, using: &g)
            v.append(query ? 0 : 0.001 / (u * u))                                         // heavy-tailed (1e-3 ... 1e3)
            v.append(query ? Float.random(in: 1..<2, using: &g) : Float.random(in: 0..<0.01, using: &g))  // queries outside
            _ = d
            return v
        }
        var base = Matrix(rows: n, columns: d), q = Matrix(rows: queries, columns: d)
        for r in 0..<n { let v = row(false); for j in 0..<d { base[r, j] = v[j] } }
        for r in 0..<queries { let v = row(true); for j in 0..<d { q[r, j] = v[j] } }
        return (base, q)
    }

    @Test("int8 recall follows float recall as ef grows (it must not stop below what rescoring can reach)",
          arguments: [Metric.l2, .cosine])
    func int8RecallIsNotCapped(metric: Metric) throws {
        let (base, queries) = Self.hardData()
        let k = 10
        func measure(_ quantization: HNSWIndex.Quantization, efs: [Int]) throws -> [Double] {
            let index = try HNSWIndex(dimension: base.columns, parameters: .init(metric: metric, M: 16, efConstruction: 200, quantization: quantization))
            try index.add(base, threads: 1)
            return try efs.map { ef in
                var got = [Int64]()
                for qr in 0..<queries.rows {
                    let found = try index.search(Array(queries.row(qr)), k: k, ef: ef)
                    got += found.map { Int64($0.id) } + [Int64](repeating: -1, count: k - found.count)
                }
                return try recall(got: got, k: k, queries: queries, base: base, metric: metric)
            }
        }
        let float = try measure(.none, efs: [256])[0]
        let int8 = try measure(.int8, efs: [64, 256, 1024])
        #expect(float >= 0.9, "float recall \(float)")
        // Rescoring in floats: a wider beam must bring int8 to what float reaches.
        #expect(int8[1] >= float - 0.05, "int8 recall \(int8) against float \(float)")
        #expect(int8[2] >= float - 0.02, "int8 recall \(int8) against float \(float)")
        #expect(int8[2] > int8[0] || int8[0] >= float - 0.01, "int8 recall does not grow with ef: \(int8)")
    }
}
