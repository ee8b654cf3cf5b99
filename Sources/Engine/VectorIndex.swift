import Datasets
import ExactSearch
import Foundation
import HNSW
import LinearAlgebra
import Persistence
import Rerank
import Serving
import TwoTower

/// An index-only bundle: vectors a user brings (their own embeddings), an HNSW index over
/// them, and the items' ids and attributes: the hnswlib / Qdrant use of Funnel. Searched
/// by vector or by an item's id, with filters on the attributes; answers have the shape of
/// the funnel's (`EngineAnswer`), each item named and with its retrieval rank and score.
///
/// Files: `manifest.json`, `items.hnsw`, `vectors.fnl` (the float vectors as given: the
/// source of an item's own vector), `catalog.fnl` (ids, titles, categories, creation times,
/// numeric attributes).
///
/// Memory when serving: the HNSW graph (memory-mapped) and the catalog. The float vectors
/// stay in their mapped file, read for an item's own vector and, under fp16 storage, to
/// re-score each search's candidates (`RescoreSource`): fp16 traversal with float answers.
/// A filter that leaves few items is answered by the index's exact scan. So an fp16 index
/// of ten million 128-d vectors serves from about 4 GB, plus the vector rows the kernel
/// keeps cached.
public final class VectorIndex: @unchecked Sendable {
    public let bundle: ModelBundle
    public let catalog: ItemCatalog
    public let index: HNSWIndex
    public let name: String?
    public let version: String?
    let rows: [String: Int]
    /// vectors.fnl, mapped; `floats` points at its values (row-major, `dimension` per row).
    let vectorFile: MappedFile
    let floats: UnsafePointer<Float>

    public static let vectorsFile = "vectors.fnl"
    static let vectorsMagic = "FNLVECTR"

    /// What `build` needs besides the vectors.
    public struct BuildOptions: Sendable {
        public var parameters = HNSWIndex.Parameters(metric: .cosine, M: 16, efConstruction: 200)
        public var threads = Parallel.availableCores
        public var ef = 128
        public init() {}
    }

    /// Builds an index bundle at `folder` (which must not exist).
    /// - Parameters:
    ///   - ids: one per vector (default "0", "1", ...); duplicates are refused.
    ///   - attributes: the items' attribute table, keyed by the same ids (rows are matched
    ///     by id; ids it lacks get missing attributes); `title`, `category` and `createdAt`
    ///     name its columns, every numeric column becomes filterable.
    /// - Throws: `EngineError.invalidData` for mismatched sizes, duplicate ids or non-finite values.
    @discardableResult
    public static func build(vectors: Matrix, ids: [String]? = nil, attributes: AttributeTable? = nil, title: String? = nil,
                             category: String? = nil, createdAt: String? = nil, options: BuildOptions = BuildOptions(),
                             dataLabel: String = "vectors", to folder: String,
                             progress: (TrainingEvent) -> Void = { _ in }) throws -> ModelBundle {
        guard vectors.rows > 0, vectors.columns > 0 else { throw EngineError.invalidData("no vectors to index") }
        if let bad = vectors.storage.firstIndex(where: { !$0.isFinite }) {
            throw EngineError.invalidData("vector \(bad / vectors.columns) holds \(vectors.storage[bad]) at dimension \(bad % vectors.columns)")
        }
        var crc: UInt32 = 0
        vectors.storage.withUnsafeBytes { crc = CRC32C.update(crc, $0) }
        return try assemble(rows: vectors.rows, columns: vectors.columns, crc: crc, ids: ids, attributes: attributes, title: title,
                            category: category, createdAt: createdAt, options: options, dataLabel: dataLabel, to: folder,
                            buildIndex: { try IndexBuilding.build(vectors, parameters: options.parameters, threads: options.threads, progress: progress) },
                            writeVectors: { w in try vectors.storage.withUnsafeBytes { try w.write(raw: $0) } })
    }

    /// Builds an index bundle from a vector file (`.fvecs`, `.bvecs` or `.npy`) read a slice
    /// at a time: memory stays at the index, the catalog and one slice, whatever the file's
    /// size (`build(vectors:...)` holds every vector, and more while it writes them).
    @discardableResult
    public static func build(vectorFile path: String, ids: [String]? = nil, attributes: AttributeTable? = nil, title: String? = nil,
                             category: String? = nil, createdAt: String? = nil, options: BuildOptions = BuildOptions(),
                             dataLabel: String = "vectors", to folder: String,
                             progress: (TrainingEvent) -> Void = { _ in }) throws -> ModelBundle {
        let slice = 65_536
        // First pass: the sizes, every value checked, and the fingerprint.
        let first = try VectorFileReader(path: path)
        guard first.rows > 0 else { throw EngineError.invalidData("\(path): no vectors to index") }
        var crc: UInt32 = 0
        while let part = try first.next(maxRows: slice) { part.storage.withUnsafeBytes { crc = CRC32C.update(crc, $0) } }
        return try assemble(rows: first.rows, columns: first.columns, crc: crc, ids: ids, attributes: attributes, title: title,
                            category: category, createdAt: createdAt, options: options, dataLabel: dataLabel, to: folder,
                            buildIndex: { try IndexBuilding.build(streaming: path, parameters: options.parameters, threads: options.threads,
                                                                  slice: slice, progress: progress) },
                            writeVectors: { w in
                                let again = try VectorFileReader(path: path)
                                while let part = try again.next(maxRows: slice) { try part.storage.withUnsafeBytes { try w.write(raw: $0) } }
                            })
    }

    /// The bundle around an index and its vectors, whichever way they come.
    private static func assemble(rows n: Int, columns d: Int, crc: UInt32, ids: [String]?, attributes: AttributeTable?, title: String?,
                                 category: String?, createdAt: String?, options: BuildOptions, dataLabel: String, to folder: String,
                                 buildIndex: () throws -> HNSWIndex,
                                 writeVectors: (inout PayloadStream) throws -> Void) throws -> ModelBundle {
        let ids = ids ?? (0..<n).map(String.init)
        guard ids.count == n else { throw EngineError.invalidData("\(ids.count) ids for \(n) vectors") }
        let keys = Vocabulary(ids)
        guard keys.count == ids.count else {
            var seen = Set<String>()
            let dup = ids.first { !seen.insert($0).inserted } ?? ""
            throw EngineError.invalidData("id '\(dup)' names two vectors")
        }
        let none = try EntityFeatures.build(count: 0, table: nil, kinds: [])
        var data = TrainingData(label: dataLabel, log: InteractionLog(items: keys), users: AttributeTable(),
                                items: attributes.map { $0.aligned(to: keys).table } ?? AttributeTable(keys: keys),
                                userFeatures: none, itemFeatures: none,
                                category: category, createdAt: createdAt, title: title)
        let numeric = (attributes?.columnOrder ?? []).filter { if case .numeric? = attributes?.columns[$0] { return true } else { return false } }
        data.schema = FeatureSchema(items: .init(key: "id", features: numeric.map { .init(column: $0, type: .numeric) },
                                                 category: category, createdAt: createdAt, title: title))
        let catalog = try ItemCatalog(data)
        let index = try buildIndex()
        var serving = ServingSettings()
        serving.ef = options.ef
        let p = options.parameters
        let manifest = ModelBundle.Manifest(kind: .index, dataLabel: dataLabel, dataFingerprint: String(format: "crc32c:%08x/%d", crc, n),
                                            schema: data.schema, serving: serving,
                                            parameters: ["metric": p.metric.rawValue, "hnsw_m": "\(p.M)", "hnsw_ef_construction": "\(p.efConstruction)",
                                                         "quantization": p.quantization.rawValue, "dimension": "\(d)"])
        return try ModelBundle.write(to: folder, manifest: manifest, files: [ModelBundle.File.index, vectorsFile, ModelBundle.File.catalog]) { file, path in
            switch file {
            case ModelBundle.File.index: try index.save(to: path)
            case ModelBundle.File.catalog: try catalog.save(to: path)
            default:
                // rows, columns, then the values as `PayloadWriter.write(array:)` lays them out.
                try FunnelFile.write(to: path, magic: vectorsMagic, version: 1, payloadLength: 24 + n * d * 4) { w in
                    try w.write(UInt64(n))
                    try w.write(UInt64(d))
                    try w.write(UInt64(n * d))
                    try writeVectors(&w)
                }
            }
        }
    }

    /// Loads an index bundle, checking every file and that they agree.
    public init(bundle: ModelBundle, name: String? = nil, version: String? = nil) throws {
        guard bundle.manifest.kind == .index else {
            throw EngineError.corruptBundle(folder: bundle.folder, file: ModelBundle.File.manifest, reason: "a funnel bundle; load it with Engine")
        }
        let bad = bundle.failure
        self.bundle = bundle
        self.name = name
        self.version = version
        let catalog = try bundle.loadCatalog()
        self.catalog = catalog
        let n = catalog.itemIDs.count
        (vectorFile, floats, dimension) = try bundle.reading(Self.vectorsFile) {
            let file = try MappedFile(path: bundle.path(Self.vectorsFile))
            var (_, r) = try FunnelFile.open(file, magic: Self.vectorsMagic, versions: 1...1)
            let rows = try r.readCount("rows", max: n), columns = try r.readCount("columns", max: 1 << 16)
            guard rows == n, columns > 0 else { throw bad(Self.vectorsFile, "\(rows) x \(columns) vectors for \(n) items") }
            let count = try r.readCount("vectors count", max: r.remaining / 4)
            guard count == rows * columns else { throw bad(Self.vectorsFile, "\(count) values for \(rows) x \(columns)") }
            let values = try r.view(count * 4, "vectors")
            guard r.remaining == 0 else { throw bad(Self.vectorsFile, "\(r.remaining) bytes after the vectors") }
            // The values sit 44 bytes into the file: 4-byte aligned, so readable in place.
            let p = values.baseAddress!.assumingMemoryBound(to: Float.self)
            for i in 0..<count where !p[i].isFinite { throw bad(Self.vectorsFile, "vector \(i / columns) is not finite") }
            // Checked: let the kernel drop the pages until an item's vector is read again.
            file.dropResidentPages()
            return (file, UnsafePointer(p), columns)
        }
        index = try bundle.loadIndex(items: n, dimension: dimension)
        rows = Dictionary(catalog.itemIDs.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        if index.parameters.quantization == .fp16 {
            // Half-precision traversal, candidates re-scored with the mapped float vectors.
            let source = RescoreSource(first: floats, rows: n, dimension: dimension, owner: vectorFile)
            try bundle.reading(Self.vectorsFile) { try index.rescore(with: source) }
        }
    }

    public convenience init(folder: String, name: String? = nil, version: String? = nil) throws {
        try self.init(bundle: try ModelBundle.open(folder), name: name, version: version)
    }

    public var count: Int { catalog.itemIDs.count }
    public let dimension: Int

    /// Item `row`'s vector, as given (read from the mapped file).
    public func vector(_ row: Int) -> [Float] {
        Array(UnsafeBufferPointer(start: floats + row * dimension, count: dimension))
    }

    /// Every item's vector, copied into memory (for tools that measure against them).
    public var vectors: Matrix {
        (try? Matrix(rows: count, columns: dimension, storage: Array(UnsafeBufferPointer(start: floats, count: count * dimension))))
            ?? Matrix(rows: 0, columns: dimension)
    }
    public func item(_ id: String) -> Int? { rows[id] }

    /// The `k` items nearest to `vector` that pass `filter` (HNSW with the filter applied
    /// during the search; exact search when the filter leaves few items).
    /// - Throws: `EngineError.invalidRequest` for a vector of the wrong dimension or with
    ///   non-finite values, or k outside 1...`Engine.maxK`.
    public func search(vector: [Float], k: Int, ef: Int? = nil, filter: ItemFilter = ItemFilter(), exclude: Set<Int> = []) throws -> EngineAnswer {
        try search(vector: vector, k: k, ef: ef, allowed: try allowed(filter), exclude: exclude)
    }

    /// The items `filter` lets through, as a table for `search(vector:k:ef:allowed:)` (nil:
    /// every item): computed once, it serves any number of queries with the same filter.
    /// - Complexity: O(items x clauses).
    public func allowed(_ filter: ItemFilter) throws -> [Bool]? {
        filter.isEmpty ? nil : try filter.allowed(in: catalog.attributes)
    }

    /// `search(vector:k:ef:filter:)` with the filter's table already made.
    public func search(vector: [Float], k: Int, ef: Int? = nil, allowed table: [Bool]?, exclude: Set<Int> = []) throws -> EngineAnswer {
        guard table.map({ $0.count == count }) ?? true else { throw EngineError.invalidRequest("an allowed table of \(table!.count) items for \(count)") }
        guard (1...Engine.maxK).contains(k) else { throw EngineError.invalidRequest("k must be in 1...\(Engine.maxK), got \(k)") }
        guard vector.count == dimension else { throw EngineError.invalidRequest("the vector has \(vector.count) values, the index \(dimension) dimensions") }
        if let bad = vector.firstIndex(where: { !$0.isFinite }) { throw EngineError.invalidRequest("the vector holds \(vector[bad]) at position \(bad)") }
        let ef = ef ?? bundle.manifest.serving.ef
        guard (1...100_000).contains(ef) else { throw EngineError.invalidRequest("ef must be in 1...100000, got \(ef)") }
        let t0 = Clock.now()
        var allowed = table
        for i in exclude where i < count {
            if allowed == nil { allowed = [Bool](repeating: true, count: count) }
            allowed![i] = false
        }
        // A filter that leaves few items is scanned exactly inside the index (its own
        // stored vectors); otherwise the graph walk skips what the filter rejects.
        let found: [Neighbor]
        if let allowed {
            found = try index.search(vector, k: k, ef: max(ef, k), filter: SearchFilter { allowed[Int($0)] })
        } else {
            found = try index.search(vector, k: k, ef: max(ef, k))
        }
        let path = "hnsw"
        let t1 = Clock.now()
        let attrs = catalog.attributes, names = attrs.categoryNames
        let items = found.enumerated().map { (rank, n) -> ServedItem in
            let score = Double(index.parameters.metric == .l2 ? -n.distance : 1 - n.distance)
            return ServedItem(item: catalog.itemIDs[n.id], title: catalog.titles.map { $0[n.id] },
                              category: attrs.primaryCategory(n.id).map { names[$0] }, score: score, rankerScore: nil,
                              explanation: .init(retrievalRank: rank + 1, retrievalScore: score, lexicalRank: nil, rankerContributions: nil, rules: nil))
        }
        return EngineAnswer(model: name, version: version, user: nil, query: nil, path: [path], latencyUs: (t1 - t0) * 1e6,
                            stagesUs: ["retrieval": (t1 - t0) * 1e6], items: items)
    }

    /// The `k` items nearest to item `id` (itself left out).
    public func similar(item id: String, k: Int, ef: Int? = nil, filter: ItemFilter = ItemFilter()) throws -> EngineAnswer {
        guard let i = rows[id] else { throw EngineError.unknown(kind: "item", id: id) }
        var answer = try search(vector: vector(i), k: k, ef: ef, filter: filter, exclude: [i])
        answer.query = id
        return answer
    }
}

extension VectorIndex {
    /// Reads vectors a user brings: `.fvecs`, `.bvecs`, `.npy`, IDX, or CSV (`.csv`, `.tsv`).
    /// A CSV row is the vector's numbers; a first row that is not numbers is a header, and a
    /// header column named `id` gives each vector its id.
    /// - Throws: `DatasetError` or `EngineError.invalidData` naming the file and line.
    public static func readVectors(_ path: String) throws -> (vectors: Matrix, ids: [String]?) {
        let lower = path.lowercased()
        guard lower.hasSuffix(".csv") || lower.hasSuffix(".tsv") else { return (try VectorFile.readMatrix(path), nil) }
        var reader = try CSVReader(path: path, delimiter: lower.hasSuffix(".tsv") ? "\t" : ",")
        var values = [Float](), ids = [String](), columns = -1, idColumn: Int? = nil, first = true
        while let fields = try reader.next() {
            if first {
                first = false
                if fields.contains(where: { Float($0.trimmed) == nil }) {
                    idColumn = fields.firstIndex { $0.trimmed.lowercased() == "id" }
                    continue
                }
            }
            var row = [Float]()
            row.reserveCapacity(fields.count)
            for (j, f) in fields.enumerated() {
                if j == idColumn { ids.append(f.trimmed); continue }
                guard let x = Float(f.trimmed), x.isFinite else {
                    throw EngineError.invalidData("\(path):\(reader.line): field \(j + 1) '\(f)' is not a finite number")
                }
                row.append(x)
            }
            if columns < 0 { columns = row.count }
            guard row.count == columns, columns > 0 else {
                throw EngineError.invalidData("\(path):\(reader.line): \(row.count) numbers, the first row has \(columns)")
            }
            values.append(contentsOf: row)
        }
        guard columns > 0 else { throw EngineError.invalidData("\(path): no vectors") }
        return (try Matrix(rows: values.count / columns, columns: columns, storage: values), idColumn == nil ? nil : ids)
    }
}
