import _TestSupport
import Datasets
import Foundation
import Testing
@testable import HNSW
import LinearAlgebra

/// Float rows kept alive outside the index, as a mapped file would be.
final class Rows: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int
    init(_ m: Matrix) {
        count = m.storage.count
        pointer = .allocate(capacity: count)
        pointer.initialize(from: m.storage, count: count)
    }
    deinit { pointer.deallocate() }
}

@Suite("fp16 search re-scored with float rows outside the index")
struct HNSWRescoreTests {
    /// Exact top-k by float distance, brute force (the oracle).
    func unit(_ v: [Float]) -> [Float] {
        let n: Float = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return v.map { $0 / n }
    }

    func exact(_ base: Matrix, _ q: [Float], k: Int, metric: Metric) -> [(Int, Float)] {
        let qn = metric == .cosine ? unit(q) : q
        var all = [(Int, Float)]()
        for r in 0..<base.rows {
            let x = metric == .cosine ? unit(Array(base.row(r))) : Array(base.row(r))
            all.append((r, metric.distance(qn, x, x.count)))
        }
        all.sort { $0.1 != $1.1 ? $0.1 < $1.1 : $0.0 < $1.0 }
        return Array(all.prefix(k))
    }

    @Test("with a beam over every item, answers are the exact float top k, ids and distances", arguments: [Metric.cosine, .l2, .innerProduct])
    func exactAtFullBeam(metric: Metric) throws {
        let base = clustered(600, 24, seed: 31)
        let index = try HNSWIndex(dimension: 24, parameters: .init(metric: metric, M: 8, efConstruction: 40, quantization: .fp16))
        try index.add(base, ids: (0..<600).map { UInt64($0) })
        let rows = Rows(base)
        let queries = clustered(20, 24, seed: 32, stream: 9)
        let halves = try index.searchLabels(queries, k: 10, ef: 600, threads: 1)
        try index.rescore(with: RescoreSource(first: rows.pointer, rows: 600, dimension: 24, owner: rows))
        let floats = try index.searchLabels(queries, k: 10, ef: 600, threads: 1)
        var halfDiffers = false
        for q in 0..<queries.rows {
            let all = exact(base, Array(queries.row(q)), k: base.rows, metric: metric)
            let byID = Dictionary(uniqueKeysWithValues: all)
            for j in 0..<10 {
                // Every answer carries its exact float distance, in order.
                let id = Int(floats.ids[q * 10 + j]), d = floats.distances[q * 10 + j]
                #expect(abs(d - byID[id]!) <= 1e-4 * max(1, abs(byID[id]!)), "query \(q) rank \(j)")
                if j > 0 { #expect(floats.distances[q * 10 + j - 1] <= d) }
                // A full beam reaches every item under l2 and cosine (inner product graphs may
                // leave some unreachable): the answer is then the exact top k.
                if metric != .innerProduct { #expect(id == all[j].0, "query \(q) rank \(j)") }
                let h = Int(halves.ids[q * 10 + j])
                if abs(halves.distances[q * 10 + j] - byID[h]!) > 1e-6 * max(1, abs(byID[h]!)) { halfDiffers = true }
            }
        }
        // Without the rows, fp16 distances are the half vectors' (the re-scoring did something).
        #expect(halfDiffers)
        // Detached: the half distances again.
        try index.rescore(with: nil)
        #expect(try index.searchLabels(queries, k: 10, ef: 600, threads: 1).distances == halves.distances)
    }

    @Test("an .fvecs file maps as a source; other storage, another dimension, missing rows and bad files are refused")
    func sourcesAndRefusals() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let base = clustered(300, 16, seed: 4)
        try VectorFile.writeFvecs(base, to: dir.file("b.fvecs"))
        let source = try RescoreSource(fvecs: dir.file("b.fvecs"))
        #expect(source.rows == 300 && source.dimension == 16)
        #expect(Array(UnsafeBufferPointer(start: source.row(123), count: 16)) == Array(base.row(123)))

        let fp16 = try HNSWIndex(dimension: 16, parameters: .init(metric: .l2, M: 8, efConstruction: 32, quantization: .fp16))
        try fp16.add(base, ids: (0..<300).map { UInt64($0) })
        try fp16.rescore(with: source)
        let a = try fp16.searchLabels(base.rows(0..<5), k: 3, ef: 64, threads: 1)
        #expect(a.ids[0] == 0 && a.distances[0] == 0)  // an item's own row is at distance 0 exactly

        try fp16.add(base.rows(0..<1), ids: [5_000])   // past the rows: scored by its half vector, never read out of bounds
        _ = try fp16.searchLabels(base.rows(0..<5), k: 3, ef: 64, threads: 1)
        let late = try HNSWIndex(dimension: 16, parameters: .init(metric: .l2, M: 8, efConstruction: 32, quantization: .fp16))
        try late.add(base.rows(0..<10), ids: (0..<10).map { UInt64($0) + 295 })
        #expect(throws: HNSWError.self) { try late.rescore(with: source) }   // labels 300...304 have no rows

        for q in [HNSWIndex.Quantization.none, .int8] {
            let other = try HNSWIndex(dimension: 16, parameters: .init(metric: .l2, M: 8, efConstruction: 32, quantization: q))
            #expect(throws: HNSWError.self) { try other.rescore(with: source) }
        }
        let wide = try HNSWIndex(dimension: 17, parameters: .init(metric: .l2, M: 8, efConstruction: 32, quantization: .fp16))
        #expect(throws: HNSWError.self) { try wide.rescore(with: source) }

        var bytes = [UInt8](FileManager.default.contents(atPath: dir.file("b.fvecs"))!)
        bytes[7 * 68] = 9   // record 7 claims dimension 9
        FileManager.default.createFile(atPath: dir.file("bad.fvecs"), contents: Data(bytes))
        #expect(throws: HNSWError.self) { try RescoreSource(fvecs: dir.file("bad.fvecs")) }
        FileManager.default.createFile(atPath: dir.file("cut.fvecs"), contents: Data(bytes.dropLast(5)))
        #expect(throws: HNSWError.self) { try RescoreSource(fvecs: dir.file("cut.fvecs")) }
    }
}
