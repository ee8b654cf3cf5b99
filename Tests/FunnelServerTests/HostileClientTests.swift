import Foundation
import FunnelServer
import Hummingbird
import HummingbirdTesting
import Logging
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The HTTP/1 layer against clients that do not follow the protocol, over real sockets:
/// the answers RFC 9112 asks for (HTTP/1.0 closes unless kept alive), JSON for malformed
/// requests, and a read deadline for half-sent ones.
@Suite("HTTP/1 against hostile clients") struct HostileClientTests {
    /// A blocking TCP client: what it sent, everything it read, and whether the server closed.
    struct RawClient {
        let fd: Int32

        init(port: Int) throws {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard rc == 0 else { throw POSIXError(.ECONNREFUSED) }
        }

        func send(_ text: String) { _ = text.utf8CString.dropLast().withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }

        /// Reads until the server closes, `done` holds, or `seconds` pass: (bytes, closed by
        /// the server). Polls without blocking: the server's handlers share this pool's threads.
        func readAll(seconds: Double, until done: (String) -> Bool = { _ in false }) async -> (text: String, closed: Bool) {
            var out = [UInt8]()
            var buffer = [UInt8](repeating: 0, count: 65_536)
            let end = Date().addingTimeInterval(seconds)
            while Date() < end {
                let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                if n == 0 { return (String(decoding: out, as: UTF8.self), true) }
                if n > 0 {
                    out += buffer[0..<n]
                    if done(String(decoding: out, as: UTF8.self)) { break }
                } else if errno != EAGAIN && errno != EWOULDBLOCK {
                    return (String(decoding: out, as: UTF8.self), true)
                } else {
                    try? await Task.sleep(for: .milliseconds(5))
                }
            }
            return (String(decoding: out, as: UTF8.self), false)
        }

        func close() { _ = Glibc.close(fd) }
    }

    static func app(readTimeout: Double = 0.5, maxConnections: Int = 4_096) -> some ApplicationProtocol {
        let router = Router()
        router.get("ping") { _, _ in "pong" }
        router.post("echo") { request, _ in String(buffer: try await request.body.collect(upTo: 10_000)) }
        var settings = ServerSettings()
        settings.readTimeout = readTimeout
        settings.maxHeaderBytes = 4_096
        settings.maxConnections = maxConnections
        return FunnelServer.application(router: router.buildResponder(), settings: settings, logger: Logger(label: "test"))
    }

    static func status(_ response: String) -> Int? {
        response.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) }
    }

    static func errorCode(_ response: String) -> String? {
        guard let body = response.range(of: "\r\n\r\n").map({ response[$0.upperBound...] }),
              let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else { return nil }
        return (object["error"] as? [String: Any])?["code"] as? String
    }

    @Test("HTTP/1.0 closes after its answer unless it asks for keep-alive; 1.1 stays open")
    func keepAlive() async throws {
        try await Self.app().test(.live) { client in
            let port = try #require(client.port)
            let plain = try RawClient(port: port)
            defer { plain.close() }
            plain.send("GET /ping HTTP/1.0\r\n\r\n")
            let a = await plain.readAll(seconds: 3)
            #expect(a.closed && Self.status(a.text) == 200 && a.text.lowercased().contains("connection: close"))

            let kept = try RawClient(port: port)
            defer { kept.close() }
            kept.send("GET /ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            let b = await kept.readAll(seconds: 2, until: { $0.hasSuffix("pong") })
            #expect(b.text.hasSuffix("pong") && b.text.lowercased().contains("connection: keep-alive"))
            kept.send("GET /ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            let again = await kept.readAll(seconds: 2, until: { $0.hasSuffix("pong") })
            #expect(again.text.hasSuffix("pong") && !again.closed)

            let eleven = try RawClient(port: port)
            defer { eleven.close() }
            eleven.send("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            let open = await eleven.readAll(seconds: 2, until: { $0.hasSuffix("pong") })
            #expect(open.text.hasSuffix("pong") && !open.closed)
            eleven.send("GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            #expect(await eleven.readAll(seconds: 3).closed)
        }
    }

    @Test("malformed requests get a JSON 400, an oversized head a JSON 431, and the connection closes")
    func malformed() async throws {
        try await Self.app().test(.live) { client in
            let port = try #require(client.port)
            for (request, status, code) in [("HELLO\r\n\r\n", 400, "bad_http"),
                                            ("GET /ping HTTP/9.9\r\n\r\n", 400, "bad_http"),
                                            ("POST /ping HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "bad_http"),
                                            ("GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + String(repeating: "a", count: 8_000) + "\r\n\r\n", 431, "too_large")] {
                let c = try RawClient(port: port)
                defer { c.close() }
                c.send(request)
                let r = await c.readAll(seconds: 4)
                #expect(r.closed, "\(request.prefix(30))")
                #expect(Self.status(r.text) == status && Self.errorCode(r.text) == code, "\(request.prefix(30)) -> \(r.text.prefix(200))")
            }
        }
    }

    @Test("a half-sent head or body gets a 408 at the read deadline; other clients are answered meanwhile")
    func readDeadline() async throws {
        try await Self.app(readTimeout: 2).test(.live) { client in
            let port = try #require(client.port)
            let head = try RawClient(port: port)
            defer { head.close() }
            let body = try RawClient(port: port)
            defer { body.close() }
            let started = Date()
            head.send("GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            body.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            // Well before the deadline, a complete request on its own connection is answered (the
            // margin is wide: a loaded machine running the suite in parallel is slow to answer).
            let other = try RawClient(port: port)
            defer { other.close() }
            other.send("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(await other.readAll(seconds: 1.5, until: { $0.hasSuffix("pong") }).text.hasSuffix("pong"))
            for c in [head, body] {
                let r = await c.readAll(seconds: 4)
                #expect(r.closed && Self.status(r.text) == 408 && Self.errorCode(r.text) == "request_timeout", "\(r.text.prefix(200))")
            }
            #expect(Date().timeIntervalSince(started) >= 2)
            // A connection that finished its request in time is not cut by the deadline.
            let ok = try RawClient(port: port)
            defer { ok.close() }
            ok.send("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(await ok.readAll(seconds: 2, until: { $0.hasSuffix("pong") }).text.hasSuffix("pong"))
            try await Task.sleep(for: .milliseconds(2_300))  // idle past the read deadline
            ok.send("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            let r = await ok.readAll(seconds: 2, until: { $0.hasSuffix("pong") })
            #expect(!r.closed && r.text.hasSuffix("pong"), "\(r.text.prefix(200))")
        }
    }

    @Test("a pipelined request cut after its head gets the read deadline too")
    func pipelinedDeadline() async throws {
        // A 2 s deadline: under the address sanitizer the first answer once took longer than
        // 0.5 s, and the deadline's 408 came first.
        try await Self.app(readTimeout: 2).test(.live) { client in
            let c = try RawClient(port: try #require(client.port))
            defer { c.close() }
            // Both heads in one write: no later byte arms the deadline for the second.
            c.send("GET /ping HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            let r = await c.readAll(seconds: 8)
            #expect(r.text.contains("pong"))
            #expect(r.closed && r.text.contains(" 408 ") && r.text.contains("request_timeout"), "closed \(r.closed): \(r.text)")
        }
    }

    @Test("past max_connections a new connection gets a JSON 503 with Retry-After at once; a freed slot serves again")
    func connectionCap() async throws {
        try await Self.app(maxConnections: 3).test(.live) { client in
            let port = try #require(client.port)
            var held = [RawClient]()
            defer { held.forEach { $0.close() } }
            // Served connections until the first refusal: the cap, less the one the test
            // client may hold open itself.
            var refusal: (text: String, closed: Bool)? = nil
            while refusal == nil && held.count <= 3 {
                let c = try RawClient(port: port)
                c.send("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                let r = await c.readAll(seconds: 3, until: { $0.hasSuffix("pong") })
                if r.text.hasSuffix("pong") { held.append(c) } else { refusal = r; c.close() }
            }
            #expect((2...3).contains(held.count), "\(held.count) connections served under a cap of 3")
            let r = try #require(refusal)
            #expect(r.closed && Self.status(r.text) == 503 && Self.errorCode(r.text) == "over_capacity", "\(r.text.prefix(300))")
            #expect(r.text.contains("Retry-After: 1"))
            held.removeFirst().close()
            // The slot frees when the server sees the close.
            var served = false
            for _ in 0..<50 where !served {
                let c = try RawClient(port: port)
                defer { c.close() }
                c.send("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                served = await c.readAll(seconds: 2, until: { $0.hasSuffix("pong") || $0.contains(" 503 ") }).text.hasSuffix("pong")
                if !served { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(served)
        }
    }
}

