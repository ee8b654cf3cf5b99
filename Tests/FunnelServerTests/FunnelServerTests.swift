import Engine
import Foundation
import LinearAlgebra
import FunnelServer
import Hummingbird
import HTTPTypes
import HummingbirdTesting
import Registry
import Testing
import _TestSupport

/// The HTTP API driven through hummingbird's router, against the engine answering the same
/// requests in-process, and against its own OpenAPI document.
@Suite("HTTP API") struct FunnelServerTests {
    struct Fixture {
        let world: TrainedWorld
        let root: String
        let server: FunnelServer
        let app: Application<RouterResponder<BasicRequestContext>>

        init(apiKey: String? = nil, maxBody: Int = 1 << 20, fault: FaultDelay? = nil) throws {
            world = try TrainedWorld()
            root = "\(world.cat.folder)/registry"
            let registry = ModelRegistry(root: root)
            for _ in 0..<2 {
                let copy = "\(world.cat.folder)/copy-\(UUID().uuidString)"
                try FileManager.default.copyItem(atPath: world.folder, toPath: copy)
                try registry.register("shop", from: copy, dataFingerprint: "x", metrics: ["HR@10": 0.1])
            }
            try registry.promote("shop", version: 1)
            // Budgets far above any stage's time: these tests compare the served answer with
            // the in-process one, and under a sanitizer or a loaded machine a stage over its
            // 50 ms budget would answer from a fallback instead.
            let generous = Data(#"{"retrieval_budget_ms": 60000, "ranking_budget_ms": 60000, "deadline_ms": 120000}"#.utf8)
            let models = try LiveModels(root: root, name: "shop", writable: true, serving: generous)
            let service = try LiveService(models: models, logPath: "\(root)/shop.wal")
            var settings = ServerSettings()
            settings.apiKey = apiKey
            settings.maxBodyBytes = maxBody
            settings.faultDelay = fault
            server = FunnelServer(service: service, name: "shop", registryRoot: root, settings: settings, metrics: { "" })
            app = Application(router: server.router())
        }
    }

    static func json(_ r: TestResponse) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(r.body.readableBytesView))) as? [String: Any] ?? [:]
    }

    static func items(_ r: TestResponse) -> [String] {
        (json(r)["items"] as? [[String: Any]] ?? []).compactMap { $0["item"] as? String }
    }

    static func errorCode(_ r: TestResponse) -> String? { (json(r)["error"] as? [String: Any])?["code"] as? String }

    @Test("fault injection delays the API's routes by the set delay, never health, readiness or metrics")
    func faultDelay() async throws {
        let delay = 1.5
        let f = try Fixture(fault: FaultDelay(seconds: delay))
        defer { f.world.cat.remove() }
        func timed(_ uri: String) async throws -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            try await f.app.test(.router) { client in
                try await client.execute(uri: uri, method: .get) { r in #expect(r.status == .ok, "\(uri)") }
            }
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        for uri in ["/v1/models/shop", "/v1/models/shop/recommend?user=u5&k=3"] {
            let t = try await timed(uri)
            #expect(t >= delay, "\(uri) answered in \(t) s")
        }
        // Each would take at least the delay if it were delayed.
        for uri in ["/livez", "/readyz", "/metrics"] {
            let t = try await timed(uri)
            #expect(t < delay, "\(uri) answered in \(t) s")
        }
    }

    @Test("queries answer as the engine does in-process; every error is JSON with the right status")
    func queriesAndErrors() async throws {
        let f = try Fixture()
        defer { f.world.cat.remove() }
        let engine = try f.server.service.engine(for: "u5")
        let direct = try engine.recommend(user: "u5", k: 7).items.map(\.item)
        let similar = try engine.similar(item: "i3", k: 5).items.map(\.item)
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/v1/models/shop/recommend?user=u5&k=7", method: .get) { r in
                #expect(r.status == .ok)
                #expect(Self.items(r) == direct)
                #expect(Self.json(r)["version"] as? String == "v1")
                #expect(r.headers[HTTPField.Name("X-Request-ID")!] != nil)
            }
            let body = ByteBuffer(string: #"{"user": "u5", "k": 7}"#)
            try await client.execute(uri: "/v1/models/shop/recommend", method: .post, body: body) { r in
                #expect(Self.items(r) == direct)
            }
            try await client.execute(uri: "/recommend?user=u5&k=7", method: .get) { r in #expect(Self.items(r) == direct) }
            try await client.execute(uri: "/v1/models/shop/items/i3/similar?k=5", method: .get) { r in #expect(Self.items(r) == similar) }
            try await client.execute(uri: "/v1/models/shop/versions/v2/recommend?user=u5&k=3", method: .get) { r in
                // v2 is not loaded (staging): a pinned request for it is a 404.
                #expect(r.status == .notFound && Self.errorCode(r) == "not_found")
            }
            try await client.execute(uri: "/v1/models/shop/recommend?user=u5&k=3", method: .get,
                                     headers: [HTTPField.Name("X-Request-ID")!: "abc-123"]) { r in
                #expect(r.headers[HTTPField.Name("X-Request-ID")!] == "abc-123")
            }
            // Errors: each a JSON body naming the problem, with its status.
            let cases: [(String, HTTPRequest.Method, String?, HTTPResponse.Status, String)] = [
                ("/v1/models/shop/recommend?user=u5&k=abc", .get, nil, .badRequest, "invalid_argument"),
                ("/v1/models/shop/recommend?user=u5&k=0", .get, nil, .badRequest, "invalid_argument"),
                ("/v1/models/shop/recommend?user=u5&k=1e9", .get, nil, .badRequest, "invalid_argument"),
                ("/v1/models/shop/recommend?user=u5&k=", .get, nil, .badRequest, "invalid_argument"),
                ("/v1/models/shop/recommend?user=u5&k=5.0", .get, nil, .badRequest, "invalid_argument"),
                ("/v1/models/shop/recommend?user=u5&k=1000000000", .get, nil, .badRequest, "invalid_argument"),
                ("/v1/models/shop/recommend?user=u5&explain=maybe", .get, nil, .badRequest, "invalid_argument"),
                ("/v1/models/shop/recommend?k=5", .get, nil, .badRequest, "invalid_argument"),
                ("/v1/models/shop/recommend?user=nobody", .get, nil, .notFound, "not_found"),
                ("/v1/models/other/recommend?user=u5", .get, nil, .notFound, "not_found"),
                ("/v1/models/shop/items/nope/similar", .get, nil, .notFound, "not_found"),
                ("/v1/models/shop/recommend", .post, "{not json", .badRequest, "invalid_argument"),
                ("/v1/models/shop/recommend", .post, #"{"k": 3}"#, .badRequest, "invalid_argument"),
                ("/v1/models/shop/query", .post, #"{"vector": [1, 2]}"#, .badRequest, "invalid_argument"),
                ("/v1/models/shop/interactions", .post, "[]", .badRequest, "invalid_argument"),
                ("/v1/models/shop/items/x", .put, #"{"colour": "red"}"#, .badRequest, "invalid_argument"),
                ("/v1/models/shop/versions/7/promote", .post, nil, .notFound, "not_found"),
                ("/v1/models/shop/versions/abc/promote", .post, nil, .badRequest, "invalid_argument"),
                ("/v1/models/shop/versions/2/promote", .post, #"{"canary": 1.5}"#, .badRequest, "invalid_argument"),
                ("/v1/models/shop/versions/2/promote", .post, #"{"canary": null}"#, .badRequest, "invalid_argument"),
                ("/v1/models/shop/log/compact", .post, #"{"retire": null}"#, .badRequest, "invalid_argument"),
                ("/v1/models/shop/recommend", .post, #"{"user": "u5", "k": null}"#, .badRequest, "invalid_argument"),
                ("/v1/models/shop/interactions", .post, #"[{"user": "u5", "item": "i1", "weight": null}]"#, .badRequest, "invalid_argument"),
                ("/no/such/route", .get, nil, .notFound, "no_route"),
                ("/v1/models/shop/interactions", .get, nil, .methodNotAllowed, "method_not_allowed"),
            ]
            for (uri, method, body, status, code) in cases {
                try await client.execute(uri: uri, method: method, body: body.map { ByteBuffer(string: $0) }) { r in
                    #expect(r.status == status, "\(method) \(uri)")
                    #expect(Self.errorCode(r) == code, "\(method) \(uri): \(String(buffer: r.body))")
                }
            }
        }
    }

    @Test("an item written over HTTP is served by the next request; a deleted one never comes back; interactions exclude what was seen")
    func liveWrites() async throws {
        let f = try Fixture()
        defer { f.world.cat.remove() }
        let attributes = try JSONEncoder().encode(f.world.rows["i17"]!)
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/v1/models/shop/items/twin", method: .put, body: ByteBuffer(bytes: attributes)) { r in
                #expect(r.status == .ok)
                #expect((Self.json(r)["item"] as? [String: Any])?["live"] as? Bool == true)
            }
            try await client.execute(uri: "/v1/models/shop/items/twin", method: .get) { r in #expect(r.status == .ok) }
            // Neither version folded any of the log: compaction keeps every record.
            try await client.execute(uri: "/v1/models/shop/log/compact", method: .post) { r in
                #expect(r.status == .ok)
                let j = Self.json(r)
                #expect(j["through"] as? Int == 0 && j["records_before"] as? Int == 1 && j["records_after"] as? Int == 1, "\(j)")
            }
            try await client.execute(uri: "/v1/models/shop/log/compact", method: .post, body: ByteBuffer(string: #"{"retire": "yes"}"#)) { r in
                #expect(r.status == .badRequest)
            }
            // Similar items of the items whose nearest neighbour it is (brute force) lead with it.
            let e = f.server.service.production
            let twin = e.item("twin")!
            let nearestToTwin: [String] = e.pipeline.reading { v, _ in
                (0..<v.rows).filter { i in
                    i != twin && (0..<v.rows).filter { $0 != i }.max { Distance.dot(v.row(i), v.row($0)) < Distance.dot(v.row(i), v.row($1)) } == twin
                }.map { e.catalog.itemIDs[$0] }
            }
            #expect(!nearestToTwin.isEmpty)
            for item in nearestToTwin.prefix(5) {
                try await client.execute(uri: "/v1/models/shop/items/\(item)/similar?k=5", method: .get) { r in
                    #expect(Self.items(r).first == "twin", "similar to \(item)")
                }
            }
            // The vector query finds it among its retrieval candidates.
            let vector = e.pipeline.reading { v, _ in v.row(twin) }
            let query = try JSONEncoder().encode(["vector": vector])
            try await client.execute(uri: "/v1/models/shop/query", method: .post, body: ByteBuffer(bytes: query)) { r in
                #expect(r.status == .ok)
            }
            // Interactions: the item just seen leaves the user's next answer.
            var first = ""
            try await client.execute(uri: "/v1/models/shop/recommend?user=u9&k=5", method: .get) { r in first = Self.items(r)[0] }
            let seen = ByteBuffer(string: #"[{"user": "u9", "item": "\#(first)"}, {"user": "brand-new", "item": "twin"}]"#)
            try await client.execute(uri: "/v1/models/shop/interactions", method: .post, body: seen) { r in
                #expect(r.status == .ok && Self.json(r)["accepted"] as? Int == 2)
            }
            try await client.execute(uri: "/v1/models/shop/recommend?user=u9&k=5", method: .get) { r in #expect(!Self.items(r).contains(first)) }
            try await client.execute(uri: "/v1/models/shop/recommend?user=brand-new&k=5", method: .get) { r in
                #expect(r.status == .ok && Self.items(r).count == 5 && !Self.items(r).contains("twin"))
            }
            // Delete: gone from every route.
            try await client.execute(uri: "/v1/models/shop/items/\(first)", method: .delete) { r in #expect(r.status == .ok) }
            try await client.execute(uri: "/v1/models/shop/items/\(first)", method: .get) { r in #expect(r.status == .notFound) }
            for u in 0..<30 {
                try await client.execute(uri: "/v1/models/shop/recommend?user=u\(u)&k=20", method: .get) { r in #expect(!Self.items(r).contains(first)) }
            }
            // A promote over HTTP: v2 loads with the log replayed onto it, then serves.
            try await client.execute(uri: "/v1/models/shop/versions/2/promote", method: .post) { r in
                #expect(r.status == .ok)
                #expect(Self.json(r)["serving"] as? [String] == ["v2"])
            }
            try await client.execute(uri: "/v1/models/shop/items/twin", method: .get) { r in #expect(r.status == .ok) }
            try await client.execute(uri: "/v1/models/shop/items/\(first)", method: .get) { r in #expect(r.status == .notFound) }
            try await client.execute(uri: "/v1/models/shop/recommend?user=u9&k=5", method: .get) { r in
                #expect(Self.json(r)["version"] as? String == "v2" && !Self.items(r).contains(first))
            }
            try await client.execute(uri: "/v1/models/shop/rollback", method: .post) { r in
                #expect(r.status == .ok && Self.json(r)["serving"] as? [String] == ["v1"])
            }
        }
    }

    @Test("the result cache answers as the engine does, and no write it depends on is missed")
    func cache() async throws {
        let f = try Fixture()
        defer { f.world.cat.remove() }
        let engine = try f.server.service.engine(for: "u4")
        let direct = { (k: Int) throws -> [String] in try engine.recommend(user: "u4", k: k).items.map(\.item) }
        let expected = try direct(8)
        try await f.app.test(.router) { client in
            var first = [String]()
            for _ in 0..<3 {  // a miss, then hits: the same answer as the engine's
                try await client.execute(uri: "/v1/models/shop/recommend?user=u4&k=8", method: .get) { r in
                    first = Self.items(r)
                    #expect(first == expected)
                }
            }
            // Another k, another entry.
            try await client.execute(uri: "/v1/models/shop/recommend?user=u4&k=3", method: .get) { r in #expect(Self.items(r) == Array(first.prefix(3))) }
            // The user's interaction: their cached answers are stale at once.
            let seen = ByteBuffer(string: #"[{"user": "u4", "item": "\#(first[0])"}]"#)
            try await client.execute(uri: "/v1/models/shop/interactions", method: .post, body: seen) { r in #expect(r.status == .ok) }
            let after = try direct(8)
            try await client.execute(uri: "/v1/models/shop/recommend?user=u4&k=8", method: .get) { r in
                #expect(!Self.items(r).contains(first[0]))
                #expect(Self.items(r) == after)
            }
            // An item write: every cached answer is stale (here, a deleted item never comes back).
            var other = [String]()
            try await client.execute(uri: "/v1/models/shop/recommend?user=u6&k=8", method: .get) { r in other = Self.items(r) }
            try await client.execute(uri: "/v1/models/shop/items/\(other[1])", method: .delete) { r in #expect(r.status == .ok) }
            try await client.execute(uri: "/v1/models/shop/recommend?user=u6&k=8", method: .get) { r in #expect(!Self.items(r).contains(other[1])) }
        }
    }

    /// A cap of one per category, filled past to k: every category once, then (only when
    /// fewer than k categories were among the candidates) repeats of categories already shown.
    static func capHolds(_ categories: [String], k: Int) -> Bool {
        let firstRepeat = categories.indices.first { Set(categories[...$0]).count <= $0 } ?? categories.count
        let head = Set(categories[..<firstRepeat])
        return categories.count == k && head.count == firstRepeat && categories[firstRepeat...].allSatisfy(head.contains)
    }

    @Test("a request's own rules: a pinned candidate leads, a category cap holds (filled past to k), bad values are 400")
    func requestRules() async throws {
        let f = try Fixture()
        defer { f.world.cat.remove() }
        let engine = try f.server.service.engine(for: "u8")
        let plain = try engine.recommend(user: "u8", k: 10).items
        let pinned = plain[6].item
        try await f.app.test(.router) { client in
            let body = ByteBuffer(string: #"{"user": "u8", "k": 10, "pin": ["\#(pinned)"], "max_per_category": 1, "candidates": 300, "ef": 200}"#)
            try await client.execute(uri: "/v1/models/shop/recommend", method: .post, body: body) { r in
                #expect(r.status == .ok)
                let items = (Self.json(r)["items"] as? [[String: Any]]) ?? []
                #expect(items.first?["item"] as? String == pinned)
                #expect(Self.capHolds(items.compactMap { $0["category"] as? String }, k: 10))
            }
            try await client.execute(uri: "/v1/models/shop/recommend?user=u8&k=10&max_per_category=1", method: .get) { r in
                #expect(Self.capHolds(((Self.json(r)["items"] as? [[String: Any]]) ?? []).compactMap { $0["category"] as? String }, k: 10))
            }
            for bad in [#"{"user": "u8", "candidates": 0}"#, #"{"user": "u8", "pin": ["no-such-item"]}"#, #"{"user": "u8", "boost": {"i1": -2}}"#,
                        #"{"user": "u8", "max_per_category": 0}"#] {
                try await client.execute(uri: "/v1/models/shop/recommend", method: .post, body: ByteBuffer(string: bad)) { r in
                    #expect(r.status == .badRequest || r.status == .notFound, "\(bad)")
                }
            }
        }
    }

    @Test("write routes need the API key when one is set; bodies over the limit are 413")
    func keyAndLimits() async throws {
        let f = try Fixture(apiKey: "s3cret", maxBody: 2_000)
        defer { f.world.cat.remove() }
        try await f.app.test(.router) { client in
            let body = ByteBuffer(string: #"[{"user": "u1", "item": "i1"}]"#)
            try await client.execute(uri: "/v1/models/shop/interactions", method: .post, body: body) { r in
                #expect(r.status == .unauthorized && Self.errorCode(r) == "unauthenticated")
            }
            try await client.execute(uri: "/v1/models/shop/interactions", method: .post, headers: [.authorization: "Bearer wrong"], body: body) { r in
                #expect(r.status == .unauthorized)
            }
            try await client.execute(uri: "/v1/models/shop/interactions", method: .post, headers: [.authorization: "Bearer s3cret"], body: body) { r in
                #expect(r.status == .ok)
            }
            // Reads need no key.
            try await client.execute(uri: "/v1/models/shop/recommend?user=u1&k=3", method: .get) { r in #expect(r.status == .ok) }
            let big = ByteBuffer(string: "[" + Array(repeating: #"{"user": "u1", "item": "i1"}"#, count: 200).joined(separator: ",") + "]")
            try await client.execute(uri: "/v1/models/shop/interactions", method: .post, headers: [.authorization: "Bearer s3cret"], body: big) { r in
                #expect(r.status == .contentTooLarge && Self.errorCode(r) == "too_large")
            }
        }
    }

    @Test("the served document is the committed one, and every route it documents is answered")
    func document() async throws {
        let committed = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../docs/openapi.json")
        let text = try String(contentsOf: committed, encoding: .utf8)
        #expect(text.trimmingCharacters(in: .whitespacesAndNewlines) == OpenAPIDocument.json.trimmingCharacters(in: .whitespacesAndNewlines),
                "docs/openapi.json and OpenAPIDocument.swift differ: run tools/openapi-document.py")
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json.utf8)) as? [String: Any])
        let paths = try #require(doc["paths"] as? [String: [String: Any]])
        let f = try Fixture()
        defer { f.world.cat.remove() }
        try await f.app.test(.router) { client in
            for (path, item) in paths.sorted(by: { $0.key < $1.key }) {
                let uri = path.replacingOccurrences(of: "{name}", with: "shop").replacingOccurrences(of: "{item}", with: "i1")
                    .replacingOccurrences(of: "{version}", with: "1")
                for method in item.keys where method != "parameters" {
                    try await client.execute(uri: uri, method: HTTPRequest.Method(method.uppercased())!) { r in
                        // Answered by a route (possibly refusing the empty request), never unrouted.
                        #expect(Self.errorCode(r) != "no_route" && Self.errorCode(r) != "method_not_allowed", "\(method) \(path)")
                        let documented = ((item[method] as? [String: Any])?["responses"] as? [String: Any])?.keys.contains(String(r.status.code)) ?? false
                        #expect(documented, "\(method) \(path) answered \(r.status.code), which the document does not list")
                    }
                }
            }
        }
    }
}
