import Foundation
import Testing
import Persistence
import _FunnelKernels

@Suite("Funnel container files")
struct FunnelFileTests {
    @Test("CRC-32C matches the standard check value and the software path")
    func crc() {
        let s = Array("123456789".utf8)
        #expect(fk_crc32c(0, s, s.count) == 0xE306_9283)
        // Incremental equals one-shot.
        let a = fk_crc32c(0, s, 4)
        #expect(s.withUnsafeBufferPointer { fk_crc32c(a, $0.baseAddress! + 4, 5) } == 0xE306_9283)
    }

    @Test("write then read returns the payload; version and magic are checked")
    func roundTrip() throws {
        let path = NSTemporaryDirectory() + "funnel-ff-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try FunnelFile.write(to: path, magic: "TESTFILE", version: 3) { w in
            w.write(UInt64(42))
            w.write(array: [Float(1.5), 2.5])
            w.write(string: "héllo")
        }
        var (v, r) = try FunnelFile.read(path, magic: "TESTFILE", versions: 1...3)
        #expect(v == 3)
        #expect(try r.read(UInt64.self, "n") == 42)
        #expect(try r.readArray(Float.self, "a", maxCount: 10) == [1.5, 2.5])
        #expect(try r.readString("s") == "héllo")
        #expect(r.remaining == 0)
        #expect(throws: PersistenceError.self) { try FunnelFile.read(path, magic: "OTHERFIL", versions: 1...3) }
        #expect(throws: PersistenceError.self) { try FunnelFile.read(path, magic: "TESTFILE", versions: 4...5) }
        // A lying count inside the payload is caught by the reader.
        var (_, r2) = try FunnelFile.read(path, magic: "TESTFILE", versions: 1...3)
        #expect(throws: PersistenceError.self) { try r2.readArray(Float.self, "a", maxCount: 1) }
    }

    @Test("a streamed payload gives the same file as one assembled in memory; a wrong length is refused and leaves nothing")
    func streamed() throws {
        let dir = NSTemporaryDirectory() + "funnel-ffs-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let big = (0..<300_000).map { Float($0) * 0.5 }   // past the writer's 1 MiB buffer
        try FunnelFile.write(to: dir + "/a", magic: "TESTFILE", version: 2) { w in
            w.write(UInt64(7))
            big.withUnsafeBytes { w.write(raw: $0) }
            w.write(Float(3))
        }
        let length = 8 + big.count * 4 + 4
        try FunnelFile.write(to: dir + "/b", magic: "TESTFILE", version: 2, payloadLength: length) { w in
            try w.write(UInt64(7))
            try big.withUnsafeBytes { try w.write(raw: $0) }
            try w.write(Float(3))
        }
        #expect(FileManager.default.contents(atPath: dir + "/a") == FileManager.default.contents(atPath: dir + "/b"))
        #expect(throws: PersistenceError.self) {
            try FunnelFile.write(to: dir + "/c", magic: "TESTFILE", version: 2, payloadLength: length + 1) { w in try w.write(UInt64(7)) }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["a", "b"])
    }

    @Test("a failed atomic write names the file asked for, not its temporary")
    func errorNamesTarget() {
        let target = "/no/such/folder/model.fnl"
        #expect(throws: PersistenceError.io(path: target, operation: "create", errno: ENOENT)) {
            try AtomicFile.write([1, 2, 3], to: target)
        }
    }
}

