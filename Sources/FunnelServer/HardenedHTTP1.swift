import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

/// Hummingbird's HTTP/1 channel with the limits a server facing unknown clients needs.
///
/// The stock channel waits as long as a client keeps a request half-sent, keeps an
/// HTTP/1.0 connection open after its answer, and answers a malformed request with an
/// empty 400. This one differs in three places and is otherwise Hummingbird's pipeline
/// (NIO's HTTP/1 codec, the HTTP types codec, Hummingbird's connection state handler
/// with its idle timeout and graceful shutdown):
///
/// - **Read deadline.** From the first byte of a request, its head and body must arrive
///   within `readTimeout` seconds; past it the client gets a JSON 408 and the connection
///   is closed (slow headers, slow bodies). A connection that sends nothing is left to
///   the idle timeout.
/// - **HTTP/1.0 and `Connection: close`.** A request that does not ask to be kept alive
///   (HTTP/1.0 without `Connection: keep-alive`, or `Connection: close`) is answered with
///   `Connection: close` and the connection is closed after the answer.
/// - **An answer with `Connection: close`** (a 413 before the body was read) closes the
///   connection after it is sent, instead of reading the rest of an oversized body.
/// - **Malformed requests** get a JSON error: 431 when the head is over `maxHeaderBytes`,
///   400 otherwise, then the connection is closed.
/// - **Past `maxConnections`** open connections, a new one is answered at once with a JSON
///   503 and `Retry-After: 1`, then closed, so that a load balancer can send the request
///   elsewhere instead of waiting in the kernel's backlog. Past that plus a reserve for
///   these answers, the server stops accepting.
struct HardenedHTTP1Channel: HTTPChannelHandler {
    typealias Value = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    let responder: HTTPChannelHandler.Responder
    let readTimeout: TimeAmount
    let idleTimeout: TimeAmount
    let maxHeaderBytes: Int
    let gate: ConnectionGate

    init(responder: @escaping HTTPChannelHandler.Responder, settings: ServerSettings) {
        self.responder = responder
        readTimeout = .nanoseconds(Int64(settings.readTimeout * 1e9))
        idleTimeout = .nanoseconds(Int64(settings.idleTimeout * 1e9))
        maxHeaderBytes = settings.maxHeaderBytes
        gate = ConnectionGate(limit: settings.maxConnections)
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let sync = channel.pipeline.syncOperations
            if gate.enter() {
                channel.closeFuture.whenComplete { [gate] _ in gate.leave() }
            } else {
                try sync.addHandler(OverCapacity(limit: gate.limit))
            }
            var limits = NIOHTTPDecoderLimitConfiguration()
            limits.maxHeaderFieldSize = maxHeaderBytes
            limits.maxHeaderListSize = maxHeaderBytes
            limits.maxHeaderFieldCount = 200
            let deadline = ReadDeadline(timeout: readTimeout)
            try sync.addHandler(deadline)
            try sync.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: false,
                                                 withOutboundHeaderValidation: false, withEncoderConfiguration: .init(),
                                                 withDecoderLimitConfiguration: limits)
            try sync.addHandler(HTTP1Semantics(deadline: deadline))
            try sync.addHandler(HTTP1ToHTTPServerCodec(secure: false))
            try sync.addHandler(HTTPConnectionStateHandler(idleTimeout: Duration.nanoseconds(idleTimeout.nanoseconds), logger: logger))
            return try NIOAsyncChannel(wrappingChannelSynchronously: channel,
                                       configuration: .init(isOutboundHalfClosureEnabled: true))
        }
    }

    func handle(value asyncChannel: Value, logger: Logger) async {
        await handleHTTP(asyncChannel: asyncChannel, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// Funnel's HTTP/1 server: Hummingbird's, with a read deadline, HTTP/1.0 semantics and
    /// JSON answers to malformed requests (see `HardenedHTTP1Channel`).
    static func hardenedHTTP1(_ settings: ServerSettings) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in HardenedHTTP1Channel(responder: responder, settings: settings) }
    }
}

/// Counts open connections against the cap (`ServerSettings.maxConnections`).
final class ConnectionGate: @unchecked Sendable {
    let limit: Int
    private var open = 0
    private let lock = NSLock()

    init(limit: Int) { self.limit = limit }

    /// Admits a connection if fewer than `limit` are open.
    func enter() -> Bool {
        lock.withLock {
            guard open < limit else { return false }
            open += 1
            return true
        }
    }

    func leave() { lock.withLock { open -= 1 } }

    /// Connections accepted past the cap only to be told 503: a reserve of a quarter of the
    /// cap (16 to 1024); past cap + reserve the server stops accepting.
    static func acceptLimit(_ cap: Int) -> Int { cap + min(1_024, max(16, cap / 4)) }
}

/// First in the pipeline of a connection over the cap: answers 503 as soon as the
/// connection is up, drops whatever the client sends, closes after a short linger.
final class OverCapacity: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    let limit: Int
    private var answered = false

    init(limit: Int) { self.limit = limit }

    func handlerAdded(context: ChannelHandlerContext) { if context.channel.isActive { answer(context) } }
    func channelActive(context: ChannelHandlerContext) { answer(context); context.fireChannelActive() }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
    func channelReadComplete(context: ChannelHandlerContext) {}

    private func answer(_ context: ChannelHandlerContext) {
        guard !answered else { return }
        answered = true
        var bytes = rawJSONError(status: 503, reason: "Service Unavailable", code: "over_capacity",
                                 message: "the server holds its maximum of \(limit) connections; retry shortly or elsewhere")
        let split = bytes.firstIndex(of: UInt8(ascii: "\r"))!
        bytes.insert(contentsOf: Array("\r\nRetry-After: 1".utf8), at: split)
        context.writeAndFlush(NIOAny(context.channel.allocator.buffer(bytes: bytes))).whenComplete { _ in
            context.close(mode: .output, promise: nil)
            context.eventLoop.scheduleTask(in: .seconds(2)) { context.close(promise: nil) }
        }
    }
}

/// The API's error body, `{"error": {"code", "message"}}`.
func errorBody(code: String, message: String) -> [UInt8] {
    Array((try? JSONSerialization.data(withJSONObject: ["error": ["code": code, "message": message]], options: [.sortedKeys])) ?? Data())
}

/// A JSON error answer written straight to the socket (below every codec).
func rawJSONError(status: Int, reason: String, code: String, message: String) -> [UInt8] {
    let body = errorBody(code: code, message: message)
    return Array("HTTP/1.1 \(status) \(reason)\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
}

/// Bytes in: arms a deadline at a request's first byte; `HTTP1Semantics` disarms it when
/// the request's end is decoded. Past the deadline: a 408 and the connection closed.
final class ReadDeadline: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let timeout: TimeAmount
    private var inRequest = false
    private var timer: Scheduled<Void>?
    private var context: ChannelHandlerContext?
    /// An error answer is out: what the client still sends is read and dropped until it
    /// stops or a short grace passes, so that its socket does not reset before it reads
    /// the answer (a lingering close).
    private var draining = false
    /// An answer to the request being read has started (an early 413, say): past the
    /// deadline the connection is only closed, never given a second answer.
    private var answered = false

    init(timeout: TimeAmount) { self.timeout = timeout }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { cancel(); self.context = nil }
    func channelInactive(context: ChannelHandlerContext) { cancel(); context.fireChannelInactive() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if draining { return }
        if !inRequest { arm(context) }
        context.fireChannelRead(data)
    }

    /// After an error answer: shut the output, drop further input, close within 2 s.
    func lingerThenClose() {
        guard let context, !draining else { return }
        draining = true
        cancel()
        context.close(mode: .output, promise: nil)
        context.eventLoop.scheduleTask(in: .seconds(2)) { context.close(promise: nil) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if !draining { context.fireChannelReadComplete() }
    }

    /// The head of the request being read has been decoded.
    private var headSeen = false

    /// The answer to the request being read has started (answers to earlier, pipelined
    /// requests do not count: `HTTP1Semantics` tells them apart).
    func answerStarted() { if headSeen { answered = true } }

    /// A request's head was decoded: the deadline runs from here if no byte armed it, as
    /// for a pipelined request that came in the same read as the one before it.
    func requestStarted() {
        headSeen = true
        guard let context, !inRequest, !draining else { return }
        arm(context)
    }

    /// A request begins: its deadline starts now.
    private func arm(_ context: ChannelHandlerContext) {
        inRequest = true
        answered = false
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) { loopBound.value.expired() }
    }

    /// The request's last part was decoded.
    func requestRead() {
        inRequest = false
        headSeen = false
        answered = false
        cancel()
    }

    private func cancel() {
        timer?.cancel()
        timer = nil
    }

    private func expired() {
        timer = nil
        guard inRequest, let context else { return }
        if answered { return context.close(promise: nil) }
        let seconds = Double(timeout.nanoseconds) / 1e9
        let bytes = rawJSONError(status: 408, reason: "Request Timeout", code: "request_timeout",
                                 message: "the request did not arrive in full within \(seconds) seconds of its first byte")
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes))).whenComplete { [self] _ in lingerThenClose() }
    }
}

/// HTTP/1 parts: keep-alive as HTTP/1.0 and 1.1 define it, and JSON for parse errors.
final class HTTP1Semantics: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    let deadline: ReadDeadline
    /// The request being answered asked to be kept alive, and with which version.
    private var keepAlive = true
    private var version = HTTPVersion.http1_1
    /// A response head is out and its end is not (a parse error then only closes).
    private var responding = false
    /// Request heads decoded and response heads written: an answer is to the request being
    /// read only when they are equal after it (otherwise it answers a pipelined earlier one).
    private var heads = 0
    private var answers = 0
    /// The answer says `Connection: close` (a 413 whose body was not read): the connection
    /// closes after it instead of reading the rest of the body.
    private var closeAfterAnswer = false

    init(deadline: ReadDeadline) { self.deadline = deadline }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(var head):
            heads += 1
            deadline.requestStarted()
            keepAlive = head.isKeepAlive
            version = head.version
            // Hummingbird ends the connection after a request whose header says close.
            if !keepAlive { head.headers.replaceOrAdd(name: "connection", value: "close") }
            context.fireChannelRead(wrapInboundOut(.head(head)))
        case .body:
            context.fireChannelRead(data)
        case .end:
            deadline.requestRead()
            context.fireChannelRead(data)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head):
            responding = true
            answers += 1
            if answers == heads { deadline.answerStarted() }
            closeAfterAnswer = keepAlive && head.headers[canonicalForm: "connection"].contains { $0.lowercased() == "close" }
            if !keepAlive {
                head.headers.replaceOrAdd(name: "connection", value: "close")
            } else if version == .http1_0 {
                head.headers.replaceOrAdd(name: "connection", value: "keep-alive")
            }
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            responding = false
            guard closeAfterAnswer else { return context.write(data, promise: promise) }
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.whenComplete { [deadline] _ in deadline.lingerThenClose() }
            written.futureResult.cascade(to: promise)
            context.write(data, promise: written)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parse = error as? HTTPParserError else { return context.fireErrorCaught(error) }
        deadline.requestRead()
        guard !responding else { return context.close(promise: nil) }
        let (status, message): (HTTPResponseStatus, String)
        switch parse {
        case .headerOverflow: (status, message) = (.requestHeaderFieldsTooLarge, "the request's head is over the server's limit")
        default: (status, message) = (.badRequest, "the request is not valid HTTP/1.1 (\(parse))")
        }
        let body = errorBody(code: status == .badRequest ? "bad_http" : "too_large", message: message)
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "connection", value: "close")
        headers.add(name: "content-length", value: "\(body.count)")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { [deadline] _ in deadline.lingerThenClose() }
    }
}
