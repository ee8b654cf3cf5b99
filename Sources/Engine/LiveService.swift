import Foundation
import Persistence

/// The engines a server answers with and the live writes they take: a fixed bundle or a
/// registry model kept in step with the registry (`LiveModels`), and a change log: the
/// file write-ahead log of this process, or a log in PostgreSQL that replicas share.
///
/// A write is checked against the serving engine, appended to the log and made durable
/// (group commit), applied to every loaded version in log order, and only then
/// acknowledged. At start the log is replayed over the bundle; a version loaded later (a
/// promote, a canary) gets the whole log replayed before it serves. So after `kill -9`
/// at any moment, a restart has every acknowledged write. With a shared log, the other
/// replicas' writes arrive through the same path, in the same order, on every replica.
public final class LiveService: @unchecked Sendable {
    public let models: LiveModels?
    public let fixed: Engine?
    public let log: (any ChangeLog)?
    /// The writes replayed at start, and those that failed to apply (named, then skipped).
    public private(set) var replayed = 0
    public private(set) var replayFailures: [String] = []
    private let applyLock: NSLock
    private var records: [ChangeRecord] = []
    /// Why the production engine could not apply a logged write (read by the writer, then dropped).
    private var applyErrors: [UInt64: Error] = [:]

    /// - Parameter logPath: the write-ahead log (created when absent); nil: writes are refused.
    public convenience init(models: LiveModels? = nil, fixed: Engine? = nil, logPath: String?) throws {
        try self.init(models: models, fixed: fixed, changeLog: try logPath.map { try WriteAheadLog(path: $0) })
    }

    /// - Parameter changeLog: the log writes go to and come from, opened and not yet followed
    ///   (its `recovered` records are replayed here); nil: writes are refused.
    public init(models: LiveModels? = nil, fixed: Engine? = nil, changeLog: (any ChangeLog)?) throws {
        precondition((models == nil) != (fixed == nil), "serve a registry model or a bundle folder")
        self.models = models
        self.fixed = fixed
        applyLock = models?.swapLock ?? NSLock()
        log = changeLog
        guard let changeLog else { return }
        records = changeLog.recovered
        applyLock.withLock {
            for e in engines { replay(e) }
        }
        replayed = records.count
        models?.beforeSwap = { [weak self] fresh in
            guard let self else { return }
            for e in fresh { self.replay(e) }
        }
        // The log calls back with each batch once it is durable (and, for a shared log, with
        // every other replica's batches); `self` applies them then.
        changeLog.follow { [weak self] (batch: [ChangeRecord]) in self?.durable(batch) }
    }

    /// Every loaded engine.
    public var engines: [Engine] { fixed.map { [$0] } ?? Array(models!.snapshot.versions.values) }

    /// The engine that answers `user` (the canary for its share), or a pinned version.
    public func engine(for user: String, pinned: String? = nil) throws -> Engine {
        if let fixed { return fixed }
        if let pinned {
            guard let e = models!.version(pinned) else { throw EngineError.unknown(kind: "version", id: pinned) }
            return e
        }
        return models!.route(user)
    }

    /// The production engine (writes are checked against it).
    public var production: Engine { fixed ?? models!.snapshot.production }

    /// Checks, logs durably and applies a write; returns its sequence in the log.
    /// - Throws: `EngineError` for a write the engine refuses (nothing is logged then);
    ///   `EngineError.invalidRequest` when the server has no log.
    @discardableResult
    public func write(_ change: LiveChange) async throws -> UInt64 {
        guard let log else { throw EngineError.invalidRequest("this server takes no writes (started without a write-ahead log)") }
        try production.check(change)
        let payload = Array(try JSONEncoder().encode(change))
        return try outcome(try await log.append(payload))
    }

    /// The sequence of a durable write, or the error its application met.
    private func outcome(_ sequence: UInt64) throws -> UInt64 {
        if let e = applyLock.withLock({ applyErrors.removeValue(forKey: sequence) }) { throw e }
        return sequence
    }

    /// The same, blocking the calling thread.
    @discardableResult
    public func writeAndWait(_ change: LiveChange) throws -> UInt64 {
        guard let log else { throw EngineError.invalidRequest("this server takes no writes (started without a write-ahead log)") }
        try production.check(change)
        return try outcome(try log.appendAndWait(Array(try JSONEncoder().encode(change))))
    }

    /// Writes in the log.
    public var logged: Int { applyLock.withLock { records.count } }

    /// After a compaction through `through`: `prefix` is what the log keeps up to it; the
    /// records after it stay.
    func replaceRecords(_ prefix: [ChangeRecord], through: UInt64) {
        applyLock.withLock { records = prefix + records.filter { $0.sequence > through } }
    }

    // MARK: - Applying

    /// Called by the log on its thread with each durable batch, in sequence order.
    private func durable(_ batch: [ChangeRecord]) {
        applyLock.withLock {
            records.append(contentsOf: batch)
            let p = production
            for e in engines { replay(e, errors: e === p) }
            // A shared log delivers other replicas' writes too: nobody here reads why those
            // failed, so errors older than the newest records are dropped.
            if let last = batch.last?.sequence, last > Self.errorsKept {
                applyErrors = applyErrors.filter { $0.key > last - Self.errorsKept }
            }
        }
    }

    /// How many records back a failed write's error waits for its writer.
    static let errorsKept: UInt64 = 4096

    /// Applies to `engine` the records it has not seen (under `applyLock`). A record that
    /// fails (checked when written, it can only fail if the catalog changed since, e.g. an
    /// item deleted meanwhile) is skipped on every engine alike and named in `replayFailures`.
    private func replay(_ engine: Engine, errors: Bool = false) {
        let done = engine.liveSequence
        let decoder = JSONDecoder()
        let folded = engine.bundle.changeLogThrough
        for r in records where r.sequence > done {
            do {
                let change = try decoder.decode(LiveChange.self, from: Data(r.payload))
                // A bundle retrained on the log holds its interactions already. Item writes are
                // applied again: for an item the bundle was trained with, an upsert only sets
                // the attributes it already has; deletes the bundle does not fold.
                if r.sequence <= folded, case .interactions = change {
                    engine.liveSequence = r.sequence
                    continue
                }
                try engine.apply(change)
            } catch {
                replayFailures.append("record \(r.sequence) on \(engine.version ?? "the bundle"): \(error)")
                if errors { applyErrors[r.sequence] = error }
            }
            engine.liveSequence = r.sequence
        }
    }
}
