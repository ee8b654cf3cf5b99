import Engine
import Foundation
import Metrics

/// Encoded answers of recommendation requests, keyed by the engine that answered (its
/// version: a model swap misses), the user and every request parameter. An entry is used
/// only while the engine's item writes and the user's own interactions are what they were
/// when it was computed, and for at most `ttl` seconds (interactions move other users'
/// popularity features a little: the TTL bounds that staleness). Bounded: past `capacity`
/// entries the oldest go first.
final class ResultCache: @unchecked Sendable {
    struct Entry {
        var engine: ObjectIdentifier
        var items: UInt64
        var user: UInt64
        var born: Double
        var body: Data
    }

    let capacity: Int
    let ttl: Double
    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    private var order: [String] = []
    private var head = 0
    private let hits = Counter(label: "funnel_cache_hits_total")
    private let misses = Counter(label: "funnel_cache_misses_total")

    init(capacity: Int, ttl: Double) {
        self.capacity = capacity
        self.ttl = ttl
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    func get(_ key: String, engine: Engine, user: String) -> Data? {
        let fresh = engine.freshness(of: user)
        let hit: Data? = lock.withLock {
            guard let e = entries[key], e.engine == ObjectIdentifier(engine), e.items == fresh.items, e.user == fresh.user,
                  Self.now() - e.born < ttl else { return nil }
            return e.body
        }
        (hit == nil ? misses : hits).increment()
        return hit
    }

    /// Stores an answer computed at `fresh` (read before the engine ran, so that a write
    /// racing the request makes the entry stale rather than wrong).
    func put(_ key: String, engine: Engine, fresh: (items: UInt64, user: UInt64), body: Data) {
        lock.withLock {
            if entries[key] == nil {
                if order.count < capacity {
                    order.append(key)
                } else {
                    entries[order[head]] = nil
                    order[head] = key
                    head = (head + 1) % capacity
                }
            }
            entries[key] = Entry(engine: ObjectIdentifier(engine), items: fresh.items, user: fresh.user, born: Self.now(), body: body)
        }
    }
}
