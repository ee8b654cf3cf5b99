import Foundation
import Persistence
import PostgresLog
import Testing

/// The shared change log against a real PostgreSQL server: `FUNNEL_TEST_POSTGRES` names it
/// (`tools/test` starts one with `tools/postgres`). Without it these tests are skipped, unless
/// `FUNNEL_REQUIRE_POSTGRES=1` says the server must be there.
enum TestServer {
    static let url = ProcessInfo.processInfo.environment["FUNNEL_TEST_POSTGRES"]
    static let required = ProcessInfo.processInfo.environment["FUNNEL_REQUIRE_POSTGRES"] == "1"
}

@Suite(.serialized, .enabled(if: TestServer.url != nil || TestServer.required, "FUNNEL_TEST_POSTGRES names no PostgreSQL server"))
struct PostgresChangeLogTests {
    static var url: String? { TestServer.url }

    /// What a replica's consumer saw, in order.
    final class Seen: @unchecked Sendable {
        private let lock = NSLock()
        private var records: [ChangeRecord] = []
        func add(_ batch: [ChangeRecord]) { lock.withLock { records.append(contentsOf: batch) } }
        var all: [ChangeRecord] { lock.withLock { records } }
    }

    static func table(_ name: String) -> String { "test_\(name)_\(UInt32.random(in: 0...UInt32.max))" }

    static func open(_ table: String, replica: String, poll: Duration = .milliseconds(200)) async throws -> PostgresChangeLog {
        guard let url else { throw PostgresChangeLogError.invalid("FUNNEL_REQUIRE_POSTGRES=1 but FUNNEL_TEST_POSTGRES names no server") }
        return try await PostgresChangeLog.open(url: url, table: table, replica: replica, poll: poll)
    }

    /// Waits until `seen` has `count` records (the other replica learns of writes on its own).
    static func settle(_ seen: Seen, count: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while seen.all.count < count && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
    }

    @Test("Two replicas writing at once: both apply the same gapless sequence, each write once, where its append said")
    func twoReplicasAgree() async throws {
        let table = Self.table("agree")
        let a = try await Self.open(table, replica: "a"), b = try await Self.open(table, replica: "b")
        defer { a.close(); b.close() }
        let seenA = Seen(), seenB = Seen()
        a.follow { seenA.add($0) }
        b.follow { seenB.add($0) }
        let perWriter = 40, writers = 3
        // Each writer task appends its payloads one after another; six of them race, on two replicas.
        let acknowledged = try await withThrowingTaskGroup(of: [(UInt64, [UInt8])].self) { group in
            for (name, log, seen) in [("a", a, seenA), ("b", b, seenB)] {
                for w in 0..<writers {
                    group.addTask {
                        var out = [(UInt64, [UInt8])]()
                        for i in 0..<perWriter {
                            let payload = Array("\(name)-\(w)-\(i)".utf8)
                            let s = try await log.append(payload)
                            // Read-your-writes: the replica that took it has applied it.
                            #expect(seen.all.contains { $0.sequence == s })
                            out.append((s, payload))
                        }
                        return out
                    }
                }
            }
            var all = [(UInt64, [UInt8])]()
            for try await part in group { all += part }
            return all
        }
        let total = 2 * writers * perWriter
        try await Self.settle(seenA, count: total)
        try await Self.settle(seenB, count: total)
        let (ra, rb) = (seenA.all, seenB.all)
        #expect(ra.map(\.sequence) == Array(1...UInt64(total)))
        #expect(ra == rb)
        let bySequence = Dictionary(uniqueKeysWithValues: acknowledged.map { ($0.0, $0.1) })
        #expect(bySequence.count == total)  // no two appends were given one sequence
        for r in ra { #expect(bySequence[r.sequence] == r.payload) }
        #expect(a.applied == UInt64(total) && b.applied == UInt64(total))

        // A replica started later reads it all back at open, in the same order.
        let c = try await Self.open(table, replica: "c")
        defer { c.close() }
        #expect(c.recovered == ra)
    }

    @Test("A restarted replica gets what was written while it was down, after what it had")
    func catchesUp() async throws {
        let table = Self.table("catchup")
        let a = try await Self.open(table, replica: "a")
        defer { a.close() }
        a.follow { _ in }
        for i in 0..<5 { _ = try await a.append(Array("first-\(i)".utf8)) }
        var b: PostgresChangeLog? = try await Self.open(table, replica: "b")
        #expect(b!.recovered.count == 5)
        b!.close()
        b = nil
        for i in 0..<7 { _ = try await a.append(Array("while-down-\(i)".utf8)) }
        let again = try await Self.open(table, replica: "b")
        defer { again.close() }
        let seen = Seen()
        #expect(again.recovered.count == 12)
        again.follow { seen.add($0) }
        _ = try await a.append(Array("after".utf8))
        try await Self.settle(seen, count: 1)
        #expect(seen.all.map(\.sequence) == [13])
        #expect(seen.all.first?.payload == Array("after".utf8))
        // A reader (funnel retrain --from-log) gets the same records, and is no replica.
        let url = try #require(Self.url)
        let read = try await PostgresChangeLog.read(url: url, table: table)
        #expect(read.map(\.sequence) == Array(1...13) && read.prefix(12) == again.recovered[...])
        let missing = Self.table("missing")
        do {
            _ = try await PostgresChangeLog.read(url: url, table: missing)
            Issue.record("a missing table was read")
        } catch {
            #expect("\(error)".contains(missing), "\(error)")
        }
    }

    @Test("Compaction deletes what it does not keep, in one step; replicas, late followers and readers take the gaps; no sequence is handed out twice")
    func compaction() async throws {
        let table = Self.table("compact")
        let a = try await Self.open(table, replica: "a")
        defer { a.close() }
        let seenA = Seen()
        a.follow { seenA.add($0) }
        _ = try await a.append(Array("r1".utf8))
        // A replica that has applied only 1 and follows after the compaction.
        let late = try await Self.open(table, replica: "late")
        defer { late.close() }
        #expect(late.recovered.map(\.sequence) == [1])
        for i in 2...10 { _ = try await a.append(Array("r\(i)".utf8)) }
        let b = try await Self.open(table, replica: "b")
        defer { b.close() }
        let seenB = Seen()
        b.follow { seenB.add($0) }

        // Keeping a row it was not given is refused, and nothing changes.
        do {
            _ = try await a.compact(through: 8) { _ in [ChangeRecord(sequence: 9, payload: [])] }
            Issue.record("a compaction kept a row past its end")
        } catch let e as PostgresChangeLogError { #expect("\(e)".contains("sequence 9"), "\(e)") }
        let url = try #require(Self.url)
        #expect(try await PostgresChangeLog.read(url: url, table: table).count == 10)
        do {
            _ = try await a.compact(through: 11) { $0 }
            Issue.record("a compaction went past the last sequence")
        } catch let e as PostgresChangeLogError { #expect("\(e)".contains("last sequence is 10"), "\(e)") }

        // Through 8, keeping 2 and 5 (the closure sees exactly the rows 1...8, in order).
        let given = Seen()
        let done = try await a.compact(through: 8) { rows in given.add(rows); return rows.filter { $0.sequence == 2 || $0.sequence == 5 } }
        #expect(given.all.map(\.sequence) == Array(1...8) && given.all.allSatisfy { $0.payload == Array("r\($0.sequence)".utf8) })
        #expect(done.recordsBefore == 10 && done.recordsAfter == 4 && done.prefix.map(\.sequence) == [2, 5])
        #expect(try await PostgresChangeLog.read(url: url, table: table).map(\.sequence) == [2, 5, 9, 10])
        // Both replicas go on, and agree.
        #expect(try await b.append(Array("r11".utf8)) == 11)
        try await Self.settle(seenA, count: 11)
        #expect(seenA.all.map(\.sequence) == Array(1...11) && seenB.all.map(\.sequence) == [11])
        // The late follower reads the gaps below the compaction's end.
        let seenLate = Seen()
        late.follow { seenLate.add($0) }
        try await Self.settle(seenLate, count: 5)
        #expect(seenLate.all.map(\.sequence) == [2, 5, 9, 10, 11])

        // Compacted down to nothing: the next sequence continues after the end, not after what is left.
        for i in 12...13 { _ = try await a.append(Array("r\(i)".utf8)) }
        let all = try await a.compact(through: 13) { _ in [] }
        #expect(all.recordsBefore == 7 && all.recordsAfter == 0)
        #expect(try await b.append(Array("r14".utf8)) == 14)
        let fresh = try await Self.open(table, replica: "c")
        defer { fresh.close() }
        #expect(fresh.recovered.map(\.sequence) == [14])
        try await Self.settle(seenA, count: 14)
        #expect(seenA.all.map(\.sequence) == Array(1...14))
    }

    @Test("A table with a hole in its sequences is refused at open, naming the table and the sequence")
    func gapRefused() async throws {
        let table = Self.table("gap")
        let a = try await Self.open(table, replica: "a")
        a.follow { _ in }
        for i in 0..<3 { _ = try await a.append(Array("x\(i)".utf8)) }
        a.close()
        // Deleting row 2 by hand breaks the log; psql does it as an operator would.
        let psql = Process()
        psql.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        psql.arguments = ["psql", Self.url!, "-qc", "DELETE FROM \(table) WHERE seq = 2"]
        try psql.run()
        psql.waitUntilExit()
        try #require(psql.terminationStatus == 0)
        do {
            _ = try await Self.open(table, replica: "b")
            Issue.record("a log with a gap was opened")
        } catch let e as PostgresChangeLogError {
            #expect("\(e)".contains(table) && "\(e)".contains("sequence 3 after 1"))
        }
    }

    @Test("Bad URLs and table names are refused before connecting, naming what is wrong",
          arguments: [("mysql://u@h/db", "t", "is not postgres://"), ("postgres://h/db", "t", "names no user"),
                      ("postgres://u@h/", "t", "names no database"), ("postgres://u@h/db?sslmode=maybe", "t", "sslmode 'maybe'"),
                      ("postgres://u@h/db?user=x", "t", "unknown parameter 'user'"), ("postgres://u@h/db", "Bad-Name", "table name 'Bad-Name'"),
                      ("postgres://u@h/db", "t; DROP TABLE x", "must match")])
    func badSettings(url: String, table: String, message: String) async throws {
        do {
            _ = try await PostgresChangeLog.open(url: url, table: table, replica: "r")
            Issue.record("opened \(url) \(table)")
        } catch let e as PostgresChangeLogError {
            guard case .invalid = e else { Issue.record("\(e) is not .invalid"); return }
            #expect("\(e)".contains(message), "\(e)")
        }
    }

    @Test("A password never shows in the log's location")
    func redacted() async throws {
        guard let url = Self.url else { return }
        let withPassword = url.replacingOccurrences(of: "funnel@", with: "funnel:s3cret@")
        let log = try await PostgresChangeLog.open(url: withPassword, table: Self.table("redact"), replica: "r")
        defer { log.close() }
        #expect(!log.location.contains("s3cret") && log.location.contains("***"))
    }
}
