import ArgumentParser
import Foundation
import Funnel
import Hummingbird
import Metrics
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
    static let configuration = CommandConfiguration(abstract: "Serve a model bundle's funnel over HTTP, with metrics for Prometheus.")

    @OptionGroup var modelOptions: ModelOptions
    @Option var host: String = "127.0.0.1"
    @Option var port: Int = 8080
    @Option(help: "Largest k a request may ask for.") var maxK: Int = 100
    @Option(help: "Requests run through the funnel at once (default: twice the cores); the rest wait their turn, so that stage budgets measure the stages, not the queue.")
    var workers: Int?
    @Option(name: .customLong("movielens"), help: .hidden) var movielens: String?

    func validate() throws {
        guard (1...65535).contains(port) else { throw ValidationError("--port must be in 1...65535, got \(port)") }
        guard (1...Engine.maxK).contains(maxK) else { throw ValidationError("--max-k must be in 1...\(Engine.maxK)") }
        if let workers, workers < 1 { throw ValidationError("--workers must be at least 1") }
    }

    func run() async throws {
        // Metrics first: the pipelines' timers bind to the backend bootstrapped when they are built.
        let prometheus = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: prometheus)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        ]
        MetricsSystem.bootstrap(factory)

        // The served versions: production (or the folder), and the canary when there is one.
        let model = modelOptions.model, root = modelOptions.root
        if try modelOptions.kind() == .index { return try await serveIndex(prometheus) }
        // A bundle folder serves as it is; a registry model follows the registry: a promote,
        // canary, shadow or rollback takes effect while serving (see `LiveModels`).
        let live: LiveModels?, fixed: Engine?
        if modelOptions.isFolder {
            fixed = try Engine(folder: model, version: model)
            live = nil
        } else {
            live = try LiveModels(root: root, name: model)
            fixed = nil
            live!.startPolling(every: 1) { models, changed in
                if changed {
                    print("registry changed: now serving \(models.snapshot.versions.keys.sorted().joined(separator: ", "))")
                } else if let e = models.lastError {
                    print("registry changed, but the new versions were refused (still serving the old): \(e)")
                }
            }
        }
        @Sendable func engine(for user: String, pinned: String?) throws -> Engine {
            if let fixed { return fixed }
            if let pinned {
                guard let e = live!.version(pinned) else { throw EngineError.unknown(kind: "version", id: pinned) }
                return e
            }
            return live!.route(user)
        }
        @Sendable func loadedVersions() -> [String] { fixed.map { [$0.version ?? model] } ?? live!.snapshot.versions.keys.sorted() }
        let maxK = maxK
        print("serving \(model) (\(loadedVersions().joined(separator: ", "))) on http://\(host):\(port)")

        // A bounded pool: more requests in flight than cores would only make each stage wait
        // for a core, trip its budget and open its circuit breaker under load.
        let pool = OperationQueue()
        pool.maxConcurrentOperationCount = workers ?? 2 * ProcessInfo.processInfo.activeProcessorCount
        pool.qualityOfService = .userInitiated
        /// Runs `work` in the pool and answers with its JSON, or with the error it names.
        @Sendable func answer(_ work: @escaping @Sendable () throws -> EngineAnswer) async -> Response {
            do {
                let body = try await withCheckedThrowingContinuation { (done: CheckedContinuation<Data, Error>) in
                    pool.addOperation {
                        done.resume(with: Result {
                            let encoder = JSONEncoder()
                            encoder.outputFormatting = [.sortedKeys]
                            return try encoder.encode(try work())
                        })
                    }
                }
                return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
            } catch let e as EngineError {
                if case .unknown = e { return Self.error(.notFound, "\(e)") }
                return Self.error(.badRequest, "\(e)")
            } catch let e as ServingError {
                return Self.error(.badRequest, "\(e)")
            } catch let e as HTTPError {
                return Self.error(.badRequest, e.body ?? "\(e)")
            } catch {
                return Self.error(.internalServerError, "\(error)")
            }
        }
        @Sendable func k(_ request: Request) throws -> Int {
            guard let raw = request.uri.queryParameters.get("k") else { return 10 }
            guard let k = Int(raw), (1...maxK).contains(k) else {
                throw HTTPError(.badRequest, message: "k must be an integer in 1...\(maxK), got '\(raw)'")
            }
            return k
        }
        @Sendable func ids(_ request: Request, _ name: String) -> [String] {
            request.uri.queryParameters.get(name).map { $0.split(separator: ",").map(String.init) } ?? []
        }

        let app = Router()
        app.get("health") { _, _ -> String in "ok \(loadedVersions().joined(separator: " "))\n" }
        app.get("readyz") { _, _ -> String in "ready \(loadedVersions().joined(separator: " "))\n" }
        app.get("metrics") { _, _ -> String in prometheus.emitToString() }
        app.get("recommend") { request, _ -> Response in
            guard let user = request.uri.queryParameters.get("user"), !user.isEmpty else {
                return Self.error(.badRequest, "missing query parameter 'user'")
            }
            return await answer {
                let k = try k(request), touched = ids(request, "touched"), exclude = ids(request, "exclude")
                let engine = try engine(for: user, pinned: request.uri.queryParameters.get("version"))
                let r = try engine.recommend(user: user, k: k, touched: touched, exclude: exclude)
                if let se = live?.snapshot.shadow, se !== engine {
                    let sv = se.version ?? "shadow"
                    // The shadow's turn comes after the answer is on its way.
                    let shown = Set(r.items.map(\.item))
                    pool.addOperation {
                        guard let s = try? se.recommend(user: user, k: k, touched: touched, exclude: exclude) else { return }
                        Counter(label: "funnel_shadow_requests_total", dimensions: [("version", sv)]).increment()
                        Counter(label: "funnel_shadow_compared_items_total", dimensions: [("version", sv)]).increment(by: shown.count)
                        Counter(label: "funnel_shadow_shared_items_total", dimensions: [("version", sv)])
                            .increment(by: s.items.filter { shown.contains($0.item) }.count)
                    }
                }
                return r
            }
        }
        app.get("similar") { request, _ -> Response in
            guard let item = request.uri.queryParameters.get("item"), !item.isEmpty else {
                return Self.error(.badRequest, "missing query parameter 'item'")
            }
            return await answer { try engine(for: "", pinned: request.uri.queryParameters.get("version")).similar(item: item, k: try k(request)) }
        }
        app.get("search") { request, _ -> Response in
            guard let q = request.uri.queryParameters.get("q"), !q.isEmpty else { return Self.error(.badRequest, "missing query parameter 'q'") }
            let modeName = request.uri.queryParameters.get("mode") ?? "hybrid"
            guard let mode = SearchMode(rawValue: modeName) else { return Self.error(.badRequest, "mode must be lexical or hybrid, got '\(modeName)'") }
            return await answer { try engine(for: "", pinned: request.uri.queryParameters.get("version")).search(q, k: try k(request), mode: mode) }
        }
        let application = Application(router: app, configuration: .init(address: .hostname(host, port: port)))
        try await application.runService()
    }

    /// An index bundle over HTTP:
    ///
    ///     GET /similar?item=ID&k=10[&filter=category=A|B][&ef=128]   the items nearest to an item
    ///     GET /query?vector=0.1,0.2,...&k=10[&filter=...][&ef=128]    the items nearest to a vector
    func serveIndex(_ prometheus: PrometheusCollectorRegistry) async throws {
        let index = try modelOptions.vectorIndex()
        let maxK = maxK
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
        let application = Application(router: app, configuration: .init(address: .hostname(host, port: port)))
        try await application.runService()
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        let body = (try? JSONSerialization.data(withJSONObject: ["error": message])) ?? Data()
        return Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}
