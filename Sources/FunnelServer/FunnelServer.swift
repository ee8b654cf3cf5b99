import Engine
import Persistence
import Foundation

import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import Metrics
import NIOCore

import Registry
import Serving

/// The knobs of `funnel serve` (flags, a config file, or `FUNNEL_*` environment variables).
public struct ServerSettings: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// Largest k a request may ask for.
    public var maxK = 100
    /// Requests run through the funnel at once (default twice the cores).
    public var workers = 2 * ProcessInfo.processInfo.activeProcessorCount
    /// Largest request body, in bytes.
    public var maxBodyBytes = 1 << 20
    /// Largest number of interactions in one write.
    public var maxBatch = 10_000
    /// Write and admin routes need `Authorization: Bearer KEY` (or `X-API-Key: KEY`) when set.
    public var apiKey: String?
    /// A connection with nothing to read for this long is closed (held connections), seconds.
    public var idleTimeout = 30.0
    /// A request's head and body must arrive within this many seconds of its first byte
    /// (slow clients get a 408 and are closed).
    public var readTimeout = 10.0
    /// Largest request head (request line and headers), in bytes; past it, a 431.
    public var maxHeaderBytes = 32 * 1024
    /// Connections served at once at most; past it, a new one is answered 503 with
    /// `Retry-After: 1` and closed (and past a reserve of a quarter more, up to 1,024, the
    /// server stops accepting: they wait in the kernel's backlog).
    public var maxConnections = 4_096
    /// Recommendation answers cached (0: no cache), and for how long at most (seconds).
    public var cacheEntries = 10_000
    public var cacheTTL = 10.0
    /// Fault injection, for measuring what clients and load balancers do with a slow
    /// replica: this fraction of `/v1` requests waits this long before it is served. Off
    /// (nil) unless set; health, readiness and metrics routes are never delayed.
    public var faultDelay: FaultDelay?
    public init() {}
}

/// A delay added to a random fraction of requests (see `ServerSettings.faultDelay`).
public struct FaultDelay: Sendable, Equatable {
    public var seconds: Double
    public var fraction: Double
    public init(seconds: Double, fraction: Double = 1) {
        self.seconds = seconds
        self.fraction = fraction
    }

    /// Whether the next request is delayed, from a uniform draw in [0, 1).
    func applies(draw: Double) -> Bool { seconds > 0 && draw < fraction }
}

/// The errors the API answers with: `{"error": {"code", "message"}}` and a status.
public struct APIError: Error, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    static func badRequest(_ m: String) -> APIError { APIError(.badRequest, "invalid_argument", m) }
    static func notFound(_ m: String) -> APIError { APIError(.notFound, "not_found", m) }

    /// The API error for an error of the engine, the registry or the server.
    static func from(_ error: Error) -> APIError {
        switch error {
        case let e as APIError: return e
        case let e as EngineError:
            if case .unknown = e { return .notFound("\(e)") }
            if case .corruptBundle = e { return APIError(.conflict, "refused", "\(e)") }
            return .badRequest("\(e)")
        case let e as RegistryError:
            switch e {
            case .unknownModel, .unknownVersion: return .notFound("\(e)")
            case .invalidTransition: return APIError(.conflict, "conflict", "\(e)")
            case .corrupt: return APIError(.internalServerError, "internal", "\(e)")
            }
        case let e as ChangeLogFailure:
            return e.nothingWritten ? APIError(.serviceUnavailable, "unavailable", "\(e)") : APIError(.internalServerError, "unknown_outcome", "\(e)")
        case let e as DecodingError: return .badRequest("the body is not the JSON this route takes: \(Self.describe(e))")
        case let e as HTTPError:
            if e.status == .contentTooLarge { return APIError(.contentTooLarge, "too_large", e.body ?? "the request body is too large") }
            return APIError(e.status, e.status == .notFound ? "not_found" : "http_error", e.body ?? e.status.reasonPhrase)
        default:
            return APIError(.internalServerError, "internal", "\(error)")
        }
    }

    static func describe(_ e: DecodingError) -> String {
        func path(_ c: DecodingError.Context) -> String {
            c.codingPath.isEmpty ? "" : " at " + c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch e {
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c): return c.debugDescription + path(c)
        case .keyNotFound(let k, let c): return "missing field '\(k.stringValue)'" + path(c)
        @unknown default: return "\(e)"
        }
    }

    var response: Response {
        let body = try! JSONSerialization.data(withJSONObject: ["error": ["code": code, "message": message]], options: [.sortedKeys])
        var headers: HTTPFields = [.contentType: "application/json"]
        // The rest of an oversized body is not read: the connection closes after this answer.
        if status == .contentTooLarge { headers[.connection] = "close" }
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// Funnel's HTTP API over one served model (see `openapi.json`, served at `/openapi.json`).
public final class FunnelServer: @unchecked Sendable {
    public let service: LiveService
    public let name: String
    public let settings: ServerSettings
    let registryRoot: String?
    let metricsText: @Sendable () -> String
    let logger: Logger
    /// The requests running through the funnel at once (`workers` threads; the rest queue).
    /// A fixed set of threads that poll briefly for the next request when a core is spare:
    /// under load, an OperationQueue's dispatch threads cost a wake-up per request.
    let pool: StageExecutor
    let cache: ResultCache?

    /// - Parameters:
    ///   - name: the model's name in the API (`/v1/models/{name}`).
    ///   - registryRoot: the registry the model comes from (admin routes change it); nil for a bundle folder.
    ///   - metrics: the Prometheus text of `/metrics`.
    public init(service: LiveService, name: String, registryRoot: String?, settings: ServerSettings,
                metrics: @escaping @Sendable () -> String, logger: Logger = Logger(label: "funnel.server")) {
        self.service = service
        self.name = name
        self.registryRoot = registryRoot
        self.settings = settings
        self.metricsText = metrics
        self.logger = logger
        cache = settings.cacheEntries > 0 ? ResultCache(capacity: settings.cacheEntries, ttl: settings.cacheTTL) : nil
        pool = StageExecutor(maxThreads: max(1, settings.workers))
    }

    /// Serves until the process is stopped.
    public func run() async throws {
        try await Self.application(router: router().buildResponder(), settings: settings, logger: logger).runService()
    }

    /// An application serving `router` with the settings' limits: the hardened HTTP/1
    /// channel (read deadline, idle timeout, header limit, HTTP/1.0 semantics, JSON errors)
    /// and the connection cap.
    public static func application<Responder: HTTPResponder>(router: Responder, settings: ServerSettings, logger: Logger,
                                                            onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in })
        -> Application<Responder> where Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
        Application(responder: router, server: .hardenedHTTP1(settings),
                    configuration: .init(address: .hostname(settings.host, port: settings.port),
                                         availableConnectionsDelegate: MaximumAvailableConnections(ConnectionGate.acceptLimit(settings.maxConnections))),
                    onServerRunning: onServerRunning, logger: logger)
    }

    /// The routes (also what tests drive).
    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: APIMiddleware(logger: logger))
        if let fault = settings.faultDelay {
            logger.warning("fault injection is on", metadata: ["delay_ms": "\(fault.seconds * 1_000)", "fraction": "\(fault.fraction)"])
            router.add(middleware: FaultMiddleware(fault: fault))
        }
        router.get("livez") { _, _ in Self.json(["status": "ok"]) }
        router.get("health") { [self] _, _ -> String in "ok \(versions().joined(separator: " "))\n" }
        router.get("readyz") { [self] _, _ -> Response in
            let v = versions()
            return v.isEmpty ? APIError(.serviceUnavailable, "not_ready", "no validated model is loaded").response
                             : Self.json(["status": "ready", "model": name, "versions": v] as [String: Any])
        }
        router.get("metrics") { [self] _, _ -> String in metricsText() }
        router.get("openapi.json") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
        }

        // The routes of before /v1, kept for scripts (production model of the served name).
        router.get("recommend") { [self] request, _ in try await recommendGET(request, pinned: nil) }
        router.get("similar") { [self] request, _ -> Response in
            let item = try required(request, "item")
            return try await answer { try self.service.engine(for: "", pinned: request.uri.queryParameters.get("version")).similar(item: item, k: try self.k(request)) }
        }
        router.get("search") { [self] request, _ in try await search(request) }

        let v1 = router.group("v1")
        v1.get("models") { [self] _, _ in Self.encode(["models": [try describe()]]) }
        let model = v1.group("models/:name")
        model.get("") { [self] _, context in try check(context); return Self.encode(try describe()) }
        model.get("recommend") { [self] request, context in try check(context); return try await recommendGET(request, pinned: nil) }
        model.post("recommend") { [self] request, context in try check(context); return try await recommendPOST(request, context, pinned: nil) }
        model.get("versions/:version/recommend") { [self] request, context in
            try check(context)
            return try await recommendGET(request, pinned: try version(context))
        }
        model.post("versions/:version/recommend") { [self] request, context in
            try check(context)
            return try await recommendPOST(request, context, pinned: try version(context))
        }
        model.get("items/:item/similar") { [self] request, context -> Response in
            try check(context)
            let item = try context.parameters.require("item")
            let k = try k(request)
            let filter = try ItemFilter.parse(request.uri.queryParameters.getAll("filter").map { String($0) })
            return try await answer { try self.service.engine(for: "").similar(item: item, k: k, filter: filter) }
        }
        model.get("search") { [self] request, context in try check(context); return try await search(request) }
        model.post("query") { [self] request, context -> Response in
            try check(context)
            let body = try await decode(QueryBody.self, request, context)
            let k = try checkK(body.k ?? 10)
            let filter = try ItemFilter.parse(body.filter ?? [])
            return try await answer { try self.service.engine(for: "").query(vector: body.vector, k: k, exclude: body.exclude ?? [], filter: filter) }
        }

        // Catalog and interaction writes.
        model.put("items/:item") { [self] request, context -> Response in
            try check(context, write: request)
            let id = try context.parameters.require("item")
            let attributes = try await decode([String: AttributeValue].self, request, context, nullable: true)
            let sequence = try await service.write(.upsert(item: id, attributes: attributes))
            return Self.encode(WriteAnswer(sequence: sequence, item: try service.production.itemRecord(id)))
        }
        model.get("items/:item") { [self] _, context -> Response in
            try check(context)
            return Self.encode(try service.production.itemRecord(try context.parameters.require("item")))
        }
        model.delete("items/:item") { [self] request, context -> Response in
            try check(context, write: request)
            let id = try context.parameters.require("item")
            let sequence = try await service.write(.delete(item: id))
            return Self.encode(WriteAnswer(sequence: sequence, item: nil))
        }
        model.get("users/:user") { [self] _, context -> Response in
            try check(context)
            return Self.encode(try service.production.userRecord(try context.parameters.require("user")))
        }
        model.post("interactions") { [self] request, context -> Response in
            try check(context, write: request)
            let list = try await decode([LiveInteraction].self, request, context)
            guard (1...settings.maxBatch).contains(list.count) else {
                throw APIError.badRequest("a write holds 1...\(settings.maxBatch) interactions, got \(list.count)")
            }
            let sequence = try await service.write(.interactions(list))
            return Self.encode(WriteAnswer(sequence: sequence, item: nil, accepted: list.count))
        }

        // Registry operations: the running server follows them at once.
        model.post("versions/:version/promote") { [self] request, context -> Response in
            try check(context, write: request)
            let v = try versionNumber(context)
            let body = try await decodeOptional(PromoteBody.self, request, context)
            if let f = body?.canary, !(f > 0 && f < 1) { throw APIError.badRequest("canary must be in (0, 1), got \(f)") }
            try registry().promote(name, version: v, canaryFraction: body?.canary)
            return try await afterRegistryChange()
        }
        model.post("versions/:version/shadow") { [self] request, context -> Response in
            try check(context, write: request)
            try registry().shadow(name, version: try versionNumber(context))
            return try await afterRegistryChange()
        }
        model.post("rollback") { [self] request, context -> Response in
            try check(context, write: request)
            _ = try registry().rollback(name)
            return try await afterRegistryChange()
        }
        model.post("log/compact") { [self] request, context -> Response in
            try check(context, write: request)
            let retire = try await decodeOptional(CompactBody.self, request, context)?.retire ?? false
            return Self.encode(try await service.compact(retire: retire))
        }
        return router
    }

    // MARK: - Handlers

    func recommendGET(_ request: Request, pinned: String?) async throws -> Response {
        let q = request.uri.queryParameters
        let user = try required(request, "user")
        let body = RecommendBody(user: user, k: try k(request), touched: ids(request, "touched"), exclude: ids(request, "exclude"),
                                 filter: q.getAll("filter").map { String($0) }, explain: try flag(request, "explain"),
                                 includeSeen: try flag(request, "include_seen"), candidates: try int(request, "candidates"),
                                 ef: try int(request, "ef"), maxPerCategory: try int(request, "max_per_category"))
        return try await recommend(body, pinned: pinned ?? q.get("version").map { String($0) })
    }

    func recommendPOST(_ request: Request, _ context: BasicRequestContext, pinned: String?) async throws -> Response {
        let body = try await decode(RecommendBody.self, request, context)
        return try await recommend(body, pinned: pinned)
    }

    func recommend(_ body: RecommendBody, pinned: String?) async throws -> Response {
        guard !body.user.isEmpty else { throw APIError.badRequest("'user' must not be empty") }
        let k = try checkK(body.k ?? 10)
        let filter = try ItemFilter.parse(body.filter ?? [])
        let engine = try service.engine(for: body.user, pinned: pinned)
        let explain = body.explain ?? true
        let shadow = pinned == nil ? service.models?.snapshot.shadow : nil
        let key = cache == nil ? "" : [engine.version ?? "", body.user, String(k), (body.touched ?? []).joined(separator: ","), (body.exclude ?? []).joined(separator: ","),
                   (body.filter ?? []).joined(separator: "\u{2}"), String(explain), String(body.includeSeen ?? false),
                   "\(body.candidates ?? 0)/\(body.ef ?? 0)/\(body.maxPerCategory ?? 0)", (body.pin ?? []).joined(separator: ","),
                   (body.boost ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")].joined(separator: "\u{1}")
        if let cache, let hit = cache.get(key, engine: engine, user: body.user) { return Self.jsonResponse(hit) }
        let fresh = engine.freshness(of: body.user)
        let data = try await answerBody { done in
            engine.recommend(user: body.user, k: k, touched: body.touched ?? [], exclude: body.exclude ?? [],
                             includeSeen: body.includeSeen ?? false, filter: filter, rules: body.rules, explain: explain) { result in
                done(result.map { a in
                    var a = a
                    if !explain { for i in a.items.indices { a.items[i].explanation = .init() } }
                    return a
                })
            }
        }
        cache?.put(key, engine: engine, fresh: fresh, body: data)
        let response = Self.jsonResponse(data)
        if let shadow, shadow !== engine {
            // The shadow's turn comes after the answer is on its way.
            pool.run {
                let sv = shadow.version ?? "shadow"
                guard let s = try? shadow.recommend(user: body.user, k: k, touched: body.touched ?? [], exclude: body.exclude ?? []),
                      let r = try? engine.recommend(user: body.user, k: k, touched: body.touched ?? [], exclude: body.exclude ?? []) else { return }
                let shown = Set(r.items.map(\.item))
                Counter(label: "funnel_shadow_requests_total", dimensions: [("version", sv)]).increment()
                Counter(label: "funnel_shadow_compared_items_total", dimensions: [("version", sv)]).increment(by: shown.count)
                Counter(label: "funnel_shadow_shared_items_total", dimensions: [("version", sv)]).increment(by: s.items.filter { shown.contains($0.item) }.count)
            }
        }
        return response
    }

    func search(_ request: Request) async throws -> Response {
        let q = try required(request, "q")
        let modeName = request.uri.queryParameters.get("mode") ?? "hybrid"
        guard let mode = SearchMode(rawValue: modeName) else { throw APIError.badRequest("mode must be lexical or hybrid, got '\(modeName)'") }
        let k = try k(request)
        let pinned = request.uri.queryParameters.get("version").map { String($0) }
        return try await answer { try self.service.engine(for: "", pinned: pinned).search(q, k: k, mode: mode) }
    }

    func afterRegistryChange() async throws -> Response {
        if let models = service.models {
            // Loading a version takes a while: off the event loop.
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                DispatchQueue.global().async {
                    models.refresh()
                    done.resume()
                }
            }
            if let e = models.lastError { throw APIError(.conflict, "refused", "the registry changed, but the new versions were refused (the old keep serving): \(e)") }
        }
        return Self.encode(try describe())
    }

    // MARK: - Models

    struct ModelDescription: Encodable {
        struct Version: Encodable {
            var version: Int
            var state: String
            var canaryFraction: Double?
            var loaded: Bool
            var created: Int64
            var metrics: [String: Double]
            enum CodingKeys: String, CodingKey { case version, state, loaded, created, metrics, canaryFraction = "canary_fraction" }
        }
        var name: String
        var serving: [String]
        var versions: [Version]
        var lastError: String?
        var writesLogged: Int
        enum CodingKeys: String, CodingKey { case name, serving, versions, lastError = "last_error", writesLogged = "writes_logged" }
    }

    func describe() throws -> ModelDescription {
        let loaded = Set(versions())
        var list = [ModelDescription.Version]()
        if registryRoot != nil {
            for v in try registry().versions(of: name) {
                list.append(.init(version: v.version, state: v.state.rawValue, canaryFraction: v.canaryFraction, loaded: loaded.contains("v\(v.version)"),
                                  created: v.created, metrics: v.metrics))
            }
        }
        return ModelDescription(name: name, serving: loaded.sorted(), versions: list, lastError: service.models?.lastError, writesLogged: service.logged)
    }

    func versions() -> [String] {
        if let f = service.fixed { return [f.version ?? name] }
        return service.models!.snapshot.versions.keys.sorted()
    }

    func registry() throws -> ModelRegistry {
        guard let registryRoot else { throw APIError(.conflict, "not_a_registry_model", "this server serves a bundle folder, not a registry model") }
        return ModelRegistry(root: registryRoot)
    }

    // MARK: - Parameters

    func check(_ context: BasicRequestContext, write request: Request? = nil) throws {
        let n = try context.parameters.require("name")
        guard n == name else { throw APIError.notFound("no model '\(n)' is served here (this server serves '\(name)')") }
        if let request, let key = settings.apiKey {
            let bearer = request.headers[.authorization].map { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : $0 }
            let given = bearer ?? request.headers[HTTPField.Name("X-API-Key")!]
            guard given == key else { throw APIError(.unauthorized, "unauthenticated", "this route needs the API key (Authorization: Bearer KEY)") }
        }
    }

    func version(_ context: BasicRequestContext) throws -> String { "v\(try versionNumber(context))" }

    func versionNumber(_ context: BasicRequestContext) throws -> Int {
        let raw = try context.parameters.require("version")
        let digits = raw.hasPrefix("v") ? String(raw.dropFirst()) : raw
        guard let v = Int(digits), v >= 1 else { throw APIError.badRequest("a version is a positive integer (3 or v3), got '\(raw)'") }
        return v
    }

    func required(_ request: Request, _ name: String) throws -> String {
        guard let v = request.uri.queryParameters.get(name), !v.isEmpty else { throw APIError.badRequest("missing query parameter '\(name)'") }
        return String(v)
    }

    func k(_ request: Request) throws -> Int {
        guard let raw = request.uri.queryParameters.get("k") else { return 10 }
        guard let k = Int(raw) else { throw APIError.badRequest("k must be an integer in 1...\(settings.maxK), got '\(raw)'") }
        return try checkK(k)
    }

    func checkK(_ k: Int) throws -> Int {
        guard (1...settings.maxK).contains(k) else { throw APIError.badRequest("k must be an integer in 1...\(settings.maxK), got \(k)") }
        return k
    }

    func int(_ request: Request, _ name: String) throws -> Int? {
        guard let raw = request.uri.queryParameters.get(name) else { return nil }
        guard let v = Int(raw) else { throw APIError.badRequest("\(name) must be an integer, got '\(raw)'") }
        return v
    }

    func flag(_ request: Request, _ name: String) throws -> Bool? {
        guard let raw = request.uri.queryParameters.get(name) else { return nil }
        switch raw.lowercased() {
        case "true", "1", "yes": return true
        case "false", "0", "no": return false
        default: throw APIError.badRequest("\(name) must be true or false, got '\(raw)'")
        }
    }

    func ids(_ request: Request, _ name: String) -> [String] {
        request.uri.queryParameters.getAll(name).flatMap { $0.split(separator: ",").map(String.init) }
    }

    func decode<T: Decodable>(_ type: T.Type, _ request: Request, _ context: BasicRequestContext, nullable: Bool = false) async throws -> T {
        guard let value = try await decodeOptional(type, request, context, nullable: nullable) else { throw APIError.badRequest("this route takes a JSON body") }
        return value
    }

    /// Decodes a JSON body. `null` is refused wherever it appears unless `nullable` (an item's
    /// attributes, where null means "no value"): an optional field is left out, never null, so
    /// `{"k": null}` is a 400 rather than a silent default.
    func decodeOptional<T: Decodable>(_ type: T.Type, _ request: Request, _ context: BasicRequestContext, nullable: Bool = false) async throws -> T? {
        var request = request
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: settings.maxBodyBytes) } catch {
            throw APIError(.contentTooLarge, "too_large", "the request body is over the \(settings.maxBodyBytes)-byte limit")
        }
        guard buffer.readableBytes > 0 else { return nil }
        let data = Data(buffer.readableBytesView)
        if !nullable, data.range(of: Data("null".utf8)) != nil, let path = Self.firstNull(in: data) {
            throw APIError.badRequest("\(path) is null; leave an optional field out instead")
        }
        do { return try JSONDecoder().decode(T.self, from: data) } catch let e as DecodingError {
            throw APIError.badRequest("the body is not the JSON this route takes: \(APIError.describe(e))")
        } catch let e as EngineError {
            throw APIError.badRequest("\(e)")
        } catch let e as APIError {
            throw e
        } catch {
            throw APIError.badRequest("the body is not JSON: \(error)")
        }
    }

    /// The path of the first JSON null in `data` ("body.k", "body[2].weight"), or nil when there is
    /// none or the body is not JSON (the decoder then names that). Runs only on bodies that hold
    /// the bytes "null", so the hot routes never pay for it.
    static func firstNull(in data: Data) -> String? {
        guard let root = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) else { return nil }
        func walk(_ value: Any, _ path: String) -> String? {
            if value is NSNull { return path }
            if let object = value as? [String: Any] {
                for key in object.keys.sorted() { if let p = walk(object[key]!, path + "." + key) { return p } }
            } else if let array = value as? [Any] {
                for (i, element) in array.enumerated() { if let p = walk(element, path + "[\(i)]") { return p } }
            }
            return nil
        }
        return walk(root, "body")
    }

    // MARK: - Answers

    /// Runs `work` in the bounded pool (requests beyond `workers` wait their turn, so that
    /// stage budgets measure the stages, not the queue) and answers with its JSON.
    func answer<T: Encodable & Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> Response {
        Self.jsonResponse(try await answerBody(work))
    }

    static func jsonResponse(_ body: Data) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// As `answerBody(_:)` for work that answers through a callback (exactly once), from
    /// the pool's thread or from another (a stage past its budget is answered for by the
    /// funnel's watchdog).
    func answerBody(_ work: @escaping @Sendable (_ done: @escaping @Sendable (Result<EngineAnswer, Error>) -> Void) -> Void) async throws -> Data {
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<Data, Error>) in
            pool.run {
                work { result in done.resume(with: result.flatMap { a in Result { try Self.jsonBody(a) } }) }
            }
        }
    }

    func answerBody<T: Encodable & Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> Data {
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<Data, Error>) in
            pool.run {
                done.resume(with: Result { try Self.jsonBody(try work()) })
            }
        }
    }

    /// Sorted-key JSON of a value; an engine's answer through its own writer (the same bytes,
    /// a fraction of the encoder's time).
    static func jsonBody<T: Encodable>(_ value: T) throws -> Data {
        if let answer = value as? EngineAnswer { return Data(try answer.jsonBytes()) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try encoder.encode(value)
    }

    static func encode<T: Encodable>(_ value: T) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(value) else { return APIError(.internalServerError, "internal", "could not encode the answer").response }
        return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func json(_ object: [String: Any]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}

// MARK: - Bodies

struct RecommendBody: Codable, Sendable {
    var user: String
    var k: Int?
    var touched: [String]?
    var exclude: [String]?
    /// Clauses as in the query string: `category=A|B`, `category!=C`, `price>=10`, `created>=2024-01-01`.
    var filter: [String]?
    var explain: Bool?
    var includeSeen: Bool?
    /// This request's retrieval and rule settings (candidates, ef, max_per_category, pin, boost).
    var candidates: Int?
    var ef: Int?
    var maxPerCategory: Int?
    var pin: [String]?
    var boost: [String: Double]?
    enum CodingKeys: String, CodingKey {
        case user, k, touched, exclude, filter, explain, candidates, ef, pin, boost
        case includeSeen = "include_seen", maxPerCategory = "max_per_category"
    }

    var rules: RequestRules {
        RequestRules(candidates: candidates, ef: ef, maxPerCategory: maxPerCategory, pin: pin ?? [], boost: boost ?? [:])
    }
}

struct QueryBody: Codable, Sendable {
    var vector: [Float]
    var k: Int?
    var exclude: [String]?
    var filter: [String]?
}

struct CompactBody: Codable, Sendable {
    var retire: Bool?
}

struct PromoteBody: Codable, Sendable {
    var canary: Double?
}

struct WriteAnswer: Encodable {
    /// The write's sequence in the write-ahead log (durable when answered).
    var sequence: UInt64
    var item: ItemRecord?
    var accepted: Int?
}

/// Request ids, JSON errors for everything thrown, HTTP metrics and access logs.
/// Delays a fraction of the API's requests (`ServerSettings.faultDelay`) on the request's
/// task, so the delayed request holds no thread and the others run as they would.
struct FaultMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let fault: FaultDelay

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path.hasPrefix("/v1/"), fault.applies(draw: Double.random(in: 0..<1)) {
            Counter(label: "funnel_fault_delays_total").increment()
            try await Task.sleep(nanoseconds: UInt64(fault.seconds * 1e9))
        }
        return try await next(request, context)
    }
}

struct APIMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let name = HTTPField.Name("X-Request-ID")!
        let id = request.headers[name].flatMap { $0.count <= 200 ? $0 : nil } ?? UUID().uuidString
        let start = DispatchTime.now().uptimeNanoseconds
        var response: Response
        do {
            response = try await next(request, context)
        } catch let e as HTTPError where e.status == .notFound {
            // The router's own 404 (handlers throw APIError): no route matched.
            // No route: 405 when the path is the API's under another method.
            let methods = Routes.methods(for: request.uri.path)
            response = methods.isEmpty
                ? APIError(.notFound, "no_route", "no route \(request.method) \(request.uri.path)").response
                : APIError(.methodNotAllowed, "method_not_allowed", "\(request.uri.path) takes \(methods.sorted().joined(separator: ", "))").response
            if !methods.isEmpty { response.headers[.allow] = methods.sorted().joined(separator: ", ") }
        } catch {
            let e = APIError.from(error)
            if e.status.code >= 500 { logger.error("request failed", metadata: ["request_id": "\(id)", "path": "\(request.uri.path)", "error": "\(e.message)"]) }
            response = e.response
        }
        response.headers[name] = id
        let route = context.endpointPath ?? "unmatched"
        let status = String(response.status.code)
        Counter(label: "funnel_http_requests_total", dimensions: [("route", route), ("method", request.method.rawValue), ("status", status)]).increment()
        Timer(label: "funnel_http_request_duration_seconds", dimensions: [("route", route)], preferredDisplayUnit: .seconds)
            .recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - start))
        logger.debug("\(request.method) \(request.uri.path) \(status)", metadata: ["request_id": "\(id)"])
        return response
    }
}

/// The API's paths and methods, read from the OpenAPI document (for 405 answers).
enum Routes {
    static let table: [(parts: [String], methods: Set<String>)] = {
        guard let doc = try? JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json.utf8)) as? [String: Any],
              let paths = doc["paths"] as? [String: [String: Any]] else { return [] }
        return paths.map { path, item in
            (path.split(separator: "/").map(String.init), Set(item.keys.filter { $0 != "parameters" }.map { $0.uppercased() }))
        }
    }()

    /// The methods the API takes on `path` (empty: not an API path).
    static func methods(for path: String) -> Set<String> {
        let parts = path.split(separator: "/").map(String.init)
        var out = Set<String>()
        for route in table where route.parts.count == parts.count {
            if zip(route.parts, parts).allSatisfy({ $0.hasPrefix("{") || $0 == $1 }) { out.formUnion(route.methods) }
        }
        return out
    }
}
