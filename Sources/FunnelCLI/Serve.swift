import ArgumentParser
import Foundation
import Funnel
import Hummingbird
import Metrics
import Prometheus

/// `funnel serve`: the whole funnel over HTTP (hummingbird).
///
///     GET /recommend?user=ID&k=10   ranked, diversified list with explanations and the path taken
///     GET /health                   200 with the served versions
///     GET /metrics                  Prometheus text: per-stage latency histograms, fallbacks
///
/// A registry model with a canary serves both versions; each user is routed by a hash of
/// their id (the same users always see the canary). A shadow version answers a copy of
/// every request after the real answer is sent; `funnel_shadow_shared_items_total` over
/// `funnel_shadow_compared_items_total` is how much of the served lists it would have kept.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve recommendations over HTTP, with metrics for Prometheus.")

    @Option(help: "A model folder, or a model name in the registry.") var model: String = "movielens"
    @Option(help: "Registry root for model names.") var registry: String = "indexes"
    @Option(help: "The ml-100k folder the model was trained on (the ranking features come from its log).") var movielens: String
    @Option var host: String = "127.0.0.1"
    @Option var port: Int = 8080
    @Option(help: "Largest k a request may ask for.") var maxK: Int = 100
    @Option(help: "Requests run through the funnel at once (default: twice the cores); the rest wait their turn, so that stage budgets measure the stages, not the queue.")
    var workers: Int?

    func run() async throws {
        // Metrics first: the pipelines' timers bind to the backend bootstrapped when they are built.
        let prometheus = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: prometheus)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        ]
        MetricsSystem.bootstrap(factory)

        let ml = try MovieLens.load(directory: movielens)
        // The served versions: production (or the folder), and the canary when there is one.
        var served = [String: ServedModel]()
        var shadow: (version: String, model: ServedModel)? = nil
        var router: @Sendable (String) throws -> String
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: model, isDirectory: &isDirectory), isDirectory.boolValue {
            served[model] = try ServedModel(folder: model, movielens: ml, version: model)
            let only = model
            router = { _ in only }
        } else {
            let reg = ModelRegistry(root: registry)
            let current = try reg.current(model)
            served["v\(current.version)"] = try ServedModel(folder: reg.folder(model, current), movielens: ml, version: "v\(current.version)")
            if let canary = try reg.versions(of: model).first(where: { $0.state == .canary }) {
                served["v\(canary.version)"] = try ServedModel(folder: reg.folder(model, canary), movielens: ml, version: "v\(canary.version)")
            }
            let name = model
            router = { user in "v\(try reg.route(name, userID: user).version.version)" }
            if let s = try reg.shadowVersion(model) {
                shadow = ("v\(s.version)", try ServedModel(folder: reg.folder(model, s), movielens: ml, version: "v\(s.version)"))
            }
        }
        // Each served version's stage timers and fallback counters carry its name (set when
        // its pipeline is built), so a canary's latency and fallbacks are told from production's.
        if let shadow {
            print("shadow: \(shadow.version) answers a copy of every request (compared, never served)")
        }
        let shadowModel = shadow
        let models = served
        let route = router
        let maxK = maxK
        print("serving \(model) (\(models.keys.sorted().joined(separator: ", "))) on http://\(host):\(port)")

        // A bounded pool: more requests in flight than cores would only make each stage wait
        // for a core, trip its budget and open its circuit breaker under load.
        let pool = OperationQueue()
        pool.maxConcurrentOperationCount = max(1, workers ?? 2 * ProcessInfo.processInfo.activeProcessorCount)
        pool.qualityOfService = .userInitiated
        let app = Router()
        app.get("health") { _, _ -> String in "ok \(models.keys.sorted().joined(separator: " "))\n" }
        app.get("metrics") { _, _ -> String in prometheus.emitToString() }
        app.get("recommend") { request, _ -> Response in
            guard let user = request.uri.queryParameters.get("user") else {
                return Self.error(.badRequest, "missing query parameter 'user'")
            }
            let k = request.uri.queryParameters.get("k", as: Int.self) ?? 10
            guard k >= 1, k <= maxK else { return Self.error(.badRequest, "k must be in 1...\(maxK), got \(k)") }
            do {
                let version = try route(user)
                guard let m = models[version] else { return Self.error(.internalServerError, "version \(version) is not loaded") }
                // The funnel is synchronous CPU work (and waits on its stage budgets): run it
                // in the worker pool, not on the event loop that serves other connections.
                let body = try await withCheckedThrowingContinuation { (done: CheckedContinuation<Data, Error>) in
                    pool.addOperation {
                        done.resume(with: Result {
                            let r = try m.recommend(user: user, k: k)
                            if let (sv, sm) = shadowModel {
                                // The shadow's turn comes after the answer is on its way.
                                let served = Set(r.items.map(\.id))
                                pool.addOperation {
                                    guard let s = try? sm.recommend(user: user, k: k) else { return }
                                    let same = s.items.filter { served.contains($0.id) }.count
                                    Counter(label: "funnel_shadow_requests_total", dimensions: [("version", sv)]).increment()
                                    Counter(label: "funnel_shadow_compared_items_total", dimensions: [("version", sv)]).increment(by: served.count)
                                    Counter(label: "funnel_shadow_shared_items_total", dimensions: [("version", sv)]).increment(by: same)
                                }
                            }
                            return try JSONSerialization.data(withJSONObject: m.json(r, user: user, version: version), options: [.sortedKeys])
                        })
                    }
                }
                return Response(status: .ok, headers: [.contentType: "application/json"],
                                body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
            } catch let e as ValidationError {
                return Self.error(.notFound, e.message)
            } catch let e as ServingError {
                return Self.error(.badRequest, "\(e)")
            }
        }
        let application = Application(router: app, configuration: .init(address: .hostname(host, port: port)))
        try await application.runService()
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        let body = (try? JSONSerialization.data(withJSONObject: ["error": message])) ?? Data()
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}
