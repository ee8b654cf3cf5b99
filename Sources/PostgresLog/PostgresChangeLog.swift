import CoreMetrics
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Persistence
import PostgresNIO

/// A change log that replicas share, in a PostgreSQL table (postgres-nio).
///
/// Table `T` (created when missing): `seq bigint primary key, payload bytea, replica text,
/// committed_at timestamptz`; `T_replicas`: how far each replica has applied; and
/// `T_compactions`: each compaction's `through` sequence and record counts.
///
/// - **Writes** (any replica): a batch of pending appends goes in one transaction that first
///   takes an advisory lock on the table, reads `max(seq)` and inserts the batch after it, then
///   `NOTIFY T`. Sequences are therefore gapless and committed in order: a reader that sees
///   row `n` sees every row before it. An append is acknowledged once the row is committed
///   *and* this replica has applied it, so a writer reads its own write from the replica it
///   wrote to.
/// - **Reads** (every replica): a follower fetches the rows after the last one it applied, in
///   sequence order, and hands them to the consumer. It wakes on `LISTEN T`, on each local
///   commit, and every `poll` interval (the fallback when a notification is lost or the
///   listening connection is down). After each batch it records its position in `T_replicas`
///   and the batch's lag (commit to fetch, by the database's clock) in
///   `funnel_changelog_lag_seconds`.
///
/// How far behind a replica may be: a notification costs one round trip, so on a healthy
/// database a write is visible on every replica within a round trip plus the time to apply
/// it; with notifications lost, within `poll`. While the database is unreachable, writes are
/// refused (`PostgresChangeLogError.unavailable`), reads keep serving what was applied, and
/// the follower catches up once it is back.
///
/// A commit whose answer was lost (the connection dropped during `COMMIT`) is reported as
/// unknown: the write may be in the log. Item upserts and deletes are idempotent; a retried
/// interaction batch may count twice.
///
/// - **Compaction** (`compact(through:_:)`): in one transaction under the writers' lock, the
///   rows up to `through` that the caller does not keep are deleted and `through` is recorded
///   in `T_compactions`. Readers accept gaps at or below the highest `through` recorded (read
///   in the same statement as the rows, so they see both or neither) and nowhere else; new
///   sequences continue after both `max(seq)` and that `through`, so a sequence is never
///   handed out twice.
public final class PostgresChangeLog: CompactingChangeLog, @unchecked Sendable {
    public let location: String
    public let recovered: [ChangeRecord]
    /// The table and this replica's name in `T_replicas`.
    public let table: String, replica: String

    private let configuration: PostgresConnection.Configuration
    private let poll: Duration
    private let applyTimeout: Duration
    private let logger: Logger
    private let lockKey: Int64
    private let lock = NSLock()
    private var consumer: (@Sendable ([ChangeRecord]) -> Void)?
    private var appliedSequence: UInt64
    private var waiters: [(sequence: UInt64, deadline: ContinuousClock.Instant, done: CheckedContinuation<Void, Error>)] = []
    private var pending: [(payload: [UInt8], done: CheckedContinuation<UInt64, Error>)] = []
    private var flushing = false
    private var positionRecorded = false  // touched by the follower only
    private var writer: PostgresConnection?
    private var tasks: [Task<Void, Never>] = []
    private var failure: Error?
    private let wake: AsyncStream<Void>.Continuation
    private let wakes: AsyncStream<Void>
    private let lagTimer: CoreMetrics.Timer
    private let appliedGauge: Gauge

    /// Rows fetched at once by the follower.
    static let fetchBatch = 512

    /// Connects, creates the tables when missing and reads every record.
    /// - Parameters:
    ///   - url: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (`?host=/run/postgresql` for a
    ///     Unix socket, `?sslmode=require` for TLS).
    ///   - table: the log's table (`[a-z_][a-z0-9_]*`, at most 50 characters).
    ///   - replica: this process's name in `T_replicas`.
    ///   - poll: how often the follower looks for rows without being told.
    ///   - applyTimeout: how long an append waits for this replica to apply its committed row.
    /// - Throws: `PostgresChangeLogError` for a bad URL or table name, an unreachable database,
    ///   or a table whose sequences have a gap.
    public static func open(url: String, table: String, replica: String, poll: Duration = .seconds(1),
                            applyTimeout: Duration = .seconds(10), logger: Logger = Logger(label: "funnel.changelog")) async throws -> PostgresChangeLog {
        let (configuration, location) = try Self.configuration(url)
        try Self.check(table: table)
        let key = Self.lockKey(table)
        let connection = try await Self.connect(configuration, logger: logger, location: location)
        do {
            // Replicas starting at once would race on CREATE TABLE IF NOT EXISTS.
            try await connection.query("SELECT pg_advisory_lock(\(key))", logger: logger)
            try await connection.query(PostgresQuery(unsafeSQL: """
                CREATE TABLE IF NOT EXISTS \(table) (
                  seq bigint PRIMARY KEY CHECK (seq > 0), payload bytea NOT NULL,
                  replica text NOT NULL, committed_at timestamptz NOT NULL DEFAULT clock_timestamp())
                """), logger: logger)
            try await connection.query(PostgresQuery(unsafeSQL: """
                CREATE TABLE IF NOT EXISTS \(table)_replicas (
                  name text PRIMARY KEY, applied bigint NOT NULL, updated_at timestamptz NOT NULL)
                """), logger: logger)
            try await connection.query(PostgresQuery(unsafeSQL: """
                CREATE TABLE IF NOT EXISTS \(table)_compactions (
                  through bigint PRIMARY KEY, records_before bigint NOT NULL, records_after bigint NOT NULL,
                  compacted_at timestamptz NOT NULL DEFAULT clock_timestamp())
                """), logger: logger)
            try await connection.query("SELECT pg_advisory_unlock(\(key))", logger: logger)
            let records = try await Self.records(of: table, on: connection, logger: logger)
            return PostgresChangeLog(location: location, table: table, replica: replica, configuration: configuration, poll: poll,
                                     applyTimeout: applyTimeout, logger: logger, key: key, recovered: records, writer: connection)
        } catch {
            try? await connection.close()
            throw PostgresChangeLogError.wrap(error, doing: "opening the change log \(table) at \(location)")
        }
    }

    /// Every record of the log, read without creating, following or writing anything (for
    /// `funnel retrain --from-log`: a reader is no replica).
    /// - Throws: `PostgresChangeLogError` for a bad URL or table name, an unreachable
    ///   database, a missing table, or a gap in its sequences.
    public static func read(url: String, table: String, logger: Logger = Logger(label: "funnel.changelog")) async throws -> [ChangeRecord] {
        let (configuration, location) = try Self.configuration(url)
        try Self.check(table: table)
        let connection = try await Self.connect(configuration, logger: logger, location: location)
        do {
            // A table written by a build without compaction has no T_compactions: no gaps allowed.
            var compacted = false
            for try await known in try await connection.query(PostgresQuery(unsafeSQL: "SELECT to_regclass('\(table)_compactions') IS NOT NULL"),
                                                                 logger: logger).decode(Bool.self) { compacted = known }
            let records = try await Self.records(of: table, on: connection, logger: logger, compactions: compacted)
            try await connection.close()
            return records
        } catch {
            try? await connection.close()
            throw PostgresChangeLogError.wrap(error, doing: "reading the change log \(table) at \(location)")
        }
    }

    static func check(table: String) throws {
        guard table.count <= 50, let first = table.unicodeScalars.first, first == "_" || ("a"..."z").contains(first),
              table.unicodeScalars.allSatisfy({ $0 == "_" || ("a"..."z").contains($0) || ("0"..."9").contains($0) }) else {
            throw PostgresChangeLogError.invalid("table name '\(table)' must match [a-z_][a-z0-9_]* and have at most 50 characters")
        }
    }

    /// The table's records in order, checked for gaps (allowed at or below the compactions'
    /// highest `through`).
    private static func records(of table: String, on connection: PostgresConnection, logger: Logger, compactions: Bool = true) async throws -> [ChangeRecord] {
        var records = [ChangeRecord]()
        let rows = try await connection.query(PostgresQuery(unsafeSQL: "SELECT seq, payload, \(compactions ? compactedSQL(table) : "0::bigint") FROM \(table) ORDER BY seq"), logger: logger)
        for try await (seq, payload, compacted) in rows.decode((Int64, ByteBuffer, Int64).self) {
            records.append(try Self.record(seq, payload, after: records.last?.sequence ?? 0, compacted: compacted, table: table))
        }
        return records
    }

    /// The highest sequence a compaction went through (0: none), as a scalar subquery.
    static func compactedSQL(_ table: String) -> String {
        "(SELECT coalesce(max(through), 0) FROM \(table)_compactions)"
    }

    private init(location: String, table: String, replica: String, configuration: PostgresConnection.Configuration, poll: Duration,
                 applyTimeout: Duration, logger: Logger, key: Int64, recovered: [ChangeRecord], writer: PostgresConnection) {
        self.location = location
        self.table = table
        self.replica = replica
        self.configuration = configuration
        self.poll = poll
        self.applyTimeout = applyTimeout
        self.logger = logger
        self.lockKey = key
        self.recovered = recovered
        self.writer = writer
        appliedSequence = recovered.last?.sequence ?? 0
        (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        lagTimer = CoreMetrics.Timer(label: "funnel_changelog_lag_seconds")
        appliedGauge = Gauge(label: "funnel_changelog_applied_sequence")
        appliedGauge.record(Double(appliedSequence))
    }

    deinit { close() }

    /// The last sequence this replica applied.
    public var applied: UInt64 { lock.withLock { appliedSequence } }

    /// Stops following and writing; pending and later appends fail.
    public func close() {
        let (running, waiting, queued, connection) = lock.withLock { () -> ([Task<Void, Never>], [CheckedContinuation<Void, Error>], [CheckedContinuation<UInt64, Error>], PostgresConnection?) in
            failure = failure ?? PostgresChangeLogError.unavailable("the change log is closed")
            defer { tasks = []; waiters = []; pending = []; writer = nil }
            return (tasks, waiters.map(\.done), pending.map(\.done), writer)
        }
        wake.finish()
        for t in running { t.cancel() }
        for w in waiting { w.resume(throwing: PostgresChangeLogError.unavailable("the change log is closed")) }
        for q in queued { q.resume(throwing: PostgresChangeLogError.unavailable("the change log is closed")) }
        // postgres-nio asserts a connection is closed before it is freed: keep it until then.
        connection?.close().whenComplete { _ in withExtendedLifetime(connection) {} }
    }

    // MARK: - Following

    public func follow(_ consumer: @escaping @Sendable ([ChangeRecord]) -> Void) {
        lock.withLock {
            precondition(self.consumer == nil, "follow is called once")
            self.consumer = consumer
            tasks.append(Task { [weak self] in await self?.followLoop() })
            tasks.append(Task { [weak self] in await self?.listenLoop() })
            tasks.append(Task { [weak self] in await self?.tickLoop() })
        }
        wake.yield()
    }

    /// Fetches and applies what is new each time it is woken.
    private func followLoop() async {
        var connection: PostgresConnection?
        for await _ in wakes {
            if Task.isCancelled { break }
            do {
                if connection == nil || connection!.isClosed { connection = try await Self.connect(configuration, logger: logger, location: location) }
                try await catchUp(on: connection!)
            } catch {
                logger.warning("change log \(table): catching up failed (retrying within \(poll)): \(PostgresChangeLogError.describe(error))")
                try? await connection?.close()
                connection = nil
            }
        }
        try? await connection?.close()
    }

    private func catchUp(on connection: PostgresConnection) async throws {
        while true {
            let after = applied
            let rows = try await connection.query(PostgresQuery(unsafeSQL: """
                SELECT seq, payload, extract(epoch FROM clock_timestamp() - committed_at)::float8, \(Self.compactedSQL(table))
                FROM \(table) WHERE seq > \(after) ORDER BY seq LIMIT \(Self.fetchBatch)
                """), logger: logger)
            var batch = [ChangeRecord](), lag = 0.0
            for try await (seq, payload, age, compacted) in rows.decode((Int64, ByteBuffer, Double, Int64).self) {
                batch.append(try Self.record(seq, payload, after: batch.last?.sequence ?? after, compacted: compacted, table: table))
                lag = max(lag, age)
            }
            guard let last = batch.last?.sequence else {
                if !positionRecorded { try await record(position: after, on: connection) }
                return
            }
            lock.withLock { consumer }?(batch)
            lagTimer.recordNanoseconds(Int64(max(0, lag) * 1e9))
            appliedGauge.record(Double(last))
            let done = lock.withLock { () -> [CheckedContinuation<Void, Error>] in
                appliedSequence = last
                let (ready, rest) = (waiters.filter { $0.sequence <= last }, waiters.filter { $0.sequence > last })
                waiters = rest
                return ready.map(\.done)
            }
            for d in done { d.resume() }
            try await record(position: last, on: connection)
            if batch.count < Self.fetchBatch { return }
        }
    }

    /// This replica's position in `T_replicas` (after each batch, and once at start).
    private func record(position: UInt64, on connection: PostgresConnection) async throws {
        try await connection.query(PostgresQuery(unsafeSQL: """
            INSERT INTO \(table)_replicas (name, applied, updated_at) VALUES ($1, \(position), clock_timestamp())
            ON CONFLICT (name) DO UPDATE SET applied = EXCLUDED.applied, updated_at = EXCLUDED.updated_at
            """, binds: Self.binds(replica)), logger: logger)
        positionRecorded = true
    }

    /// LISTEN on its own connection; reconnects after a second when it drops.
    private func listenLoop() async {
        while !Task.isCancelled {
            do {
                let connection = try await Self.connect(configuration, logger: logger, location: location)
                defer { connection.close().whenComplete { _ in withExtendedLifetime(connection) {} } }
                try await connection.listen(on: table) { notifications in
                    wake.yield()  // rows committed while not listening
                    for try await _ in notifications { wake.yield() }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("change log \(table): LISTEN failed (polling every \(poll) meanwhile): \(PostgresChangeLogError.describe(error))")
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// The poll, and the appends' deadlines.
    private func tickLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: poll)
            wake.yield()
            let now = ContinuousClock.now
            let late = lock.withLock { () -> [(UInt64, CheckedContinuation<Void, Error>)] in
                let (late, rest) = (waiters.filter { $0.deadline <= now }, waiters.filter { $0.deadline > now })
                waiters = rest
                return late.map { ($0.sequence, $0.done) }
            }
            for (s, d) in late {
                d.resume(throwing: PostgresChangeLogError.unavailable("write committed as sequence \(s) but not applied on this replica within \(applyTimeout); it will be applied once the database is reachable"))
            }
        }
    }

    // MARK: - Writing

    public func append(_ payload: [UInt8]) async throws -> UInt64 {
        guard payload.count <= WriteAheadLog.maxPayload else {
            throw PostgresChangeLogError.invalid("a record of \(payload.count) bytes is over the \(WriteAheadLog.maxPayload)-byte limit")
        }
        let sequence = try await withCheckedThrowingContinuation { (c: CheckedContinuation<UInt64, Error>) in
            let start = lock.withLock { () -> Bool in
                if let failure { c.resume(throwing: failure); return false }
                pending.append((payload, c))
                defer { flushing = true }
                return !flushing
            }
            if start { Task { await self.flushLoop() } }
        }
        wake.yield()
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
            lock.withLock {
                if appliedSequence >= sequence { c.resume() } else { waiters.append((sequence, ContinuousClock.now + applyTimeout, c)) }
            }
        }
        return sequence
    }

    public func appendAndWait(_ payload: [UInt8]) throws -> UInt64 {
        final class Box: @unchecked Sendable { var result: Result<UInt64, Error>? }
        let box = Box(), done = DispatchSemaphore(value: 0)
        Task {
            do { box.result = .success(try await self.append(payload)) } catch { box.result = .failure(error) }
            done.signal()
        }
        done.wait()
        return try box.result!.get()
    }

    /// Commits what is pending, a transaction per batch (group commit), until nothing is.
    private func flushLoop() async {
        while true {
            let batch = lock.withLock { () -> [(payload: [UInt8], done: CheckedContinuation<UInt64, Error>)] in
                defer { pending.removeAll(keepingCapacity: true) }
                if pending.isEmpty { flushing = false }
                return pending
            }
            if batch.isEmpty { return }
            do {
                let first = try await commit(batch.map(\.payload))
                for (i, p) in batch.enumerated() { p.done.resume(returning: first + UInt64(i)) }
            } catch {
                for p in batch { p.done.resume(throwing: error) }
            }
        }
    }

    /// One transaction: lock, `max(seq)`, insert after it, notify. Returns the first sequence.
    private func commit(_ payloads: [[UInt8]]) async throws -> UInt64 {
        var connection = lock.withLock { writer }
        if connection == nil || connection!.isClosed {
            connection = try await Self.connect(configuration, logger: logger, location: location)
            lock.withLock { writer = connection }
        }
        let c = connection!, table = table, key = lockKey, replica = replica, logger = logger
        var began = false, first: Int64 = 0
        do {
            try await c.query("BEGIN", logger: logger)
            began = true
            try await c.query("SELECT pg_advisory_xact_lock(\(key))", logger: logger)
            var last: Int64 = 0
            // After a compaction the last rows may be gone: continue after what it went through.
            for try await m in try await c.query(PostgresQuery(unsafeSQL: "SELECT greatest(coalesce(max(seq), 0), \(Self.compactedSQL(table))) FROM \(table)"),
                                                 logger: logger).decode(Int64.self) { last = m }
            first = last + 1
            var binds = PostgresBindings()
            binds.append(payloads.indices.map { first + Int64($0) })
            binds.append(payloads.map { ByteBuffer(bytes: $0) })
            binds.append(replica)
            try await c.query(PostgresQuery(unsafeSQL: """
                INSERT INTO \(table) (seq, payload, replica) SELECT s, p, $3 FROM unnest($1::bigint[], $2::bytea[]) AS t(s, p)
                """, binds: binds), logger: logger)
            try await c.query(PostgresQuery(unsafeSQL: "NOTIFY \(table)"), logger: logger)
        } catch {
            if began { _ = try? await c.query("ROLLBACK", logger: logger) }
            if c.isClosed { lock.withLock { if writer === c { writer = nil } } }
            throw PostgresChangeLogError.unavailable("the write was not committed to the change log at \(location): \(PostgresChangeLogError.describe(error))")
        }
        do {
            try await c.query("COMMIT", logger: logger)
        } catch {
            lock.withLock { if writer === c { writer = nil } }
            try? await c.close()
            throw PostgresChangeLogError.unknownOutcome("the database did not confirm the commit (\(PostgresChangeLogError.describe(error))): the write may be in the log")
        }
        return UInt64(first)
    }

    // MARK: - Compaction

    /// Replaces the rows up to `through` by those `compacting` keeps of them (given in order;
    /// it returns a subset, in order), in one transaction that appends wait for, and records
    /// the compaction. Later rows stay.
    /// - Returns: the rows before and after, and the kept rows up to `through`.
    /// - Throws: `PostgresChangeLogError` when the database is unreachable (nothing changed),
    ///   `through` is past the last sequence, or `compacting` returned a row it was not given.
    public func compact(through: UInt64, _ compacting: @escaping @Sendable ([ChangeRecord]) -> [ChangeRecord]) async throws -> ChangeLogCompaction {
        let connection = try await Self.connect(configuration, logger: logger, location: location)
        defer { connection.close().whenComplete { _ in withExtendedLifetime(connection) {} } }
        let table = table, logger = logger
        var began = false
        do {
            try await connection.query("BEGIN", logger: logger)
            began = true
            try await connection.query("SELECT pg_advisory_xact_lock(\(lockKey))", logger: logger)
            var before = 0, last: Int64 = 0
            for try await (n, m) in try await connection.query(PostgresQuery(unsafeSQL: """
                SELECT count(*), greatest(coalesce(max(seq), 0), \(Self.compactedSQL(table))) FROM \(table)
                """), logger: logger).decode((Int64, Int64).self) { (before, last) = (Int(n), m) }
            guard through <= UInt64(max(0, last)) else {
                throw PostgresChangeLogError.invalid("cannot compact \(table) through \(through): its last sequence is \(last)")
            }
            var upTo = [ChangeRecord]()
            for try await (seq, payload, compacted) in try await connection.query(PostgresQuery(unsafeSQL: """
                SELECT seq, payload, \(Self.compactedSQL(table)) FROM \(table) WHERE seq <= \(through) ORDER BY seq
                """), logger: logger).decode((Int64, ByteBuffer, Int64).self) {
                upTo.append(try Self.record(seq, payload, after: upTo.last?.sequence ?? 0, compacted: compacted, table: table))
            }
            let kept = compacting(upTo)
            var given = Set(upTo.map(\.sequence)), previous: UInt64 = 0
            for r in kept {
                guard r.sequence > previous, given.remove(r.sequence) != nil else {
                    throw PostgresChangeLogError.invalid("compaction of \(table) kept sequence \(r.sequence), which is not one of the rows through \(through) in order")
                }
                previous = r.sequence
            }
            var binds = PostgresBindings()
            binds.append(given.sorted().map { Int64($0) })
            try await connection.query(PostgresQuery(unsafeSQL: "DELETE FROM \(table) WHERE seq = ANY($1::bigint[])", binds: binds), logger: logger)
            let after = before - given.count
            try await connection.query(PostgresQuery(unsafeSQL: """
                INSERT INTO \(table)_compactions (through, records_before, records_after) VALUES (\(through), \(before), \(after))
                ON CONFLICT (through) DO UPDATE SET records_before = EXCLUDED.records_before,
                  records_after = EXCLUDED.records_after, compacted_at = clock_timestamp()
                """), logger: logger)
            try await connection.query("COMMIT", logger: logger)
            logger.info("change log \(table): compacted through \(through), \(before) records to \(after)")
            return ChangeLogCompaction(recordsBefore: before, recordsAfter: after, prefix: kept)
        } catch {
            if began { _ = try? await connection.query("ROLLBACK", logger: logger) }
            throw PostgresChangeLogError.wrap(error, doing: "compacting the change log \(table) at \(location)")
        }
    }

    // MARK: - Helpers

    /// A row read after sequence `after`: sequences grow by one, except at or below
    /// `compacted` (the highest compaction's `through`), where they only grow.
    private static func record(_ seq: Int64, _ payload: ByteBuffer, after: UInt64, compacted: Int64, table: String) throws -> ChangeRecord {
        let floor = UInt64(max(0, compacted))
        guard seq > 0, UInt64(seq) > after, UInt64(seq) <= floor || UInt64(seq) == max(after, floor) + 1 else {
            throw PostgresChangeLogError.corrupt("table \(table) holds sequence \(seq) after \(after): its sequences must run 1, 2, 3, ... without a gap"
                + (floor > 0 ? " after \(floor), the last compaction's end" : "") + " (were rows deleted by hand?)")
        }
        guard payload.readableBytes <= WriteAheadLog.maxPayload else {
            throw PostgresChangeLogError.corrupt("table \(table), sequence \(seq): a payload of \(payload.readableBytes) bytes is over the \(WriteAheadLog.maxPayload)-byte limit")
        }
        return ChangeRecord(sequence: UInt64(seq), payload: Array(payload.readableBytesView))
    }

    private static func binds(_ values: String...) -> PostgresBindings {
        var b = PostgresBindings()
        for v in values { b.append(v) }
        return b
    }

    /// A stable 64-bit key for the table's advisory lock (FNV-1a of "funnel:" + the name).
    static func lockKey(_ table: String) -> Int64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in ("funnel:" + table).utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return Int64(bitPattern: h)
    }

    private static func connect(_ configuration: PostgresConnection.Configuration, logger: Logger, location: String) async throws -> PostgresConnection {
        do {
            return try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
        } catch {
            throw PostgresChangeLogError.unavailable("cannot connect to the change log at \(location): \(PostgresChangeLogError.describe(error))")
        }
    }

    /// The connection settings a URL names, and the URL without its password.
    static func configuration(_ url: String) throws -> (PostgresConnection.Configuration, String) {
        guard let u = URLComponents(string: url), u.scheme == "postgres" || u.scheme == "postgresql" else {
            throw PostgresChangeLogError.invalid("change log URL '\(url)' is not postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
        }
        guard let user = u.user, !user.isEmpty else { throw PostgresChangeLogError.invalid("change log URL '\(Self.redacted(u))' names no user") }
        let database = u.path.hasPrefix("/") ? String(u.path.dropFirst()) : u.path
        guard !database.isEmpty else { throw PostgresChangeLogError.invalid("change log URL '\(Self.redacted(u))' names no database") }
        let items = Dictionary((u.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 })
        for k in items.keys where k != "host" && k != "sslmode" {
            throw PostgresChangeLogError.invalid("change log URL: unknown parameter '\(k)' (known: host, sslmode)")
        }
        var configuration: PostgresConnection.Configuration
        if let socket = items["host"], socket.hasPrefix("/") {
            let path = socket.hasSuffix(".s.PGSQL.\(u.port ?? 5432)") ? socket : "\(socket)/.s.PGSQL.\(u.port ?? 5432)"
            configuration = .init(unixSocketPath: path, username: user, password: u.password, database: database)
        } else {
            guard let host = u.host, !host.isEmpty else { throw PostgresChangeLogError.invalid("change log URL '\(Self.redacted(u))' names no host") }
            let tls: PostgresConnection.Configuration.TLS
            switch items["sslmode"] ?? "disable" {
            case "disable": tls = .disable
            case "require": tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
            case let other: throw PostgresChangeLogError.invalid("change log URL: sslmode '\(other)' is not disable or require")
            }
            guard (1...65535).contains(u.port ?? 5432) else { throw PostgresChangeLogError.invalid("change log URL: port \(u.port!) is not in 1...65535") }
            configuration = .init(host: host, port: u.port ?? 5432, username: user, password: u.password, database: database, tls: tls)
        }
        configuration.options.connectTimeout = .seconds(5)
        return (configuration, Self.redacted(u))
    }

    static func redacted(_ u: URLComponents) -> String {
        var v = u
        if v.password != nil { v.password = "***" }
        return v.string ?? "postgres://"
    }
}

/// What went wrong with a PostgreSQL change log.
public enum PostgresChangeLogError: ChangeLogFailure {
    /// A bad URL, table name or record, named.
    case invalid(String)
    /// The database is unreachable or refused the write; nothing was committed.
    case unavailable(String)
    /// The commit's answer was lost: the write may or may not be in the log.
    case unknownOutcome(String)
    /// The table does not hold a log (a gap, a payload too big).
    case corrupt(String)

    public var description: String {
        switch self {
        case .invalid(let m), .unavailable(let m), .unknownOutcome(let m), .corrupt(let m): return m
        }
    }

    public var nothingWritten: Bool {
        if case .unknownOutcome = self { return false }
        return true
    }

    static func wrap(_ error: Error, doing what: String) -> Error {
        if error is PostgresChangeLogError { return error }
        return PostgresChangeLogError.unavailable("\(what): \(describe(error))")
    }

    /// The server's message for a PSQLError (its description hides it), else the error.
    static func describe(_ error: Error) -> String {
        if let e = error as? PostgresTransactionError { return describe(e.closureError ?? e.commitError ?? e.beginError ?? e.rollbackError ?? e) }
        if let e = error as? PSQLError {
            if let m = e.serverInfo?[.message] { return "\(m) (\(e.code))" }
            if let u = e.underlying { return "\(e.code): \(u)" }
            return "\(e.code)"
        }
        return "\(error)"
    }
}
