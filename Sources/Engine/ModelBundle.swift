import Foundation
import HNSW
import Persistence
import Rerank
import Serving
import TwoTower
#if canImport(Glibc)
import Glibc
#endif

/// How a bundle serves: the knobs of its `FunnelPipeline`, saved with it so that every
/// process that loads the bundle serves it the same way.
public struct ServingSettings: Codable, Sendable, Equatable {
    /// Candidates retrieval hands to the ranker.
    public var candidates = 200
    /// HNSW beam width.
    public var ef = 128
    /// MMR trade-off (1: ranker order).
    public var mmrLambda = 0.7
    /// MMR re-orders the ranker's top N.
    public var mmrPool = 150
    /// Exponential freshness half-life in days; nil: ignore item age.
    public var freshnessHalfLifeDays: Double? = 365
    public var freshnessWeight = 0.1
    /// At most this many items per (first) category; nil: no cap.
    public var maxPerCategory: Int? = 3
    /// TreeSHAP contributions per returned item.
    public var explanations = 3
    public var retrievalBudgetMs = 50.0
    public var rankingBudgetMs = 50.0
    public var deadlineMs = 150.0

    public init() {}

    enum CodingKeys: String, CodingKey {
        case candidates, ef, explanations
        case mmrLambda = "mmr_lambda", mmrPool = "mmr_pool"
        case freshnessHalfLifeDays = "freshness_half_life_days", freshnessWeight = "freshness_weight"
        case maxPerCategory = "max_per_category"
        case retrievalBudgetMs = "retrieval_budget_ms", rankingBudgetMs = "ranking_budget_ms", deadlineMs = "deadline_ms"
    }

    /// The pipeline configuration these settings describe.
    /// These settings with some replaced by a JSON object of the same keys (a server's
    /// config file): `{"candidates": 300, "deadline_ms": 80}`.
    /// - Throws: `EngineError.invalidRequest` naming an unknown key or a value of the wrong type.
    public func overlaid(with json: Data) throws -> ServingSettings {
        guard let over = try? JSONSerialization.jsonObject(with: json) as? [String: Any] else {
            throw EngineError.invalidRequest("serving settings must be a JSON object")
        }
        var base = (try JSONSerialization.jsonObject(with: try JSONEncoder().encode(self)) as? [String: Any]) ?? [:]
        let known: Set<String> = ["candidates", "ef", "explanations", "mmr_lambda", "mmr_pool", "freshness_half_life_days", "freshness_weight",
                                  "max_per_category", "retrieval_budget_ms", "ranking_budget_ms", "deadline_ms"]
        if let unknown = over.keys.sorted().first(where: { !known.contains($0) }) {
            throw EngineError.invalidRequest("unknown serving setting '\(unknown)'; the settings are \(known.sorted().joined(separator: ", "))")
        }
        for (k, v) in over { base[k] = v }
        do {
            let merged = try JSONDecoder().decode(ServingSettings.self, from: try JSONSerialization.data(withJSONObject: base))
            try merged.check()
            return merged
        } catch let e as EngineError { throw e } catch {
            throw EngineError.invalidRequest("serving settings: \(error)")
        }
    }

    /// Refuses settings no pipeline can run with.
    public func check() throws {
        func bad(_ s: String) -> EngineError { .invalidRequest("serving setting \(s)") }
        guard (1...Engine.maxK).contains(candidates) else { throw bad("candidates must be in 1...\(Engine.maxK), got \(candidates)") }
        guard (1...100_000).contains(ef) else { throw bad("ef must be in 1...100000, got \(ef)") }
        guard (0...1).contains(mmrLambda) else { throw bad("mmr_lambda must be in 0...1, got \(mmrLambda)") }
        guard mmrPool >= 1 else { throw bad("mmr_pool must be at least 1") }
        guard (0...1).contains(freshnessWeight) else { throw bad("freshness_weight must be in 0...1, got \(freshnessWeight)") }
        if let h = freshnessHalfLifeDays, !(h > 0 && h.isFinite) { throw bad("freshness_half_life_days must be positive") }
        if let m = maxPerCategory, m < 1 { throw bad("max_per_category must be at least 1") }
        guard explanations >= 0 else { throw bad("explanations must be >= 0") }
        for (n, v) in [("retrieval_budget_ms", retrievalBudgetMs), ("ranking_budget_ms", rankingBudgetMs), ("deadline_ms", deadlineMs)] {
            guard v > 0 && v.isFinite else { throw bad("\(n) must be a positive number of milliseconds") }
        }
    }

    public var pipelineConfig: PipelineConfig {
        var c = PipelineConfig()
        c.candidates = candidates
        c.ef = ef
        c.mmrLambda = mmrLambda
        c.mmrPool = mmrPool
        c.freshness = freshnessHalfLifeDays.map { .exponential(halfLife: $0 * 86_400) }
        c.freshnessWeight = freshnessWeight
        c.rules = BusinessRules()
        c.rules.maxPerCategory = maxPerCategory
        c.explanations = explanations
        c.retrievalBudget = retrievalBudgetMs / 1000
        c.rankingBudget = rankingBudgetMs / 1000
        c.deadline = deadlineMs / 1000
        return c
    }

    /// Checks what a hand-edited manifest could get wrong.
    func validate() throws {
        guard candidates >= 1, candidates <= 100_000, ef >= 1, ef <= 100_000, mmrPool >= 1, (0...1).contains(mmrLambda),
              freshnessWeight.isFinite, freshnessHalfLifeDays.map({ $0 > 0 && $0.isFinite }) ?? true,
              maxPerCategory.map({ $0 >= 1 }) ?? true, (0...64).contains(explanations),
              [retrievalBudgetMs, rankingBudgetMs, deadlineMs].allSatisfy({ $0 > 0 && $0 <= 3_600_000 }) else {  // at most an hour
            throw EngineError.invalidData("serving settings out of range: \(self)")
        }
    }
}

/// A self-contained model bundle: one folder holding everything serving needs, described
/// by `manifest.json` (format version, each file's size and CRC-32C, the schema with every
/// field's coding state in the towers file, the serving settings, the data fingerprint and
/// the metrics).
///
///     manifest.json   this description
///     towers.fnl      user and item towers with their features' coding state (funnel bundles)
///     items.hnsw      the HNSW index over item embeddings
///     ranker.gbdt     the GBDT ranker (when one was trained)
///     catalog.fnl     ids, titles, item attributes, search text, the interaction log
///     metrics.json    the training report
///
/// Written atomically: files go into a hidden sibling folder, each fsynced, the manifest
/// last, then the folder is renamed into place. Loading checks every file against the
/// manifest before anything is read.
public struct ModelBundle: Sendable {
    public static let format = "funnel-bundle"
    public static let formatVersion = 1

    /// The files of a bundle.
    public enum File {
        public static let manifest = "manifest.json"
        public static let towers = "towers.fnl"
        public static let index = "items.hnsw"
        public static let ranker = "ranker.gbdt"
        public static let catalog = "catalog.fnl"
        public static let metrics = "metrics.json"
    }

    /// What a bundle holds.
    public enum Kind: String, Codable, Sendable {
        /// The whole funnel: towers, index, ranker, catalog.
        case funnel
        /// An index over vectors the user brought, with their catalog.
        case index
    }

    public struct FileEntry: Codable, Sendable, Equatable {
        public var bytes: Int64
        /// CRC-32C of all but the file's last 4 bytes, then those 4 bytes, as 16 hex digits.
        /// (A CRC over a whole Funnel container, which ends in its own CRC, is the same
        /// constant for every file of a length: this form tells any two contents apart.)
        public var crc32c: String
    }

    /// The manifest parameter naming the last write-ahead log record a retrained bundle folds in.
    public static let changeLogThroughKey = "change_log_through"

    /// The last write-ahead log record this bundle was retrained on (0: none).
    public var changeLogThrough: UInt64 { manifest.parameters[Self.changeLogThroughKey].flatMap { UInt64($0) } ?? 0 }

    public struct Manifest: Codable, Sendable {
        public var format = ModelBundle.format
        public var formatVersion = ModelBundle.formatVersion
        public var kind: Kind
        /// Unix seconds.
        public var created: Int64
        /// Where the data came from (a file name, "ml-100k").
        public var dataLabel: String
        public var dataFingerprint: String
        public var schema: FeatureSchema?
        public var serving: ServingSettings
        /// The training configuration that made the bundle, as name -> value.
        public var parameters: [String: String]
        /// Headline metrics (HR@10, NDCG@10, ...).
        public var metrics: [String: Double]
        public var files: [String: FileEntry] = [:]

        public init(kind: Kind, dataLabel: String, dataFingerprint: String, schema: FeatureSchema?, serving: ServingSettings,
                    parameters: [String: String] = [:], metrics: [String: Double] = [:]) {
            self.kind = kind
            created = Int64(Date().timeIntervalSince1970)
            self.dataLabel = dataLabel
            self.dataFingerprint = dataFingerprint
            self.schema = schema
            self.serving = serving
            self.parameters = parameters
            self.metrics = metrics
        }

        enum CodingKeys: String, CodingKey {
            case format, kind, created, schema, serving, parameters, metrics, files
            case formatVersion = "format_version", dataLabel = "data_label", dataFingerprint = "data_fingerprint"
        }
    }

    public let folder: String
    public let manifest: Manifest

    public func path(_ file: String) -> String { "\(folder)/\(file)" }

    /// The error for `file` of this bundle.
    public func failure(_ file: String, _ reason: String) -> EngineError { .corruptBundle(folder: folder, file: file, reason: reason) }

    /// The bundle's catalog.
    func loadCatalog() throws -> ItemCatalog {
        try reading(File.catalog) { try ItemCatalog.load(from: path(File.catalog)) }
    }

    /// The bundle's index (mapped), checked to hold exactly `items` vectors of `dimension`,
    /// ids 0..<items: an index from another bundle is refused here.
    /// - Parameter writable: load into memory (live writes change the index) rather than mmap it read-only.
    func loadIndex(items: Int, dimension: Int, writable: Bool = false) throws -> HNSWIndex {
        let index = try reading(File.index) { try HNSWIndex.load(from: path(File.index), mmap: !writable) }
        guard index.dimension == dimension, index.count == items, (0..<items).allSatisfy({ index.contains(UInt64($0)) }) else {
            throw failure(File.index, "\(index.count) vectors of dimension \(index.dimension), the bundle's other files describe "
                          + "\(items) items of dimension \(dimension): the files come from different models")
        }
        return index
    }

    /// Runs a loader of `file`, naming the file in whatever it throws.
    public func reading<T>(_ file: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as EngineError { throw e } catch { throw failure(file, "\(error)") }
    }
    public func has(_ file: String) -> Bool { manifest.files[file] != nil }

    // MARK: - Writing

    /// Writes a bundle to `folder`, which must not exist yet: `write(file, path)` is called
    /// for each file with a path inside a hidden temporary sibling folder; then each file is
    /// measured and checksummed into the manifest, the manifest is written, and the folder
    /// renamed into place. A crash leaves no half-written bundle at `folder`.
    /// - Throws: the writers' errors, or `EngineError.invalidData` when `folder` exists.
    @discardableResult
    public static func write(to folder: String, manifest: Manifest, files: [String],
                             _ write: (_ file: String, _ path: String) throws -> Void) throws -> ModelBundle {
        let fm = FileManager.default
        guard !fm.fileExists(atPath: folder) else { throw EngineError.invalidData("\(folder) exists already; a bundle is written to a new folder") }
        let url = URL(fileURLWithPath: folder)
        let parent = url.deletingLastPathComponent().path
        try fm.createDirectory(atPath: parent, withIntermediateDirectories: true)
        Leftovers.sweep(parent)
        let temp = "\(parent)/.\(url.lastPathComponent).partial-\(getpid())-\(UUID().uuidString)"
        try fm.createDirectory(atPath: temp, withIntermediateDirectories: false)
        var done = false
        defer { if !done { try? fm.removeItem(atPath: temp) } }
        var m = manifest
        for file in files {
            try write(file, "\(temp)/\(file)")
            m.files[file] = try entry(of: "\(temp)/\(file)")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(Array(try encoder.encode(m)) + [10], to: "\(temp)/\(File.manifest)")
        syncDirectory(temp)
        try fm.moveItem(atPath: temp, toPath: folder)
        syncDirectory(parent)
        done = true
        return ModelBundle(folder: folder, manifest: m)
    }

    /// A file's manifest entry: its size and CRC-32C, as `write` records and `open` checks.
    public static func entry(of path: String) throws -> FileEntry {
        let file = try MappedFile(path: path)
        let n = file.bytes.count, body = max(0, n - 4)
        let crc = CRC32C.update(0, UnsafeRawBufferPointer(rebasing: file.bytes[0..<body]))
        var tail: UInt32 = 0
        for b in file.bytes[body..<n] { tail = tail << 8 | UInt32(b) }
        return FileEntry(bytes: Int64(n), crc32c: String(format: "%08x%08x", crc, tail))
    }

    static func syncDirectory(_ path: String) {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY)
        if fd >= 0 { _ = fsync(fd); close(fd) }
    }

    // MARK: - Reading

    /// Reads and checks a bundle's manifest alone (what kind of bundle, which files), without
    /// reading the files it lists: `open` does that.
    /// - Throws: `EngineError.corruptBundle` for a missing, unreadable or unsupported manifest.
    public static func manifest(of folder: String) throws -> Manifest {
        let folder = folder.hasSuffix("/") ? String(folder.dropLast()) : folder
        let manifestPath = "\(folder)/\(File.manifest)"
        func bad(_ file: String, _ reason: String) -> EngineError { .corruptBundle(folder: folder, file: file, reason: reason) }
        guard FileManager.default.fileExists(atPath: manifestPath) else {
            if FileManager.default.fileExists(atPath: "\(folder)/\(File.towers)") {
                throw bad(File.manifest, "missing: this folder was written before bundles had manifests; train it again")
            }
            throw bad(File.manifest, "missing (not a model bundle)")
        }
        let bytes: [UInt8]
        do { bytes = try FileBytes.read(manifestPath) } catch { throw bad(File.manifest, "\(error)") }
        guard bytes.count <= 64 << 20 else { throw bad(File.manifest, "\(bytes.count) bytes is too large for a manifest") }
        let m: Manifest
        do { m = try JSONDecoder().decode(Manifest.self, from: Data(bytes)) } catch {
            throw bad(File.manifest, "not a readable manifest: \(error)")
        }
        guard m.format == format else { throw bad(File.manifest, "format '\(m.format)' is not \(format)") }
        guard (1...formatVersion).contains(m.formatVersion) else {
            throw bad(File.manifest, "format version \(m.formatVersion) is not supported (this build reads 1...\(formatVersion))")
        }
        do { try m.serving.validate() } catch { throw bad(File.manifest, "\(error)") }
        let required = m.kind == .funnel ? [File.towers, File.index, File.catalog] : [File.index, File.catalog]
        for file in required where m.files[file] == nil { throw bad(File.manifest, "lists no \(file)") }
        return m
    }

    /// Opens a bundle: reads the manifest and checks every file it lists (present, of the
    /// recorded size and checksum) before anything else reads them.
    /// - Throws: `EngineError.corruptBundle` naming the file that is missing, truncated or altered.
    public static func open(_ folder: String) throws -> ModelBundle {
        let folder = folder.hasSuffix("/") ? String(folder.dropLast()) : folder
        func bad(_ file: String, _ reason: String) -> EngineError { .corruptBundle(folder: folder, file: file, reason: reason) }
        let m = try manifest(of: folder)
        for (file, expected) in m.files.sorted(by: { $0.key < $1.key }) {
            guard !file.contains("/"), !file.hasPrefix(".") else { throw bad(file, "not a file name of a bundle") }
            let path = "\(folder)/\(file)"
            var st = stat()
            guard lstat(path, &st) == 0 else { throw bad(file, "missing") }
            guard (st.st_mode & S_IFMT) == S_IFREG else {
                throw bad(file, (st.st_mode & S_IFMT) == S_IFLNK ? "a symlink (a bundle holds its own files)" : "not a regular file")
            }
            let actual: FileEntry
            do { actual = try entry(of: path) } catch { throw bad(file, "unreadable: \(error)") }
            guard actual.bytes == expected.bytes else {
                throw bad(file, "\(actual.bytes) bytes, the manifest says \(expected.bytes): truncated or replaced")
            }
            guard actual.crc32c == expected.crc32c else {
                throw bad(file, "checksum \(actual.crc32c), the manifest says \(expected.crc32c): the file is corrupt or from another bundle")
            }
        }
        return ModelBundle(folder: folder, manifest: m)
    }
}
