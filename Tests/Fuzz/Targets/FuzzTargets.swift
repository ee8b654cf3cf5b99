import Datasets
import Engine
import Foundation
import FunnelServer
import GBDT
import HNSW
import Hummingbird
import HTTPTypes
import Logging
import NIOCore
import NIOEmbedded
import Persistence
import Registry
import TwoTower
import _TestSupport

/// Every parser and decoder of Funnel as a fuzz target: bytes in, the loader a user would
/// reach with such a file, then a use of what loaded (a search, a prediction, a
/// recommendation), so that a value that passed the loader but breaks its user is found too.
///
/// A thrown error is the right answer to a bad input; a trap, an out-of-bounds access or
/// an allocation past the fuzzer's limit is a finding. Containers (towers, HNSW, GBDT,
/// catalog, history, registry manifest) are sealed around the input with a valid header
/// and CRC, with the magic and version of a file this build wrote, so mutations reach the
/// payload decoders instead of stopping at the checksum. The `bundle-*` targets put the
/// input in place of one file of a trained bundle and load the whole bundle: files that
/// disagree with each other are the finding there.
public enum FuzzTargets {
    public struct Target: Sendable {
        public let name: String
        public let about: String
        let run: @Sendable ([UInt8]) throws -> Void
        /// The same work for a caller already on the task pool (the `http` target's routes are
        /// async: run from a pool thread, the blocking form holds that thread until its task
        /// gets another).
        var runAsync: (@Sendable ([UInt8]) async throws -> Void)? = nil
    }

    /// Runs `data` through `target`; errors thrown by the loaders are the expected answer.
    /// - Returns: whether the input was accepted.
    @discardableResult
    public static func run(_ target: Target, _ data: [UInt8], why: ((Error) -> Void)? = nil) -> Bool {
        do { try target.run(data); return true } catch { why?(error); return false }
    }

    /// `run` for async callers: the same answer, without blocking a thread of the pool.
    public static func answer(_ target: Target, _ data: [UInt8], why: ((Error) -> Void)? = nil) async -> Bool {
        guard let runAsync = target.runAsync else { return run(target, data, why: why) }
        do { try await runAsync(data); return true } catch { why?(error); return false }
    }

    public static func target(named name: String) -> Target? { all.first { $0.name == name } }

    public static let all: [Target] = [
        Target(name: "csv", about: "CSV reader: quoting, delimiters, line ends") { data in
            var r = try CSVReader(bytes: data, path: "input.csv")
            while try r.next() != nil {}
        },
        Target(name: "catalog", about: "a whole catalog: schema, items, users, interactions (parts split by a line '====')") { data in
            let parts = split(data, on: Array("\n====\n".utf8))
            let dir = Scratch.shared.folder("catalog")
            func part(_ i: Int, _ name: String) throws -> String? {
                guard i < parts.count else { return nil }
                try write(parts[i], to: "\(dir)/\(name)")
                return "\(dir)/\(name)"
            }
            let schemaPath = try part(0, "schema.json")
            let schema = try schemaPath.map { try FeatureSchema.load($0) } ?? FeatureSchema()
            let items = try part(1, "items.csv"), users = try part(2, "users.csv")
            guard let interactions = try part(3, "interactions.csv") else { return }
            let data = try DataSource.csv(interactions: interactions, items: items, users: users, schema: schema).load()
            _ = data.log.users.count
        },
        Target(name: "schema", about: "the feature schema (JSON)") { data in
            _ = try FeatureSchema.load(try Scratch.shared.file("schema.json", data))
        },
        Target(name: "fvecs", about: "texmex .fvecs") { try vectors($0, .fvecs) },
        Target(name: "ivecs", about: "texmex .ivecs") { try vectors($0, .ivecs) },
        Target(name: "bvecs", about: "texmex .bvecs") { try vectors($0, .bvecs) },
        Target(name: "idx", about: "IDX (MNIST)") { try vectors($0, .idx) },
        Target(name: "npy", about: "NumPy .npy") { try vectors($0, .npy) },
        Target(name: "svmlight", about: "SVMlight / LightGBM text with qid") { data in
            _ = try LabeledData.readSVMLight(try Scratch.shared.file("train.svm", data)).labels.count
        },
        Target(name: "query", about: "LightGBM .query group sizes") { data in
            _ = try LabeledData.readGroups(try Scratch.shared.file("train.query", data), rows: 3)
        },
        Target(name: "weight", about: "LightGBM .weight row weights") { data in
            _ = try LabeledData.readWeights(try Scratch.shared.file("train.weight", data), rows: 3)
        },
        Target(name: "delimited", about: "delimited text with a label column") { data in
            _ = try LabeledData.readDelimited(try Scratch.shared.file("train.tsv", data)).labels.count
        },
        Target(name: "lightgbm", about: "LightGBM model.txt, then predictions") { data in
            let model = try GBDTModel.loadLightGBM(try Scratch.shared.file("model.txt", data))
            predict(model)
        },
        Target(name: "container", about: "the Funnel container itself (header, length, CRC), unsealed") { data in
            _ = try FunnelFile.read(try Scratch.shared.file("raw.fnl", data), magic: "FNLTWOT\u{1}", versions: 1...3)
        },
        Target(name: "towers", about: "two-tower model payload, then embedding every item") { data in
            let (model, _, _) = try TwoTowerModel.load(from: try sealed(data, like: Templates.shared.towers))
            _ = model.embedAll(model.items)
        },
        Target(name: "hnsw", about: "HNSW index payload (mapped when the selector's high bit is set), then searches") { data in
            let path = try sealed(data, like: Templates.shared.hnsw)
            let index = try HNSWIndex.load(from: path, mmap: (data.first ?? 0) & 0x80 != 0)
            var rng = SystemRandomNumberGenerator()
            let q = (0..<index.dimension).map { _ in Float.random(in: -1...1, using: &rng) }
            _ = try index.search(q, k: 10, ef: 32)
        },
        Target(name: "gbdt", about: "GBDT ranker payload, then predictions") { data in
            predict(try GBDTModel.load(from: try sealed(data, like: Templates.shared.gbdt)))
        },
        Target(name: "item-catalog", about: "a bundle's item catalog payload") { data in
            _ = try ItemCatalog.load(from: try sealed(data, like: Templates.shared.catalog))
        },
        Target(name: "history", about: "a user history payload") { data in
            let h = try UserHistory.load(from: try sealed(data, like: Templates.shared.history), users: 50, items: 80)
            for u in 0..<50 { _ = h.items(of: u) }
        },
        Target(name: "registry", about: "the registry manifest payload, then listing and resolving") { data in
            let root = Templates.shared.registryCopy()
            _ = try sealed(data, like: Templates.shared.registryManifest, at: "\(root)/registry.fnl")
            let registry = ModelRegistry(root: root)
            for model in try registry.manifest().models.keys { _ = try registry.versions(of: model) }
        },
        Target(name: "wal", about: "a write-ahead log file, each record decoded, checked and applied to a bundle's engine") { data in
            let path = try Scratch.shared.file("live.wal", data)
            // A log is replayed onto the bundle it was written against: a fresh engine, so that
            // no other target's writes (live-change shares one) change what the records mean.
            let engine = try Engine(folder: Templates.shared.bundle, inline: true, writable: true)
            for record in try WriteAheadLog.read(path) {
                let change = try JSONDecoder().decode(LiveChange.self, from: Data(record.payload))
                try engine.check(change)
                try engine.apply(change)
            }
        },
        Target(name: "live-change", about: "a live write as the log holds it (JSON), checked then applied") { data in
            let change = try JSONDecoder().decode(LiveChange.self, from: Data(data))
            let engine = Templates.shared.liveEngine()
            try engine.check(change)
            try engine.apply(change)
        },
        Target(name: "server-config", about: "funnel serve's JSON config file") { data in
            _ = try ServerConfig.load(file: try Scratch.shared.file("serve.json", data), environment: [:])
        },
        Target(name: "filter", about: "item filters, one per line") { data in
            _ = try ItemFilter.parse(String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init))
        },
        Target(name: "http", about: "an HTTP request (first line 'METHOD /path?query', then the body) through the API's routes",
               run: { data in try Templates.shared.http(data) },
               runAsync: { data in try await Templates.shared.httpAsync(data) }),
    ] + ["manifest.json", "towers.fnl", "items.hnsw", "ranker.gbdt", "catalog.fnl"].map { file in
        Target(name: "bundle-" + file.split(separator: ".")[0], about: "a trained bundle with \(file) replaced, then a recommendation") { data in
            try Templates.shared.bundle(replacing: file, with: data)
        }
    }

    // MARK: - Helpers

    static func vectors(_ data: [UInt8], _ format: VectorFormat) throws {
        let set = try VectorFile.decode(data, format: format, path: "input.\(format.rawValue)", limit: nil)
        _ = set.rows
    }

    static func predict(_ model: GBDTModel) {
        let predictor = GBDTPredictor(model)
        for fill in [Float(0), 1, -1e30, .nan] {
            let row = [Float](repeating: fill, count: max(1, model.featureCount))
            _ = predictor.predict(row)
        }
    }

    static func write(_ bytes: [UInt8], to path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
            throw PersistenceError.io(path: path, operation: "write the fuzz input", errno: errno)
        }
    }

    /// The input as the payload of a container with the magic and version of `template`.
    /// When the template's format has earlier versions, the input's first byte picks the
    /// version (1 + its low 7 bits mod the newest) and the payload follows it.
    static func sealed(_ input: [UInt8], like template: String, at path: String? = nil) throws -> String {
        let head = try FileBytes.read(template)
        let magic = String(decoding: head[0..<8], as: UTF8.self)
        let newest = versionOf(head)
        var payload = input[...], version = newest
        if newest > 1, let selector = input.first {
            version = 1 + UInt32(selector & 0x7f) % newest
            payload = input.dropFirst()
        }
        let out = path ?? Scratch.shared.folder("sealed") + "/" + URL(fileURLWithPath: template).lastPathComponent
        try FunnelFile.write(to: out, magic: magic, version: version) { w in payload.withUnsafeBytes { w.write(raw: $0) } }
        return out
    }

    static func versionOf(_ file: [UInt8]) -> UInt32 {
        file[8..<12].withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
    }

    /// A seed for a sealed target: the file's payload, after the version selector when its
    /// format has earlier versions.
    public static func sealedSeed(of path: String, flag: UInt8 = 0) throws -> [UInt8] {
        let all = try FileBytes.read(path)
        let newest = versionOf(all)
        let payload = Array(all[20..<(all.count - 4)])
        return newest > 1 ? [UInt8(newest - 1) | flag] + payload : payload
    }

    static func split(_ data: [UInt8], on separator: [UInt8]) -> [[UInt8]] {
        var parts: [[UInt8]] = [], start = 0, i = 0
        while i + separator.count <= data.count {
            if data[i..<(i + separator.count)].elementsEqual(separator) {
                parts.append(Array(data[start..<i])); i += separator.count; start = i
            } else { i += 1 }
        }
        parts.append(Array(data[start...]))
        return parts
    }
}

/// A scratch folder of this process, removed at exit.
final class Scratch: @unchecked Sendable {
    static let shared = Scratch()
    let root: String

    init() {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        root = "\(base)/funnel-fuzz-\(getpid())"
        try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: Scratch.shared.root) }
    }

    func folder(_ name: String) -> String {
        let path = "\(root)/\(name)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func file(_ name: String, _ data: [UInt8]) throws -> String {
        let path = "\(root)/\(name)"
        try FuzzTargets.write(data, to: path)
        return path
    }
}

/// Real files written by this build, made once per process: a small trained bundle, a
/// history, a registry holding the bundle. Sealed targets take their magic and version
/// from them; bundle targets replace one of their files.
final class Templates: @unchecked Sendable {
    static let shared = Templates()

    let catalogFolder: String
    let bundle: String
    let history: String
    let registry: String
    let knownUser: String
    let firstItem: String
    let schemaJSON: String
    private let lock = NSLock()
    private var live: Engine?
    private var liveUses = 0
    private var server: (responder: RouterResponder<BasicRequestContext>, channel: EmbeddedChannel)?

    var towers: String { "\(bundle)/towers.fnl" }
    var hnsw: String { "\(bundle)/items.hnsw" }
    var gbdt: String { "\(bundle)/ranker.gbdt" }
    var catalog: String { "\(bundle)/catalog.fnl" }
    var registryManifest: String { "\(registry)/registry.fnl" }

    init() {
        do {
            let cat = try CSVCatalog(users: 50, items: 80, interactions: 1_500, seed: 3)
            catalogFolder = cat.folder
            var config = CSVCatalog.config()
            config.towers.epochs = 1
            config.towers.dimension = 8
            config.towers.hidden = [8]
            config.ranker.rounds = 5
            // Small files: a title vocabulary of 64 buckets keeps the towers a few KB.
            var schema = cat.schema
            if let i = schema.items?.features.firstIndex(where: { $0.column == "title" }) { schema.items?.features[i].buckets = 64 }
            schemaJSON = try schema.json()
            let source = DataSource.csv(interactions: "\(cat.folder)/interactions.csv", items: "\(cat.folder)/items.csv",
                                        users: "\(cat.folder)/users.csv", schema: schema)
            let funnel = try FunnelTrainer.train(try source.load(), config: config)
            bundle = Scratch.shared.folder("template-bundle")
            try? FileManager.default.removeItem(atPath: bundle)
            _ = try funnel.writeBundle(to: bundle)
            // The same bytes in every process (seeds of one run fit the templates of the next):
            // no timings, no creation time.
            try FuzzTargets.write(Array("{}\n".utf8), to: "\(bundle)/metrics.json")
            try Self.reseal(manifestOf: bundle, file: "metrics.json", created: 0)
            history = "\(Scratch.shared.folder("template"))/history.fnl"
            try UserHistory((0..<50).map { u in Set((0..<Int32(u % 7)).map { ($0 * 11 + Int32(u)) % 80 }) }).save(to: history)
            registry = Scratch.shared.folder("template-registry")
            let moved = Scratch.shared.folder("template") + "/registered"
            try? FileManager.default.removeItem(atPath: moved)
            try FileManager.default.copyItem(atPath: bundle, toPath: moved)
            _ = try ModelRegistry(root: registry).register("shop", from: moved, dataFingerprint: "fuzz", metrics: [:])
            knownUser = cat.catalog.users.keys.keys.first ?? "u0"
            firstItem = cat.catalog.items.keys.keys.first ?? "i0"

        } catch {
            fatalError("fuzz: cannot make the template files: \(error)")
        }
    }

    /// Rewrites a bundle manifest's entry for `file` (size and CRC-32C of what is there now),
    /// so that a replaced file reaches the loaders behind the manifest's check.
    static func reseal(manifestOf folder: String, file: String, created: Int? = nil) throws {
        let path = "\(folder)/manifest.json"
        guard var m = try JSONSerialization.jsonObject(with: Data(try FileBytes.read(path))) as? [String: Any],
              var files = m["files"] as? [String: Any] else { return }
        let entry = try ModelBundle.entry(of: "\(folder)/\(file)")
        files[file] = ["bytes": entry.bytes, "crc32c": entry.crc32c]
        m["files"] = files
        if let created { m["created"] = created }
        try FuzzTargets.write(Array(try JSONSerialization.data(withJSONObject: m, options: [.prettyPrinted, .sortedKeys])), to: path)
    }

    /// A copy of the registry root whose manifest a target may overwrite.
    func registryCopy() -> String {
        let copy = Scratch.shared.folder("registry")
        try? FileManager.default.removeItem(atPath: copy)
        try? FileManager.default.copyItem(atPath: registry, toPath: copy)
        return copy
    }

    /// A writable engine over the template bundle, renewed every 500 uses so that applied
    /// writes do not pile up.
    func liveEngine() -> Engine {
        lock.lock(); defer { lock.unlock() }
        liveUses += 1
        if live == nil || liveUses % 500 == 0 { live = try? Engine(folder: bundle, inline: true, writable: true) }
        return live!
    }

    /// Loads a copy of the template bundle with `file` replaced by `data`. Each file has its
    /// own copy: the replay test runs the bundle targets at once, and one target's
    /// replacement must never be read through another's manifest.
    func bundle(replacing file: String, with data: [UInt8]) throws {
        let copy = Scratch.shared.folder("bundle-" + file)
        for name in ["manifest.json", "towers.fnl", "items.hnsw", "ranker.gbdt", "catalog.fnl", "metrics.json"] where name != file {
            let target = "\(copy)/\(name)"
            if !FileManager.default.fileExists(atPath: target) { try? FileManager.default.copyItem(atPath: "\(bundle)/\(name)", toPath: target) }
        }
        if file == "manifest.json" {
            try FuzzTargets.write(data, to: "\(copy)/\(file)")
        } else {
            try? FileManager.default.removeItem(atPath: "\(copy)/manifest.json")
            try FileManager.default.copyItem(atPath: "\(bundle)/manifest.json", toPath: "\(copy)/manifest.json")
            _ = try FuzzTargets.sealed(data, like: "\(bundle)/\(file)", at: "\(copy)/\(file)")
            try Self.reseal(manifestOf: copy, file: file)
        }
        defer { try? FileManager.default.removeItem(atPath: "\(copy)/\(file)") }
        let e = try Engine(folder: copy, inline: true)
        _ = try e.recommend(user: knownUser, k: 10)
        _ = try e.recommend(user: "nobody", k: 5, touched: [firstItem])
        _ = try e.similar(item: firstItem, k: 5)
    }

    /// The input as a request: `METHOD /path?query` on the first line, the body after it.
    /// `httpAsync` from a thread outside the task pool (libFuzzer's), waiting for its answer.
    func http(_ data: [UInt8]) throws {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox()
        Task {
            do { try await httpAsync(data) } catch { box.error = error }
            done.signal()
        }
        done.wait()
        if let error = box.error { throw error }
    }

    func httpAsync(_ data: [UInt8]) async throws {
        let newline = data.firstIndex(of: 10) ?? data.count
        let line = String(decoding: data[0..<newline], as: UTF8.self)
        let body = newline < data.count ? Array(data[(newline + 1)...]) : []
        let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
        guard parts.count == 2, let method = HTTPRequest.Method(parts[0]), parts[1].hasPrefix("/") else { return }
        let engine = liveEngine()
        let (responder, channel) = lock.withLock { () -> (RouterResponder<BasicRequestContext>, EmbeddedChannel) in
            if let server { return server }
            let service = try! LiveService(fixed: engine, logPath: nil)
            let s = FunnelServer(service: service, name: "shop", registryRoot: nil, settings: ServerSettings(), metrics: { "" })
            server = (s.router().buildResponder(), EmbeddedChannel())
            return server!
        }
        let request = Request(head: HTTPRequest(method: method, scheme: "http", authority: "fuzz", path: parts[1]),
                              body: RequestBody(buffer: ByteBuffer(bytes: body)))
        let context = BasicRequestContext(source: .init(channel: channel, logger: Logger(label: "fuzz")))
        let status: Int
        do {
            status = try await responder.respond(to: request, context: context).status.code
        } catch {
            status = (error as? HTTPResponseError)?.status.code ?? 500
        }
        // The API answers every input with a status it documents; a 500 is a finding.
        if status >= 500 && status != 503 { fatalError("fuzz: \(line) answered \(status)") }
    }

    final class ResultBox: @unchecked Sendable { var error: Error? }
}
