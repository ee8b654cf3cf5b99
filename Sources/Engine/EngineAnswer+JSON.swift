import Foundation

extension EngineAnswer {
    /// The answer as JSON text, byte for byte what `JSONEncoder` with `.sortedKeys` writes
    /// (a test holds the two to each other on generated answers).
    ///
    /// Written by hand because measured speed demands it: under load (100,000 items,
    /// 64 connections) `JSONEncoder` took 12% of the HTTP server's CPU, more than re-ranking.
    /// - Throws: `EncodingError.invalidValue` for a non-finite number, as `JSONEncoder` does.
    /// - Complexity: O(size of the text).
    public func jsonBytes() throws -> [UInt8] {
        var out = JSONText()
        out.bytes.reserveCapacity(256 + items.count * 320)
        out.open()
        out.key("items"); try out.array(items) { out, item in try out.item(item) }
        out.key("latency_us"); try out.number(latencyUs)
        if let model { out.key("model"); out.string(model) }
        out.key("path"); out.array(path) { out, s in out.string(s) }
        if let query { out.key("query"); out.string(query) }
        out.key("stages_us"); out.open()
        for (stage, us) in stagesUs.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }) {
            out.key(stage); try out.number(us)
        }
        out.close()
        if let user { out.key("user"); out.string(user) }
        if let version { out.key("version"); out.string(version) }
        out.close()
        return out.bytes
    }
}

/// A JSON writer with `JSONEncoder`'s conventions: keys in the order written (callers write
/// them sorted), `/` escaped, integral doubles without `.0`.
struct JSONText {
    var bytes = [UInt8]()
    /// Whether the container being written has no member yet (one flag per open container).
    private var first = [Bool]()

    mutating func open() { separate(); bytes.append(UInt8(ascii: "{")); first.append(true) }
    mutating func close() { bytes.append(UInt8(ascii: "}")); first.removeLast() }

    mutating func key(_ k: String) {
        separate()
        quoted(k)
        bytes.append(UInt8(ascii: ":"))
        first[first.count - 1] = true  // the value follows the colon without a comma
    }

    mutating func array<C: Collection>(_ values: C, _ write: (inout JSONText, C.Element) throws -> Void) rethrows {
        separate()
        bytes.append(UInt8(ascii: "["))
        first.append(true)
        for v in values { try write(&self, v) }
        bytes.append(UInt8(ascii: "]"))
        first.removeLast()
    }

    /// A comma before every member but the first of its container.
    private mutating func separate() {
        guard let f = first.last else { return }
        if !f { bytes.append(UInt8(ascii: ",")) }
        first[first.count - 1] = false
    }

    mutating func int(_ v: Int) {
        separate()
        bytes.append(contentsOf: String(v).utf8)
    }

    mutating func number(_ v: Double) throws {
        guard v.isFinite else {
            throw EncodingError.invalidValue(v, .init(codingPath: [], debugDescription: "Unable to encode \(v) directly in JSON."))
        }
        separate()
        var text = v.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        bytes.append(contentsOf: text.utf8)
    }

    mutating func string(_ s: String) {
        separate()
        quoted(s)
    }

    /// The string in quotes, escaped; runs of bytes that need no escape are copied whole.
    private mutating func quoted(_ s: String) {
        bytes.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { u in
            var run = 0
            for i in 0..<u.count {
                let b = u[i]
                guard b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") || b == UInt8(ascii: "/") else { continue }
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: u[run..<i]))
                escape(b)
                run = i + 1
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: u[run..<u.count]))
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private mutating func escape(_ b: UInt8) {
        bytes.append(UInt8(ascii: "\\"))
        switch b {
        case 0x08: bytes.append(UInt8(ascii: "b"))
        case 0x09: bytes.append(UInt8(ascii: "t"))
        case 0x0A: bytes.append(UInt8(ascii: "n"))
        case 0x0C: bytes.append(UInt8(ascii: "f"))
        case 0x0D: bytes.append(UInt8(ascii: "r"))
        case 0..<0x20:
            let hex = Array("0123456789abcdef".utf8)
            bytes.append(contentsOf: [UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(b >> 4)], hex[Int(b & 15)]])
        default: bytes.append(b)  // " \ /
        }
    }

    mutating func item(_ x: ServedItem) throws {
        open()
        if let c = x.category { key("category"); string(c) }
        key("explanation"); open()
        let e = x.explanation
        if let lexicalRank = e.lexicalRank { key("lexical_rank"); int(lexicalRank) }
        if let contributions = e.rankerContributions {
            key("ranker_contributions")
            try array(contributions) { out, c in
                out.open()
                out.key("feature"); out.string(c.feature)
                out.key("value"); try out.number(c.value)
                out.close()
            }
        }
        if let rank = e.retrievalRank { key("retrieval_rank"); int(rank) }
        if let score = e.retrievalScore { key("retrieval_score"); try number(score) }
        if let rules = e.rules { key("rules"); array(rules) { out, s in out.string(s) } }
        close()
        key("item"); string(x.item)
        if let r = x.rankerScore { key("ranker_score"); try number(r) }
        key("score"); try number(x.score)
        if let t = x.title { key("title"); string(t) }
        close()
    }
}
