import Foundation
import Testing
@testable import HNSW
import LinearAlgebra

@Suite("HNSW files")
struct HNSWPersistenceTests {
    func built(_ quantization: HNSWIndex.Quantization) throws -> (HNSWIndex, Matrix) {
        let base = clustered(800, 12, seed: 13)
        let index = try HNSWIndex(dimension: 12, parameters: .init(metric: .cosine, M: 8, efConstruction: 48, quantization: quantization))
        try index.add(base, ids: (0..<800).map { UInt64($0) * 7 })
        for i in 0..<50 { try index.remove(UInt64(i) * 7) }
        return (index, base)
    }

    @Test("save then load (copied or memory-mapped) answers identically", arguments: HNSWIndex.Quantization.allCases, [false, true])
    func roundTrip(quantization: HNSWIndex.Quantization, mmap: Bool) throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let (index, base) = try built(quantization)
        try index.save(to: dir.file("i.hnsw"))
        let loaded = try HNSWIndex.load(from: dir.file("i.hnsw"), mmap: mmap)
        #expect(loaded.count == index.count)
        #expect(loaded.parameters == index.parameters)
        let queries = base.rows(0..<40)
        let a = try index.searchLabels(queries, k: 5, ef: 32), b = try loaded.searchLabels(queries, k: 5, ef: 32)
        #expect(a.ids == b.ids)
        #expect(a.distances == b.distances)
        if mmap {
            #expect(throws: HNSWError.readOnly) { try loaded.add(base.rows(0..<1), ids: [1]) }
        } else {
            try loaded.add(base.rows(0..<1), ids: [1])
            #expect(loaded.contains(1))
        }
    }

    @Test("truncated, corrupted and foreign files give a clear error, never a crash")
    func corruption() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let (index, _) = try built(.none)
        let path = dir.file("i.hnsw")
        try index.save(to: path)
        let good = Array(FileManager.default.contents(atPath: path)!)
        var rng = SeededGenerator(seed: 1)
        let bad = dir.file("bad.hnsw")
        // Cuts at many places, including inside the header.
        for cut in [0, 1, 7, 8, 12, 19, 20, 27, 100] + (0..<40).map({ _ in rng.nextInt(below: good.count) }) {
            FileManager.default.createFile(atPath: bad, contents: Data(good.prefix(cut)))
            #expect(throws: HNSWError.self) { try HNSWIndex.load(from: bad) }
        }
        // Single flipped bytes anywhere: the checksum catches them.
        for _ in 0..<60 {
            var b = good
            b[rng.nextInt(below: b.count)] ^= UInt8(1 + rng.nextInt(below: 255))
            FileManager.default.createFile(atPath: bad, contents: Data(b))
            #expect(throws: HNSWError.self) { try HNSWIndex.load(from: bad) }
        }
        FileManager.default.createFile(atPath: bad, contents: Data("not an index at all, just text".utf8))
        do {
            _ = try HNSWIndex.load(from: bad)
            Issue.record("a text file loaded")
        } catch let HNSWError.corruptFile(p, reason) {
            #expect(p == bad && reason.contains("magic"))
        }
        #expect(throws: HNSWError.self) { try HNSWIndex.load(from: dir.file("missing.hnsw")) }
    }

    @Test("a failed save leaves the previous file intact")
    func atomicSave() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let (index, _) = try built(.none)
        let path = dir.file("i.hnsw")
        try index.save(to: path)
        let before = FileManager.default.contents(atPath: path)
        #expect(throws: (any Error).self) { try index.save(to: dir.file("no-such-dir/i.hnsw")) }
        #expect(FileManager.default.contents(atPath: path) == before)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".tmp-") }
        #expect(leftovers.isEmpty)
    }
}
