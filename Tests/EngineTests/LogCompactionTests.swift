import Engine
import Foundation
import Persistence
import Registry
import Synchronization
import Testing
import _TestSupport

@Suite("Log compaction") struct LogCompactionTests {
    static func record(_ sequence: UInt64, _ change: LiveChange) -> ChangeRecord {
        ChangeRecord(sequence: sequence, payload: Array(try! JSONEncoder().encode(change)))
    }

    @Test("through S: interactions dropped, each item's first and last write kept, unreadable and later records kept")
    func planner() {
        let one = [LiveInteraction(user: "u1", item: "a")]
        let records = [
            Self.record(1, .upsert(item: "a", attributes: ["title": .string("a1")])),
            Self.record(2, .interactions(one)),
            Self.record(3, .upsert(item: "b", attributes: [:])),
            Self.record(4, .upsert(item: "a", attributes: ["title": .string("a2")])),
            Self.record(5, .delete(item: "b")),
            Self.record(6, .interactions(one)),
            Self.record(7, .upsert(item: "a", attributes: ["title": .string("a3")])),
            Self.record(8, .delete(item: "c")),
            ChangeRecord(sequence: 9, payload: Array("not json".utf8)),
            Self.record(10, .interactions(one)),
            Self.record(11, .upsert(item: "a", attributes: [:])),
        ]
        // By hand: a -> 1 (first) and 7 (last); b -> 3 and 5; c -> 8; 9 unreadable; 10, 11 after S.
        #expect(LogCompaction.compacted(records, through: 9).map(\.sequence) == [1, 3, 5, 7, 8, 9, 10, 11])
        #expect(LogCompaction.compacted(records, through: 0).map(\.sequence) == records.map(\.sequence))
        #expect(LogCompaction.compacted(records, through: 100).map(\.sequence) == [1, 3, 5, 8, 9, 11])
    }

    @Test("a rewrite under concurrent appends keeps every later record; the log reopens with its gaps and goes on")
    func rewriteUnderAppends() throws {
        let dir = TempDir("funnel-compact")
        defer { dir.cleanup() }
        let path = dir.file("x.wal")
        var onDisk = [ChangeRecord]()
        do {
        let wal = try WriteAheadLog(path: path)
        for i in 1...50 { try wal.append(Array("r\(i)".utf8)) }
        let appended = Mutex<[UInt64]>([])
        let finished = DispatchSemaphore(value: 0)
        // Unowned: the block may outlive its last line, and a log it held would still be open
        // (locked) when the test opens it again below.
        DispatchQueue.global().async { [unowned wal] in
            for i in 51...250 { if let s = try? wal.append(Array("r\(i)".utf8)) { appended.withLock { $0.append(s) } } }
            finished.signal()
        }
        // Keep 10, 20, ..., 50 of the first 50.
        let prefix = stride(from: 10, through: 50, by: 10).map { ChangeRecord(sequence: UInt64($0), payload: Array("r\($0)".utf8)) }
        let kept = try wal.rewrite(through: 50, prefix: prefix)
        finished.wait()
        #expect(Array(kept.prefix(5)) == prefix)
        onDisk = try WriteAheadLog.read(path)
        #expect(onDisk.map(\.sequence) == [10, 20, 30, 40, 50] + (51...250).map { UInt64($0) })
        #expect(onDisk.allSatisfy { $0.payload == Array("r\($0.sequence)".utf8) })
        #expect(Set(appended.withLock { $0 }) == Set((51...250).map { UInt64($0) }))
        // A prefix that is not increasing, or past `through`, is refused before anything changes.
        #expect(throws: PersistenceError.self) { try wal.rewrite(through: 5, prefix: [ChangeRecord(sequence: 6, payload: [])]) }
        #expect(try WriteAheadLog.read(path).count == onDisk.count)
        }
        // Freed (its writer done), the log opens again.
        let reopened = try WriteAheadLog(path: path)
        #expect(reopened.recovered == onDisk)
        #expect(try reopened.append(Array("next".utf8)) == 251)
    }

    @Test("a compaction that drops the last records never hands their sequences out again, after a restart as well")
    func floorSurvivesRestart() throws {
        let dir = TempDir("funnel-compact")
        defer { dir.cleanup() }
        let path = dir.file("x.wal")
        do {
            let wal = try WriteAheadLog(path: path)
            for i in 1...20 { try wal.append(Array("r\(i)".utf8)) }
            // Keep 5 of the 20: 6...20 go (a retrained version folded them all).
            try wal.rewrite(through: 20, prefix: [ChangeRecord(sequence: 5, payload: Array("r5".utf8))])
            #expect(try wal.append(Array("a".utf8)) == 21)
        }
        do {
            let wal = try WriteAheadLog(path: path)
            #expect(wal.recovered.map(\.sequence) == [5, 21])
            #expect(try wal.append(Array("b".utf8)) == 22)
            // Compacted again, down to nothing: the floor is what had been issued.
            try wal.rewrite(through: 22, prefix: [])
        }
        do {
            let wal = try WriteAheadLog(path: path)
            #expect(wal.recovered.isEmpty && wal.lastSequence == 22)
            #expect(try wal.append(Array("c".utf8)) == 23)
        }
        // The header is checksummed with its floor: a flipped floor byte is refused.
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[13] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        do {
            _ = try WriteAheadLog(path: path)
            Issue.record("a header with a flipped floor byte was read")
        } catch let e as PersistenceError {
            #expect("\(e)".contains("header checksum"), "\(e)")
        }
    }

    @Test("the retrain loop ends compacted: refused while a rollback target folded less, then retired; the replay answers as the full log's")
    func afterRetrain() async throws {
        let f = try LiveRegistryFixture()
        let (w, root, registry, wal, models, live) = (f.world, f.root, f.registry, f.wal, f.models, f.live)
        defer { w.cat.remove() }
        try live.writeAndWait(.upsert(item: "n1", attributes: w.rows["i5"]!))
        try live.writeAndWait(.upsert(item: "n2", attributes: w.rows["i6"]!))
        try live.writeAndWait(.interactions([LiveInteraction(user: "u1", item: "n1", timestamp: 2_000_000_000),
                                             LiveInteraction(user: "newbie", item: "n2", timestamp: 2_000_000_000)]))
        try live.writeAndWait(.delete(item: "i7"))
        // Retrained from the log through 4, promoted; then more writes.
        try f.retrainFromLogAndPromote()
        #expect(models.refresh())
        try live.writeAndWait(.upsert(item: "n1", attributes: w.rows["i9"]!))
        try live.writeAndWait(.interactions([LiveInteraction(user: "u4", item: "n2"), LiveInteraction(user: "u4", item: "i3")]))
        try live.writeAndWait(.upsert(item: "n3", attributes: w.rows["i11"]!))
        try FileManager.default.copyItem(atPath: wal, toPath: "\(root)/full.wal")

        // v1, the rollback target, folded nothing: compacting would take its interactions.
        do {
            _ = try await live.compact()
            Issue.record("compaction went ahead past a rollback target that needs the log")
        } catch let e as RegistryError {
            #expect("\(e)".contains("v1") && "\(e)".contains("rollback target"), "\(e)")
        }
        #expect(try WriteAheadLog.read(wal).count == 7)
        let report = try await live.compact(retire: true)
        #expect(report == LogCompactionReport(through: 4, recordsBefore: 7, recordsAfter: 6, retired: ["v1"]))
        #expect(try WriteAheadLog.read(wal).map(\.sequence) == [1, 2, 4, 5, 6, 7])
        #expect(throws: RegistryError.self) { try registry.rollback("shop") }  // v1 is no rollback target now
        #expect(try live.writeAndWait(.upsert(item: "n4", attributes: w.rows["i12"]!)) == 8)

        // Oracle: the same registry replaying the full log (a copy taken before compaction,
        // plus the write after it) and the compacted one.
        let full = try WriteAheadLog.read("\(root)/full.wal") + [try WriteAheadLog.read(wal).last!]
        let fullPath = "\(w.cat.folder)/full-again.wal"
        do { try WriteAheadLog(path: fullPath).rewrite(through: UInt64.max - 1, prefix: full) }  // freed at once
        // A second server on a log is refused (the lock): `a` replays a copy of the compacted one.
        try FileManager.default.copyItem(atPath: wal, toPath: "\(root)/compacted-copy.wal")
        let a = try LiveService(models: try LiveModels(root: root, name: "shop", writable: true), logPath: "\(root)/compacted-copy.wal")
        let b = try LiveService(models: try LiveModels(root: root, name: "shop", writable: true), changeLog: try WriteAheadLog(path: fullPath))
        #expect(a.replayed == 7 && b.replayed == 8 && a.replayFailures.isEmpty && b.replayFailures.isEmpty)
        let (x, y) = (a.production, b.production)
        for item in ["n1", "n2", "n3", "n4"] {
            #expect(try x.itemRecord(item).title == y.itemRecord(item).title, "\(item)")
        }
        #expect(try x.itemRecord("n1").title == w.rows["i9"]!["title"].flatMap { if case .string(let s) = $0 { s } else { nil } })
        #expect(throws: EngineError.self) { try x.itemRecord("i7") }
        for user in ["u1", "u4", "newbie"] {
            #expect(try x.userRecord(user).interactions == y.userRecord(user).interactions, "\(user)")
            let (p, q) = (try x.recommend(user: user, k: 10).items.map(\.item), try y.recommend(user: user, k: 10).items.map(\.item))
            #expect(p.count == 10 && Set(p).intersection(q).count >= 9, "\(user): \(p) / \(q)")
        }
    }
}
