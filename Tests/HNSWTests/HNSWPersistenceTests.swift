import _TestSupport
import Foundation
import Testing
@testable import HNSW
import LinearAlgebra
import Persistence
import _FunnelKernels

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

    @Test("an int8 index saved in format version 1 (one scale, another per-item term) still loads and answers the same",
          arguments: [false, true])
    func int8VersionOne(mmap: Bool) throws {
        let dir = TempDir(); defer { dir.cleanup() }
        // Every dimension spans [-1, 1]: the per-dimension scales all equal version 1's one scale.
        var base = clustered(600, 8, seed: 4)
        for r in 0..<base.rows { for j in 0..<8 { base[r, j] = max(-1, min(1, base[r, j] / 4)) } }
        for j in 0..<8 { base[0, j] = -1; base[1, j] = 1 }
        let index = try HNSWIndex(dimension: 8, parameters: .init(metric: .l2, M: 8, efConstruction: 48, quantization: .int8))
        try index.add(base, threads: 1)
        let quantizer = try #require(index.quantizer)
        #expect(Set(quantizer.scales).count == 1)
        // Version 1's layout, written out here as its save did: the same fields, then one
        // scale, and sum offset * code where version 2 keeps |x^|^2.
        var p = PayloadWriter()
        p.write(UInt64(8)); p.write(string: "l2"); p.write(UInt64(8)); p.write(UInt64(48)); p.write(string: "int8")
        p.write(index.parameters.seed); p.write(UInt64(index.slotCount)); p.write(UInt64(0)); p.write(index.insertSequence)
        p.write(fk_load_acquire_u64(index.entry))
        p.write(raw: UnsafeRawBufferPointer(start: index.levels, count: index.slotCount * 4))
        p.write(raw: UnsafeRawBufferPointer(start: index.labels, count: index.slotCount * 8))
        p.write(raw: UnsafeRawBufferPointer(start: index.deletedFlags, count: index.slotCount))
        let pad = (64 - (20 + p.bytes.count + 8) % 64) % 64
        p.write(UInt64(pad))
        [UInt8](repeating: 0, count: pad).withUnsafeBytes { p.write(raw: $0) }
        var blocks = [UInt8](UnsafeRawBufferPointer(start: index.level0, count: index.slotCount * index.blockSize))
        for i in 0..<index.slotCount {
            let codes = index.vectorBytesPointer(i).assumingMemoryBound(to: UInt8.self)
            var old: Float = 0
            for j in 0..<8 { old += quantizer.offsets[j] * Float(codes[j]) }
            withUnsafeBytes(of: old) { for b in 0..<4 { blocks[i * index.blockSize + index.linkWords0 * 4 + index.codeBytes + b] = $0[b] } }
        }
        blocks.withUnsafeBytes { p.write(raw: $0) }
        for node in 0..<index.slotCount where index.levels[node] > 0 {
            p.write(raw: UnsafeRawBufferPointer(start: index.upperLinks[node]!, count: Int(index.levels[node]) * index.linkWords * 4))
        }
        for o in quantizer.offsets { p.write(o) }
        p.write(quantizer.scales[0])
        p.write(raw: UnsafeRawBufferPointer(start: index.floats!, count: index.slotCount * 8 * 4))
        let path = dir.file("v1.hnsw")
        try FunnelFile.write(to: path, magic: HNSWIndex.magic, version: 1) { $0 = p }

        let loaded = try HNSWIndex.load(from: path, mmap: mmap)
        #expect(loaded.quantizer == quantizer)
        let queries = clustered(30, 8, seed: 4, stream: 2)
        let a = try index.searchLabels(queries, k: 5, ef: 24), b = try loaded.searchLabels(queries, k: 5, ef: 24)
        #expect(a.ids == b.ids)
        #expect(a.distances == b.distances)
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

    @Test("a streamed save of a loaded index writes the same bytes, for every storage", arguments: HNSWIndex.Quantization.allCases)
    func resaveIsIdentical(quantization: HNSWIndex.Quantization) throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let (index, _) = try built(quantization)
        try index.save(to: dir.file("a.hnsw"))
        for mmap in [false, true] {
            try HNSWIndex.load(from: dir.file("a.hnsw"), mmap: mmap).save(to: dir.file("b.hnsw"))
            #expect(FileManager.default.contents(atPath: dir.file("a.hnsw")) == FileManager.default.contents(atPath: dir.file("b.hnsw")))
        }
    }

    @Test("saves taken while other threads insert and search each load as a whole snapshot")
    func saveDuringInserts() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let base = clustered(3_000, 12, seed: 21)
        let index = try HNSWIndex(dimension: 12, parameters: .init(metric: .l2, M: 8, efConstruction: 32))
        try index.add(base.rows(0..<500), ids: (0..<500).map { UInt64($0) })
        final class Stop: @unchecked Sendable {
            let lock = NSLock()
            var value = false
            var isSet: Bool { lock.withLock { value } }
            func set() { lock.withLock { value = true } }
        }
        let stop = Stop()
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            for b in 0..<25 {
                let lo = 500 + b * 100
                try! index.add(base.rows(lo..<(lo + 100)), ids: (lo..<(lo + 100)).map { UInt64($0) }, threads: 1)
                if b % 5 == 4 { try! index.remove(UInt64(b)) }
            }
        }
        DispatchQueue.global().async(group: group) {
            while !stop.isSet { _ = try! index.searchLabels(base.rows(0..<8), k: 5, ef: 16) }
        }
        var counts = [Int]()
        for i in 0..<6 {
            let path = dir.file("s\(i).hnsw")
            try index.save(to: path)
            let loaded = try HNSWIndex.load(from: path)   // checks every link, level, flag and count
            counts.append(loaded.count)
            // A snapshot: every item it holds has the vector it was added with.
            let probe = try loaded.searchLabels(base.rows(600..<601), k: 1, ef: 16)
            if loaded.contains(600) { #expect(probe.ids[0] == 600) }
        }
        stop.set()
        group.wait()
        #expect(counts == counts.sorted())
        try index.save(to: dir.file("last.hnsw"))
        #expect(try HNSWIndex.load(from: dir.file("last.hnsw")).count == 3_000 - 5)
    }
}

