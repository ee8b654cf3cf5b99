import Foundation
import Testing
import Persistence

@Suite("Write-ahead log")
struct WriteAheadLogTests {
    func temp() -> String { NSTemporaryDirectory() + "funnel-wal-\(UUID().uuidString)" }

    @Test("records written by many threads come back in sequence order after reopening, each once")
    func roundTrip() throws {
        let path = temp()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let applied = Locked<[UInt64]>([])
        do {
            let log = try WriteAheadLog(path: path) { batch in applied.mutate { $0 += batch.map(\.sequence) } }
            DispatchQueue.concurrentPerform(iterations: 200) { i in
                _ = try! log.append(Array("record \(i)".utf8))
            }
            #expect(log.lastSequence == 200)
        }
        // onDurable saw every record once, in order, before its writer returned.
        #expect(applied.value == Array(1...200))
        let reopened = try WriteAheadLog(path: path)
        #expect(reopened.recovered.map(\.sequence) == Array(1...200))
        #expect(Set(reopened.recovered.map { String(decoding: $0.payload, as: UTF8.self) }) == Set((0..<200).map { "record \($0)" }))
        #expect(reopened.repaired == nil)
        #expect(try reopened.append(Array("next".utf8)) == 201)
    }

    @Test("a second writer on the same log is refused while the first holds it, after a compaction too; freed, the log opens again")
    func oneWriter() throws {
        let path = temp()
        defer { try? FileManager.default.removeItem(atPath: path) }
        func refused() -> Bool {
            do { _ = try WriteAheadLog(path: path); return false } catch let e as PersistenceError {
                if case .inUse = e { return "\(e)".contains(path) }
                return false
            } catch { return false }
        }
        do {
            let log = try WriteAheadLog(path: path)
            try log.append(Array("a".utf8))
            #expect(refused())
            try log.rewrite(through: 1, prefix: [])
            #expect(refused())  // the rewritten file took the lock with it
            #expect(try log.append(Array("b".utf8)) == 2)
            #expect(try WriteAheadLog.read(path).map(\.sequence) == [2])  // a reader takes no lock
        }
        let again = try WriteAheadLog(path: path)
        #expect(again.recovered.map(\.sequence) == [2])
        // Another process is refused too (flock is per open file, not per process).
        let other = Process()
        other.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
        other.arguments = ["-n", path, "true"]
        try other.run()
        other.waitUntilExit()
        #expect(other.terminationStatus != 0)
    }

    @Test("a torn tail (a record cut anywhere inside) is cut off and reported; earlier records stay")
    func tornTail() throws {
        let path = temp()
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            let log = try WriteAheadLog(path: path)
            for i in 0..<5 { try log.append(Array(repeating: UInt8(i), count: 100)) }
        }
        let full = try Data(contentsOf: URL(fileURLWithPath: path))
        let recordSize = 16 + 100
        // Cut the last record at every length from 1 byte to all but one byte.
        for keep in [1, 15, 16, 17, 60, recordSize - 1] {
            let cut = full.prefix(16 + 4 * recordSize + keep)
            try cut.write(to: URL(fileURLWithPath: path))
            let log = try WriteAheadLog(path: path)
            #expect(log.recovered.count == 4)
            #expect(log.repaired?.offset == 16 + 4 * recordSize)
            #expect(log.repaired?.bytes == keep)
            #expect(try log.append([9]) == 5)  // the next write continues after the good records
        }
    }

    @Test("a damaged record followed by good ones is refused, not cut (acknowledged writes would be lost)")
    func damagedMiddle() throws {
        let path = temp()
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            let log = try WriteAheadLog(path: path)
            for i in 0..<5 { try log.append(Array(repeating: UInt8(i), count: 100)) }
        }
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[16 + 116 + 40] ^= 0xFF  // inside record 2's payload
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect(throws: PersistenceError.self) { try WriteAheadLog(path: path) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)).count == bytes.count)  // untouched
    }

    @Test("a file that is not a log is refused by name")
    func notALog() throws {
        let path = temp()
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("user,item\n1,2\n".utf8).write(to: URL(fileURLWithPath: path))
        do {
            _ = try WriteAheadLog(path: path)
            Issue.record("a CSV file opened as a log")
        } catch {
            #expect("\(error)".contains("not a Funnel write-ahead log"))
        }
    }
}

final class Locked<T>: @unchecked Sendable {
    private var v: T
    private let lock = NSLock()
    init(_ v: T) { self.v = v }
    var value: T { lock.withLock { v } }
    func mutate(_ f: (inout T) -> Void) { lock.withLock { f(&v) } }
}
