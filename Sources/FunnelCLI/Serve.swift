import ArgumentParser
import Foundation
import Funnel
import FunnelServer
import Logging
import Hummingbird
import Metrics
import PostgresLog
import Prometheus

/// `funnel serve`: the whole funnel of a model bundle over HTTP (hummingbird).
///
///     GET /recommend?user=ID&k=10[&touched=I1,I2][&exclude=I3]   ranked, diversified, explained
///     GET /similar?item=ID&k=10                                  nearest items, re-ranked
///     GET /search?q=TEXT&k=10[&mode=lexical|hybrid]               BM25 (+ embeddings), re-ranked
///     GET /health                                                200 with the served versions
///     GET /metrics                                               Prometheus text: stage latencies, fallbacks
///
/// A registry model with a canary serves both versions; each user is routed by a hash of
/// their id (the same users always see the canary). A shadow version answers a copy of
/// every request after the real answer is sent; `funnel_shadow_shared_items_total` over
/// `funnel_shadow_compared_items_total` is how much of the served lists it would have kept.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve a model bundle's funnel over HTTP (the /v1 API, live writes, registry operations), with metrics for Prometheus.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "A JSON config file of the server's knobs and serving settings (see ServerConfig); FUNNEL_* environment variables override it, flags override both.")
    var config: String?
    @Option var host: String?
    @Option var port: Int?
    @Option(help: "Largest k a request may ask for (default 100).") var maxK: Int?
    @Option(help: "Requests run through the funnel at once (default: twice the cores); the rest wait their turn, so that stage budgets measure the stages, not the queue.")
    var workers: Int?
    @Option(help: "The write-ahead log of live writes (default: <registry root>/<model>.wal, or <folder>.wal for a bundle folder).")
    var wal: String?
    @Flag(help: "Take no live writes (no write-ahead log).") var readOnly = false
    @Option(help: "A change log in PostgreSQL that replicas share, instead of the file log: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (?host=/socket/dir for a Unix socket, ?sslmode=require). Any replica takes writes; every replica applies every write in order.")
    var changeLog: String?
    @Option(help: "The change log's table (default: funnel_changes_ + the model's name).") var changeLogTable: String?
    @Option(help: "This replica's name in the change log's table of positions (default: HOST:PORT).") var replica: String?
    @Option(help: "Largest request body in bytes (default 1 MiB).") var maxBodyBytes: Int?
    @Option(help: "Write and admin routes need this key (Authorization: Bearer KEY); default: the FUNNEL_API_KEY environment variable.")
    var apiKey: String?
    @Option(help: "Recommendation answers kept in the result cache (0: no cache; default 10000). An answer is used while no item was written and the user has no new interaction, for at most --cache-ttl seconds.")
    var cacheEntries: Int?
    @Option(help: "Seconds a cached answer may be used at most (default 10; other users' interactions move popularity features).")
    var cacheTtl: Double?
    @Option(name: .customLong("movielens"), help: .hidden) var movielens: String?

    /// The file, the environment, then the flags.
    func resolved() throws -> ServerConfig {
        var c: ServerConfig
        do { c = try ServerConfig.load(file: config) } catch { throw ValidationError("\(error)") }
        if let host { c.settings.host = host }
        if let port { c.settings.port = port }
        if let maxK { c.settings.maxK = maxK }
        if let workers { c.settings.workers = workers }
        if let maxBodyBytes { c.settings.maxBodyBytes = maxBodyBytes }
        if let apiKey { c.settings.apiKey = apiKey }
        if let cacheEntries { c.settings.cacheEntries = cacheEntries }
        if let cacheTtl { c.settings.cacheTTL = cacheTtl }
        if let wal { c.wal = wal; c.changeLog = nil }
        if let changeLog { c.changeLog = changeLog; c.wal = nil }
        if let changeLogTable { c.changeLogTable = changeLogTable }
        if let replica { c.replica = replica }
        if wal != nil, changeLog != nil { throw ValidationError("--wal and --change-log are two logs; give one") }
        if readOnly { c.readOnly = true }
        do { try c.settings.check() } catch { throw ValidationError("\(error)") }
        return c
    }

    func validate() throws { _ = try resolved() }

    func run() async throws {
        // Metrics first: the pipelines' timers bind to the backend bootstrapped when they are built.
        let prometheus = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: prometheus)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        ]
        MetricsSystem.bootstrap(factory)
        if try modelOptions.kind() == .index { return try await serveIndex(prometheus) }

        setvbuf(stdout, nil, _IOLBF, 0)  // lines reach a log file as they are printed
        let model = modelOptions.model, root = modelOptions.root
        let logger = Logger(label: "funnel.serve")
        // A bundle folder serves as it is; a registry model follows the registry: a promote,
        // canary, shadow or rollback takes effect while serving (see `LiveModels`).
        let service: LiveService
        let resolved = try resolved()
        let name = modelOptions.isFolder ? ((model as NSString).lastPathComponent) : model
        let log = try await changeLog(resolved, name: name)
        if modelOptions.isFolder {
            service = try LiveService(fixed: try Engine(folder: model, version: model, writable: log != nil, serving: resolved.serving), changeLog: log)
        } else {
            let live = try LiveModels(root: root, name: model, writable: log != nil, serving: resolved.serving)
            service = try LiveService(models: live, changeLog: log)
            live.startPolling(every: 1) { models, changed in
                if changed {
                    logger.info("registry changed: now serving \(models.snapshot.versions.keys.sorted().joined(separator: ", "))")
                } else if let e = models.lastError {
                    logger.error("registry changed, but the new versions were refused (still serving the old): \(e)")
                }
            }
        }
        if let log = service.log as? WriteAheadLog {
            var line = "write-ahead log \(log.path): \(service.replayed) writes replayed"
            if let r = log.repaired { line += "; cut a torn tail of \(r.bytes) bytes at offset \(r.offset) (a write that was never acknowledged)" }
            print(line)
            for f in service.replayFailures.prefix(10) { print("  skipped: \(f)") }
        } else if let log = service.log as? PostgresChangeLog {
            print("change log \(log.table) at \(log.location) (replica \(log.replica)): \(service.replayed) writes replayed")
            for f in service.replayFailures.prefix(10) { print("  skipped: \(f)") }
        }
        let settings = resolved.settings
        let server = FunnelServer(service: service, name: name, registryRoot: modelOptions.isFolder ? nil : root, settings: settings,
                                  metrics: { prometheus.emitToString() }, logger: logger)
        let versions = service.engines.compactMap(\.version).sorted().joined(separator: ", ")
        print("serving \(name) (\(versions)) on http://\(settings.host):\(settings.port)  (API under /v1/models/\(name), document at /openapi.json)")
        try await server.run()
    }

    /// The change log's table for a model name: funnel_changes_ and the name in [a-z0-9_].
    static func defaultChangeLogTable(_ name: String) -> String {
        "funnel_changes_" + String(name.lowercased().map { $0.isLetter && $0.isASCII || $0.isNumber && $0.isASCII ? $0 : "_" }).prefix(35)
    }

    /// The log live writes go to: none (read-only), the PostgreSQL change log replicas share, or
    /// the file write-ahead log (default: <registry root>/<model>.wal, or <folder>.wal).
    func changeLog(_ c: ServerConfig, name: String) async throws -> (any ChangeLog)? {
        if c.readOnly { return nil }
        if let url = c.changeLog {
            let table = c.changeLogTable ?? Self.defaultChangeLogTable(name)
            return try await PostgresChangeLog.open(url: url, table: table, replica: c.replica ?? "\(c.settings.host):\(c.settings.port)",
                                                    logger: Logger(label: "funnel.changelog"))
        }
        let model = modelOptions.model
        return try WriteAheadLog(path: c.wal ?? (modelOptions.isFolder ? "\(model.hasSuffix("/") ? String(model.dropLast()) : model).wal" : "\(modelOptions.root)/\(model).wal"))
    }

    /// An index bundle over HTTP:
    ///
    ///     GET /similar?item=ID&k=10[&filter=category=A|B][&ef=128]   the items nearest to an item
    ///     GET /query?vector=0.1,0.2,...&k=10[&filter=...][&ef=128]    the items nearest to a vector
    func serveIndex(_ prometheus: PrometheusCollectorRegistry) async throws {
        let index = try modelOptions.vectorIndex()
        let settings = try resolved().settings
        let (host, port, maxK) = (settings.host, settings.port, settings.maxK)
        print("serving index \(modelOptions.model) (\(index.count) vectors of dimension \(index.dimension)) on http://\(host):\(port)")
        @Sendable func parse(_ request: Request) throws -> (k: Int, ef: Int?, filter: ItemFilter) {
            let q = request.uri.queryParameters
            var k = 10
            if let raw = q.get("k") {
                guard let v = Int(raw), (1...maxK).contains(v) else { throw EngineError.invalidRequest("k must be an integer in 1...\(maxK), got '\(raw)'") }
                k = v
            }
            var ef: Int? = nil
            if let raw = q.get("ef") {
                guard let v = Int(raw), (1...100_000).contains(v) else { throw EngineError.invalidRequest("ef must be an integer in 1...100000, got '\(raw)'") }
                ef = v
            }
            return (k, ef, try ItemFilter.parse(q.getAll("filter").map { String($0) }))
        }
        @Sendable func respond(_ work: () throws -> EngineAnswer) -> Response {
            do {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                return Response(status: .ok, headers: [.contentType: "application/json"],
                                body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoder.encode(try work()))))
            } catch let e as EngineError {
                if case .unknown = e { return Self.error(.notFound, "\(e)") }
                return Self.error(.badRequest, "\(e)")
            } catch {
                return Self.error(.internalServerError, "\(error)")
            }
        }
        let app = Router()
        app.get("health") { _, _ -> String in "ok index\n" }
        app.get("metrics") { _, _ -> String in prometheus.emitToString() }
        app.get("similar") { request, _ -> Response in
            respond {
                guard let item = request.uri.queryParameters.get("item"), !item.isEmpty else { throw EngineError.invalidRequest("missing query parameter 'item'") }
                let (k, ef, filter) = try parse(request)
                return try index.similar(item: item, k: k, ef: ef, filter: filter)
            }
        }
        app.get("query") { request, _ -> Response in
            respond {
                guard let raw = request.uri.queryParameters.get("vector") else { throw EngineError.invalidRequest("missing query parameter 'vector'") }
                let parts = raw.split(separator: ",", omittingEmptySubsequences: false)
                let vector = try parts.map { p -> Float in
                    guard let x = Float(p.trimmingCharacters(in: .whitespaces)), x.isFinite else { throw EngineError.invalidRequest("vector value '\(p)' is not a finite number") }
                    return x
                }
                let (k, ef, filter) = try parse(request)
                return try index.search(vector: vector, k: k, ef: ef, filter: filter)
            }
        }
        try await FunnelServer.application(router: app.buildResponder(), settings: settings, logger: Logger(label: "funnel.index")).runService()
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        let body = (try? JSONSerialization.data(withJSONObject: ["error": message])) ?? Data()
        return Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}
