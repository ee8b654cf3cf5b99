import _FunnelKernels
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An append-only log of checksummed records, made durable before they are acknowledged,
/// with group commit: records appended while a flush is under way go to disk together in
/// the next write and `fdatasync`, so many writers share one sync.
///
/// File: a header, then records of `length: u32 | sequence: u64 | crc: u32 | payload`, the
/// CRC-32C covering length, sequence and payload. The header is "FNLWALOG" and a format
/// version; version 1 (16 bytes) adds the CRC-32C of both; version 2 (24 bytes, written by a
/// compaction) adds `floor: u64`, the last sequence issued before the compaction, and the
/// CRC-32C of all three. Sequences start at 1 and grow by one, except where a compaction
/// (`rewrite(through:prefix:)`) dropped records: a reader refuses any sequence that does not
/// grow, and the next append continues after both the last record and the floor (so a
/// compaction that dropped the last records never hands out their sequences again).
///
/// Opening reads every record. A record cut short or failing its checksum at the end (a
/// crash during a write) is a torn tail: it was never acknowledged, so it is cut off and
/// reported in `repaired`. A bad record followed by good ones is corruption, not a torn
/// tail: opening refuses the file rather than drop acknowledged writes.
///
/// One writer at a time: opening takes an exclusive `flock` on the file, held until the log
/// is freed, so a second server (or a second open in this process) on the same log is refused
/// with `PersistenceError.inUse` instead of interleaving its sequences. Readers
/// (`read(_:)`) take no lock.
///
/// After a sync, `onDurable` runs on the flush thread with the records of that sync, in
/// sequence order, before their writers are answered: state applied there is applied in log
/// order, as a replay applies it.
public final class WriteAheadLog: CompactingChangeLog, @unchecked Sendable {
    public typealias Record = ChangeRecord

    public static let magic = Array("FNLWALOG".utf8)
    public static let formatVersion: UInt32 = 2
    /// The largest payload a record may hold (checked before reading one).
    public static let maxPayload = 64 << 20
    static let headerSize = 16, recordHeader = 16

    public let path: String
    /// The records found at open, in order.
    public let recovered: [Record]
    /// What opening cut off: the offset of the torn tail and its length in bytes (nil: none).
    public let repaired: (offset: Int, bytes: Int)?
    /// The last sequence written (0 for an empty log).
    public var lastSequence: UInt64 { lock.withLock { next - 1 } }

    private let fd: Int32
    private var next: UInt64
    /// What the flush thread shares with the log. The thread holds it, never the log, so the
    /// log is freed (its file flushed, closed and unlocked) once its last user lets go.
    private let state: FlushState
    private var lock: NSLock { state.lock }
    private var wake: NSCondition { state.wake }

    /// Opens (or creates) the log at `path`.
    /// - Throws: `PersistenceError` for a file that is not a log, a newer format, or
    ///   corruption before the last record.
    public init(path: String, onDurable: @escaping @Sendable ([Record]) -> Void = { _ in }) throws {
        self.path = path
        var st = stat()
        if stat(path, &st) == 0, (st.st_mode & S_IFMT) != S_IFREG {
            throw PersistenceError.corrupt(path: path, reason: "not a regular file")
        }
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw PersistenceError.io(path: path, operation: "open", errno: errno) }
        self.fd = fd
        state = FlushState(fd: fd, path: path, onDurable: onDurable)
        do {
            try Self.lock(fd, path: path)
            let (records, good, size, floor) = try Self.scan(fd: fd, path: path)
            recovered = records
            next = max(records.last?.sequence ?? 0, floor) + 1
            if size == 0 {
                try Self.writeAll(fd: fd, Self.header(floor: nil), path: path)
                guard fsync(fd) == 0 else { throw PersistenceError.io(path: path, operation: "fsync", errno: errno) }
                Self.syncDirectory(of: path)
                repaired = nil
            } else if good < size {
                guard ftruncate(fd, off_t(good)) == 0, fsync(fd) == 0 else {
                    throw PersistenceError.io(path: path, operation: "cutting the torn tail", errno: errno)
                }
                repaired = (good, size - good)
            } else {
                repaired = nil
            }
            guard lseek(fd, 0, SEEK_END) >= 0 else { throw PersistenceError.io(path: path, operation: "seek", errno: errno) }
        } catch {
            close(fd)
            throw error
        }
        let t = Thread { [state] in state.loop() }
        t.name = "funnel-wal"
        state.started = true
        t.start()
    }

    /// Flushes what is pending, stops the flush thread, closes the file (its lock with it).
    deinit {
        guard state.started else { return }  // init failed: it closed the file itself
        wake.lock()
        state.closed = true
        wake.signal()
        wake.unlock()
        state.stopped.wait()
        close(fd)
    }

    /// Appends a record; `done` gets its sequence once it is on disk (and `state.onDurable` ran),
    /// or the error that stopped the log (after which every append fails).
    public func append(_ payload: [UInt8], done: @escaping (Result<UInt64, Error>) -> Void) {
        guard payload.count <= Self.maxPayload else {
            done(.failure(PersistenceError.corrupt(path: path, reason: "a record of \(payload.count) bytes is over the \(Self.maxPayload)-byte limit")))
            return
        }
        wake.lock()
        if let failure = state.failure {
            wake.unlock()
            done(.failure(failure))
            return
        }
        let record = Record(sequence: lock.withLock { defer { next += 1 }; return next }, payload: payload)
        lock.withLock { state.pending.append((record, done)) }
        wake.signal()
        wake.unlock()
    }

    public var location: String { path }

    /// Replaces the consumer given at `init` (records flushed before this call went to that one).
    public func follow(_ consumer: @escaping @Sendable ([Record]) -> Void) {
        lock.withLock { state.onDurable = consumer }
    }

    public func appendAndWait(_ payload: [UInt8]) throws -> UInt64 { try append(payload) }

    /// Appends a record and waits until it is durable.
    @discardableResult
    public func append(_ payload: [UInt8]) throws -> UInt64 {
        let done = DispatchSemaphore(value: 0)
        var result: Result<UInt64, Error>!
        append(payload) { result = $0; done.signal() }
        done.wait()
        return try result.get()
    }

    /// Appends a record and suspends until it is durable.
    public func append(_ payload: [UInt8]) async throws -> UInt64 {
        try await withCheckedThrowingContinuation { c in append(payload) { c.resume(with: $0) } }
    }

    /// Compaction: replaces the records up to sequence `through` by `prefix` (sequences at
    /// most `through`, increasing), keeping every later record, appended meanwhile or not.
    /// Written to a new file, synced, renamed over the log. Appends wait meanwhile; later
    /// sequences continue from the old ones.
    /// - Returns: the records the log holds now.
    @discardableResult
    public func rewrite(through: UInt64, prefix: [Record]) throws -> [Record] {
        try check(prefix: prefix, through: through)
        return try rewrite(through: through) { _ in prefix }.kept
    }

    /// `CompactingChangeLog`: the records up to `through` that `compacting` keeps of those the
    /// file holds, by `rewrite`, off the caller's thread (appends wait while it runs).
    public func compact(through: UInt64, _ compacting: @escaping @Sendable ([Record]) -> [Record]) async throws -> ChangeLogCompaction {
        try await withCheckedThrowingContinuation { c in
            DispatchQueue.global().async {
                c.resume(with: Result {
                    let done = try self.rewrite(through: through) { records in
                        let prefix = compacting(records)
                        try self.check(prefix: prefix, through: through)
                        return prefix
                    }
                    return ChangeLogCompaction(recordsBefore: done.before, recordsAfter: done.kept.count, prefix: done.prefix)
                })
            }
        }
    }

    private func check(prefix: [Record], through: UInt64) throws {
        var last: UInt64 = 0
        for r in prefix {
            guard r.sequence > last, r.sequence <= through else {
                throw PersistenceError.corrupt(path: path, reason: "compaction prefix: sequence \(r.sequence) after \(last), through \(through)")
            }
            last = r.sequence
        }
    }

    /// The rewrite: `prefix` gets the file's records up to `through` once appends are held.
    private func rewrite(through: UInt64, _ prefix: ([Record]) throws -> [Record]) throws -> (before: Int, prefix: [Record], kept: [Record]) {
        wake.lock()
        defer { wake.unlock() }
        if let failure = state.failure { throw failure }
        while lock.withLock({ state.flushing || !state.pending.isEmpty }) { wake.unlock(); usleep(500); wake.lock() }
        // Nothing is being written now: the file holds every durable record.
        let (current, _, _, _) = try Self.scan(fd: fd, path: path)
        let head = try prefix(current.filter { $0.sequence <= through })
        let kept = head + current.filter { $0.sequence > through }
        // Sequences go on after both what was issued and what the file now holds.
        let floor = lock.withLock { () -> UInt64 in
            next = max(next, (kept.last?.sequence ?? 0) + 1)
            return next - 1
        }
        let tmp = path + ".compact"
        let out = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard out >= 0 else { throw PersistenceError.io(path: tmp, operation: "open", errno: errno) }
        defer { close(out) }
        // The new file is locked before it takes the log's name: no moment without the lock.
        try Self.lock(out, path: tmp)
        var bytes = Self.header(floor: floor)
        for r in kept { Self.encode(r, into: &bytes) }
        try Self.writeAll(fd: out, bytes, path: tmp)
        guard fsync(out) == 0 else { throw PersistenceError.io(path: tmp, operation: "fsync", errno: errno) }
        guard rename(tmp, path) == 0 else { throw PersistenceError.io(path: path, operation: "rename", errno: errno) }
        Self.syncDirectory(of: path)
        // The descriptor still points at the old inode: point it at the new one (with its
        // lock; the old file's lock goes with its last descriptor).
        guard dup2(out, fd) >= 0 else { throw PersistenceError.io(path: path, operation: "reopen", errno: errno) }
        lseek(fd, 0, SEEK_END)
        return (current.count, head, kept)
    }

    /// The records of the log at `path`, read without changing it (a server may be
    /// appending): a torn tail is left out, not cut.
    public static func read(_ path: String) throws -> [Record] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw PersistenceError.io(path: path, operation: "open", errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { throw PersistenceError.corrupt(path: path, reason: "not a regular file") }
        return try scan(fd: fd, path: path).0
    }

    // MARK: - Format

    static func encode(_ r: Record, into bytes: inout [UInt8]) {
        var head = [UInt8]()
        withUnsafeBytes(of: UInt32(r.payload.count).littleEndian) { head.append(contentsOf: $0) }
        withUnsafeBytes(of: r.sequence.littleEndian) { head.append(contentsOf: $0) }
        var crc = head.withUnsafeBytes { fk_crc32c(0, $0.baseAddress, $0.count) }
        crc = r.payload.withUnsafeBytes { fk_crc32c(crc, $0.baseAddress, $0.count) }
        bytes.append(contentsOf: head)
        withUnsafeBytes(of: crc.littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: r.payload)
    }

    /// Reads every record: (records, end of the last good one, file size).
    /// A file header: version 1 without a floor (a new log), version 2 with one (a compacted log).
    static func header(floor: UInt64?) -> [UInt8] {
        var bytes = magic
        withUnsafeBytes(of: UInt32(floor == nil ? 1 : 2).littleEndian) { bytes.append(contentsOf: $0) }
        if let floor { withUnsafeBytes(of: floor.littleEndian) { bytes.append(contentsOf: $0) } }
        let crc = bytes.withUnsafeBytes { fk_crc32c(0, $0.baseAddress, $0.count) }
        withUnsafeBytes(of: crc.littleEndian) { bytes.append(contentsOf: $0) }
        return bytes
    }

    /// Takes the exclusive lock on an open log, or names who might hold it.
    static func lock(_ fd: Int32, path: String) throws {
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            if errno == EWOULDBLOCK {
                throw PersistenceError.inUse(path: path, reason: "the write-ahead log is open in another process (or already open here): one server writes a log at a time")
            }
            throw PersistenceError.io(path: path, operation: "lock", errno: errno)
        }
    }

    /// The good records, where they end, the file's size, and the header's floor (0 for version 1).
    static func scan(fd: Int32, path: String) throws -> ([Record], Int, Int, UInt64) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw PersistenceError.io(path: path, operation: "open", errno: errno) }
        let size = Int(st.st_size)
        if size == 0 { return ([], 0, 0, 0) }
        var bytes = [UInt8](repeating: 0, count: size)
        let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, size, 0) }
        guard got == size else { throw PersistenceError.corrupt(path: path, reason: "read \(got) of \(size) bytes") }
        guard size >= headerSize, Array(bytes[0..<8]) == magic else {
            throw PersistenceError.corrupt(path: path, reason: "not a Funnel write-ahead log (no FNLWALOG header)")
        }
        func u32(_ at: Int) -> UInt32 { bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt32.self) }.littleEndian }
        func u64(_ at: Int) -> UInt64 { bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt64.self) }.littleEndian }
        let version = u32(8)
        guard version >= 1, version <= formatVersion else {
            throw PersistenceError.corrupt(path: path, reason: "format version \(version); this build reads 1...\(formatVersion)")
        }
        let header = version == 1 ? headerSize : headerSize + 8
        guard size >= header else { throw PersistenceError.corrupt(path: path, reason: "a \(size)-byte file is shorter than its \(header)-byte header") }
        let headCRC = bytes.withUnsafeBytes { fk_crc32c(0, $0.baseAddress, header - 4) }
        guard u32(header - 4) == headCRC else { throw PersistenceError.corrupt(path: path, reason: "header checksum mismatch") }
        let floor = version == 1 ? 0 : u64(12)
        var records = [Record](), at = header
        var expected: UInt64? = nil
        while at < size {
            // A record that does not fit, or fails its checksum, ends the good part.
            guard size - at >= recordHeader else { break }
            let length = Int(u32(at))
            guard length <= maxPayload, size - at - recordHeader >= length else { break }
            let crc = bytes.withUnsafeBytes { p -> UInt32 in
                let c = fk_crc32c(0, p.baseAddress! + at, 12)
                return fk_crc32c(c, p.baseAddress! + at + recordHeader, length)
            }
            guard crc == u32(at + 12) else { break }
            let sequence = u64(at + 4)
            if let e = expected, sequence < e {
                throw PersistenceError.corrupt(path: path, reason: "record at offset \(at) has sequence \(sequence), after \(e - 1)")
            }
            expected = sequence + 1
            records.append(Record(sequence: sequence, payload: Array(bytes[(at + recordHeader)..<(at + recordHeader + length)])))
            at += recordHeader + length
        }
        if at < size {
            // A torn tail is one partial record. Anything that reads as a good record after
            // the bad one means acknowledged records would be lost: refuse.
            var probe = at + 1
            while probe + recordHeader <= size {
                let length = Int(u32(probe))
                if length <= maxPayload, size - probe - recordHeader >= length, length > 0 {
                    let crc = bytes.withUnsafeBytes { p -> UInt32 in
                        let c = fk_crc32c(0, p.baseAddress! + probe, 12)
                        return fk_crc32c(c, p.baseAddress! + probe + recordHeader, length)
                    }
                    if crc == u32(probe + 12) {
                        throw PersistenceError.corrupt(path: path, reason: "a damaged record at offset \(at) is followed by good records (from offset \(probe)): not a torn tail; refusing to cut acknowledged writes")
                    }
                }
                probe += 1
            }
        }
        return (records, at, size, floor)
    }

    static func writeAll(fd: Int32, _ bytes: [UInt8], path: String) throws {
        var done = 0
        try bytes.withUnsafeBytes { p in
            while done < p.count {
                let n = write(fd, p.baseAddress! + done, p.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw PersistenceError.io(path: path, operation: "write", errno: errno)
                }
                done += n
            }
        }
    }

    static func syncDirectory(of path: String) {
        let dir = (path as NSString).deletingLastPathComponent
        let d = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if d >= 0 { fsync(d); close(d) }
    }
}

/// The flush thread's side of a `WriteAheadLog` (see `WriteAheadLog.state`).
private final class FlushState: @unchecked Sendable {
    typealias Record = ChangeRecord
    let fd: Int32, path: String
    let lock = NSLock(), wake = NSCondition()
    var pending: [(record: Record, done: (Result<UInt64, Error>) -> Void)] = []
    var flushing = false, closed = false, started = false
    var failure: Error?
    var onDurable: @Sendable ([Record]) -> Void
    /// Signalled when the loop has flushed the last pending record after `closed`.
    let stopped = DispatchSemaphore(value: 0)

    init(fd: Int32, path: String, onDurable: @escaping @Sendable ([Record]) -> Void) {
        self.fd = fd
        self.path = path
        self.onDurable = onDurable
    }

    func loop() {
        defer { stopped.signal() }
        while true {
            wake.lock()
            while lock.withLock({ pending.isEmpty }) && !closed { wake.wait() }
            if closed && lock.withLock({ pending.isEmpty }) { wake.unlock(); return }
            let batch = lock.withLock { () -> [(record: Record, done: (Result<UInt64, Error>) -> Void)] in
                flushing = true
                defer { pending.removeAll(keepingCapacity: true) }
                return pending
            }
            wake.unlock()
            var bytes = [UInt8]()
            for (r, _) in batch { WriteAheadLog.encode(r, into: &bytes) }
            var error: Error? = nil
            do {
                try WriteAheadLog.writeAll(fd: fd, bytes, path: path)
                if fdatasync(fd) != 0 { throw PersistenceError.io(path: path, operation: "fdatasync", errno: errno) }
            } catch let e {
                error = e
                wake.lock()
                failure = e
                wake.unlock()
            }
            if error == nil { lock.withLock { onDurable }(batch.map(\.record)) }
            for (r, done) in batch { done(error.map { .failure($0) } ?? .success(r.sequence)) }
            lock.withLock { flushing = false }
        }
    }
}
