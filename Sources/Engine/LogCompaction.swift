import Foundation
import Persistence
import Registry

/// What a compaction did (`LiveService.compact`).
public struct LogCompactionReport: Codable, Sendable, Equatable {
    /// The records up to this sequence were compacted: what production has folded.
    public var through: UInt64
    public var recordsBefore: Int
    public var recordsAfter: Int
    /// Versions archived for good because they had folded less of the log (with `retire`).
    public var retired: [String]

    public init(through: UInt64, recordsBefore: Int, recordsAfter: Int, retired: [String]) {
        self.through = through
        self.recordsBefore = recordsBefore
        self.recordsAfter = recordsAfter
        self.retired = retired
    }

    enum CodingKeys: String, CodingKey {
        case through, retired
        case recordsBefore = "records_before"
        case recordsAfter = "records_after"
    }
}

/// Compaction of the write-ahead log behind a retrained version: the last step of the
/// retrain loop (`funnel retrain --from-log`, canary, promote, compact).
///
/// A version retrained from the log records the last sequence it folded in
/// (`ModelBundle.changeLogThrough`); replaying the log over it skips those interactions
/// and applies the item writes again. So, once every version that may still serve has
/// folded the log through S, the records up to S can shrink to what such a replay uses:
/// - interactions up to S are dropped (every such version skips them);
/// - each item's writes up to S become its first and its last (an upsert replaces the
///   item's attributes, so the last gives its state; the first keeps the order in which the
///   items created in the log get their rows), in sequence order;
/// - records after S are kept as they are, and a record that cannot be read is kept.
///
/// Replayed over such a version, the compacted log gives the same catalog (items,
/// attributes, deletions) and the same histories. The HNSW graph may differ where items
/// were deleted and written again (its slots are reused in another order), so ANN answers
/// are the same up to near-ties.
public enum LogCompaction {
    /// The records of `records` up to `through`, compacted as described above; later ones
    /// unchanged.
    public static func compacted(_ records: [ChangeRecord], through: UInt64) -> [ChangeRecord] {
        let decoder = JSONDecoder()
        var keep = [Bool](repeating: false, count: records.count)
        var first = [String: Int](), last = [String: Int]()
        for (i, r) in records.enumerated() {
            guard r.sequence <= through else { keep[i] = true; continue }
            guard let change = try? decoder.decode(LiveChange.self, from: Data(r.payload)) else { keep[i] = true; continue }
            switch change {
            case .interactions: continue
            case .upsert(let item, _), .delete(let item):
                if first[item] == nil { first[item] = i }
                last[item] = i
            }
        }
        for i in first.values { keep[i] = true }
        for i in last.values { keep[i] = true }
        return records.indices.filter { keep[$0] }.map { records[$0] }
    }
}

extension LiveService {
    /// Compacts the change log through what the production version has folded.
    ///
    /// Every other version that may still serve (staging, canary, shadow, rollback targets)
    /// must have folded at least as much: compacting would take from it writes it needs.
    /// Such versions are refused by name (409), or, with `retire`, archived for good first.
    /// The log compacts itself (`CompactingChangeLog`): the file write-ahead log is rewritten
    /// while appends wait; the PostgreSQL log replicas share compacts in its database,
    /// atomically with every replica's appends. Later records are kept. Other replicas keep the records they hold in memory
    /// until they restart; they read the compacted log without complaint.
    /// - Throws: `EngineError.invalidRequest` without a log, or for a log that cannot be
    ///   compacted; `RegistryError.invalidTransition` naming the versions in the way.
    public func compact(retire: Bool = false) async throws -> LogCompactionReport {
        guard let log else { throw EngineError.invalidRequest("this server takes no writes: there is no log to compact") }
        guard let compacting = log as? CompactingChangeLog else {
            throw EngineError.invalidRequest("the change log at \(log.location) cannot be compacted")
        }
        let (through, retired) = try compactionPoint(retire: retire)
        let done = try await compacting.compact(through: through) { LogCompaction.compacted($0, through: through) }
        replaceRecords(done.prefix, through: through)
        return LogCompactionReport(through: through, recordsBefore: done.recordsBefore, recordsAfter: done.recordsAfter, retired: retired)
    }

    /// How far the log may be compacted (what production folded), after retiring the versions
    /// that folded less when `retire` allows it.
    private func compactionPoint(retire: Bool) throws -> (through: UInt64, retired: [String]) {
        guard let models else { return (fixed!.bundle.changeLogThrough, []) }
        let registry = ModelRegistry(root: models.root)
        let versions = try registry.versions(of: models.name)
        func folded(_ v: ModelVersion) throws -> UInt64 {
            let manifest = try ModelBundle.manifest(of: registry.folder(models.name, v))
            return manifest.parameters[ModelBundle.changeLogThroughKey].flatMap { UInt64($0) } ?? 0
        }
        guard let production = versions.first(where: { $0.state == .production }) else {
            throw RegistryError.invalidTransition("\(models.name) has no production version: nothing says how far the log is folded")
        }
        let through = try folded(production)
        let servable = versions.filter { $0.version != production.version && !($0.state == .archived && $0.promoted == nil) }
        let behind = try servable.filter { try folded($0) < through }
        guard !behind.isEmpty else { return (through, []) }
        let names = behind.map { "v\($0.version) (\($0.state.rawValue)\($0.state == .archived ? ", a rollback target" : ""))" }
        guard retire else {
            throw RegistryError.invalidTransition("compacting \(models.name)'s log through \(through) would take writes from "
                + names.joined(separator: ", ") + ", which folded less of it; retire them (retire: true) or promote past them")
        }
        try registry.retire(models.name, versions: behind.map(\.version))
        _ = models.refresh()
        return (through, behind.map { "v\($0.version)" })
    }
}
