/// A record of a change log: a sequence number (from 1, gapless, in commit order) and its payload.
public struct ChangeRecord: Sendable, Equatable {
    public var sequence: UInt64
    public var payload: [UInt8]

    public init(sequence: UInt64, payload: [UInt8]) {
        self.sequence = sequence
        self.payload = payload
    }
}

/// An ordered, durable log of changes that a server applies in sequence order: the file
/// write-ahead log of one process (`WriteAheadLog`), or a log that several replicas share
/// (the PostgreSQL backend), where `follow`'s consumer also gets the other replicas' records.
///
/// The contract both keep:
/// - `recovered` holds every record there was when the log was opened, in order;
/// - once `follow` is called, the consumer gets every later record exactly once, in
///   sequence order, on one thread at a time, with no gap after `recovered`;
/// - `append` returns a record's sequence only once it is durable *and* the consumer has
///   had it, so a writer reads its own write from the state the consumer keeps.
public protocol ChangeLog: AnyObject, Sendable {
    /// Where the log is, for messages (a path, or a database URL without its password).
    var location: String { get }
    /// The records found at open, in order.
    var recovered: [ChangeRecord] { get }
    /// Starts delivering the records after `recovered` (call once).
    func follow(_ consumer: @escaping @Sendable ([ChangeRecord]) -> Void)
    /// Appends a record and suspends until it is durable and delivered; returns its sequence.
    func append(_ payload: [UInt8]) async throws -> UInt64
    /// The same, blocking the calling thread (never call it from a task of the cooperative pool
    /// for a log whose work runs on that pool).
    func appendAndWait(_ payload: [UInt8]) throws -> UInt64
}

/// What a compaction did: the records before and after, and those it kept up to its end.
public struct ChangeLogCompaction: Sendable, Equatable {
    public var recordsBefore: Int, recordsAfter: Int
    public var prefix: [ChangeRecord]

    public init(recordsBefore: Int, recordsAfter: Int, prefix: [ChangeRecord]) {
        self.recordsBefore = recordsBefore
        self.recordsAfter = recordsAfter
        self.prefix = prefix
    }
}

/// A change log that compacts itself where it is stored, atomically with the appends of every
/// process that writes it: the file `WriteAheadLog` (one process) and the PostgreSQL log
/// replicas share.
public protocol CompactingChangeLog: ChangeLog {
    /// Replaces the records up to `through` by what `compacting` keeps of them (given in
    /// order; a subset, in order); later records stay. Readers then accept the gaps left up to
    /// `through`, and later sequences continue after it.
    func compact(through: UInt64, _ compacting: @escaping @Sendable ([ChangeRecord]) -> [ChangeRecord]) async throws -> ChangeLogCompaction
}

/// An error of a change log that says whether the write may have happened: a server answers
/// `unavailable` (503: nothing was written, retry) or `unknown_outcome` (the write may be in
/// the log; retry only what is idempotent).
public protocol ChangeLogFailure: Error, CustomStringConvertible {
    /// True when nothing was written.
    var nothingWritten: Bool { get }
}
