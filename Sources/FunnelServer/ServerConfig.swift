import Engine
import Foundation

/// `funnel serve`'s knobs from a JSON config file and `FUNNEL_*` environment variables
/// (flags, applied by the caller, win over both; the environment wins over the file):
///
///     {"host": "0.0.0.0", "port": 8080, "max_k": 100, "workers": 4, "max_body_bytes": 1048576,
///      "max_batch": 10000, "api_key": "...", "cache_entries": 10000, "cache_ttl": 10,
///      "wal": "/var/lib/funnel/shop.wal", "read_only": false, "idle_timeout": 30, "max_connections": 4096,
///      "change_log": "postgres://funnel@db:5432/funnel", "change_log_table": "shop_changes", "replica": "r1",
///      "fault_delay_ms": 100, "fault_delay_fraction": 0.1,
///      "serving": {"candidates": 300, "ef": 128, "mmr_lambda": 0.7, "mmr_pool": 150,
///                  "freshness_half_life_days": 30, "freshness_weight": 0.1, "max_per_category": 3,
///                  "explanations": 3, "retrieval_budget_ms": 50, "ranking_budget_ms": 50, "deadline_ms": 150}}
///
/// Environment: `FUNNEL_PORT=9090`, `FUNNEL_API_KEY=...`, `FUNNEL_SERVING_DEADLINE_MS=80`, and
/// so on for every key (upper case).
public struct ServerConfig: Sendable {
    public var settings = ServerSettings()
    public var wal: String?
    public var readOnly = false
    /// A PostgreSQL change log shared by replicas (`postgres://...`) instead of the file log,
    /// its table (default: `funnel_changes_` + the model's name) and this replica's name in it.
    public var changeLog: String?
    public var changeLogTable: String?
    public var replica: String?
    /// Serving settings laid over every served version's own (JSON object), nil: none.
    public var serving: Data?

    static let keys = ["host", "port", "max_k", "workers", "max_body_bytes", "max_batch", "api_key", "cache_entries", "cache_ttl", "wal", "read_only", "change_log", "change_log_table", "replica",
                       "idle_timeout", "read_timeout", "max_header_bytes", "max_connections", "fault_delay_ms", "fault_delay_fraction", "serving"]
    static let servingKeys = ["candidates", "ef", "explanations", "mmr_lambda", "mmr_pool", "freshness_half_life_days", "freshness_weight",
                              "max_per_category", "retrieval_budget_ms", "ranking_budget_ms", "deadline_ms"]

    public init() {}

    /// - Throws: `EngineError.invalidRequest` naming the file or variable, the key and what is wrong.
    public static func load(file: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ServerConfig {
        var values = [String: Any]()
        var serving = [String: Any]()
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else { throw EngineError.invalidRequest("cannot read the config file \(file)") }
            guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw EngineError.invalidRequest("\(file) is not a JSON object")
            }
            if let unknown = object.keys.sorted().first(where: { !keys.contains($0) }) {
                throw EngineError.invalidRequest("\(file): unknown key '\(unknown)'; the keys are \(keys.joined(separator: ", "))")
            }
            values = object
            if let s = object["serving"] {
                guard let s = s as? [String: Any] else { throw EngineError.invalidRequest("\(file): 'serving' must be an object") }
                serving = s
            }
        }
        for key in keys where key != "serving" {
            if let v = environment["FUNNEL_" + key.uppercased()] { values[key] = v }
        }
        for key in servingKeys {
            if let v = environment["FUNNEL_SERVING_" + key.uppercased()] {
                guard let x = Double(v) else { throw EngineError.invalidRequest("FUNNEL_SERVING_\(key.uppercased())='\(v)' is not a number") }
                serving[key] = x
            }
        }
        func int(_ key: String) throws -> Int? {
            guard let v = values[key] else { return nil }
            if let i = v as? Int { return i }
            if let s = v as? String, let i = Int(s) { return i }
            throw EngineError.invalidRequest("config '\(key)' must be an integer, got \(v)")
        }
        func double(_ key: String) throws -> Double? {
            guard let v = values[key] else { return nil }
            if let d = v as? Double, d.isFinite { return d }
            if let s = v as? String, let d = Double(s), d.isFinite { return d }
            throw EngineError.invalidRequest("config '\(key)' must be a number, got \(v)")
        }
        func string(_ key: String) throws -> String? {
            guard let v = values[key] else { return nil }
            guard let s = v as? String else { throw EngineError.invalidRequest("config '\(key)' must be a string, got \(v)") }
            return s
        }
        var c = ServerConfig()
        if let v = try string("host") { c.settings.host = v }
        if let v = try int("port") { c.settings.port = v }
        if let v = try int("max_k") { c.settings.maxK = v }
        if let v = try int("workers") { c.settings.workers = v }
        if let v = try int("max_body_bytes") { c.settings.maxBodyBytes = v }
        if let v = try int("max_batch") { c.settings.maxBatch = v }
        if let v = try string("api_key"), !v.isEmpty { c.settings.apiKey = v }
        if let v = try int("cache_entries") { c.settings.cacheEntries = v }
        if let v = try double("cache_ttl") { c.settings.cacheTTL = v }
        if let v = try double("idle_timeout") { c.settings.idleTimeout = v }
        if let v = try int("max_connections") { c.settings.maxConnections = v }
        if let v = try double("read_timeout") { c.settings.readTimeout = v }
        if let v = try int("max_header_bytes") { c.settings.maxHeaderBytes = v }
        let delay = try double("fault_delay_ms"), fraction = try double("fault_delay_fraction")
        if let delay {
            c.settings.faultDelay = FaultDelay(seconds: delay / 1_000, fraction: fraction ?? 1)
        } else if fraction != nil {
            throw EngineError.invalidRequest("config 'fault_delay_fraction' needs 'fault_delay_ms' (the delay it applies)")
        }
        c.wal = try string("wal")
        c.changeLog = try string("change_log")
        c.changeLogTable = try string("change_log_table")
        c.replica = try string("replica")
        if c.changeLog != nil, c.wal != nil { throw EngineError.invalidRequest("config: 'wal' and 'change_log' are two logs; give one") }
        if let v = values["read_only"] {
            switch "\(v)".lowercased() {
            case "true", "1": c.readOnly = true
            case "false", "0": c.readOnly = false
            default: throw EngineError.invalidRequest("config 'read_only' must be true or false, got \(v)")
            }
        }
        if !serving.isEmpty {
            let data = try JSONSerialization.data(withJSONObject: serving)
            _ = try ServingSettings().overlaid(with: data)  // names a bad key or value now, not at the first load
            c.serving = data
        }
        try c.settings.check()
        return c
    }
}

extension ServerSettings {
    /// Refuses settings no server can run with, naming the setting.
    public func check() throws {
        func bad(_ s: String) -> EngineError { .invalidRequest(s) }
        guard (1...65535).contains(port) else { throw bad("port must be in 1...65535, got \(port)") }
        guard (1...Engine.maxK).contains(maxK) else { throw bad("max_k must be in 1...\(Engine.maxK), got \(maxK)") }
        guard workers >= 1 else { throw bad("workers must be at least 1, got \(workers)") }
        guard (1...(1 << 30)).contains(maxBodyBytes) else { throw bad("max_body_bytes must be in 1...\(1 << 30), got \(maxBodyBytes)") }
        guard maxBatch >= 1 else { throw bad("max_batch must be at least 1") }
        guard (0...10_000_000).contains(cacheEntries) else { throw bad("cache_entries must be in 0...10000000, got \(cacheEntries)") }
        guard cacheTTL > 0, cacheTTL.isFinite else { throw bad("cache_ttl must be a positive number of seconds") }
        guard idleTimeout > 0, idleTimeout <= 86_400 else { throw bad("idle_timeout must be in (0, 86400] seconds, got \(idleTimeout)") }
        guard readTimeout > 0, readTimeout <= 3_600 else { throw bad("read_timeout must be in (0, 3600] seconds, got \(readTimeout)") }
        guard (1_024...(1 << 20)).contains(maxHeaderBytes) else { throw bad("max_header_bytes must be in 1024...\(1 << 20), got \(maxHeaderBytes)") }
        guard (1...1_000_000).contains(maxConnections) else { throw bad("max_connections must be in 1...1000000, got \(maxConnections)") }
        if let f = faultDelay {
            guard f.seconds > 0, f.seconds <= 60 else { throw bad("fault_delay_ms must be in (0, 60000], got \(f.seconds * 1_000)") }
            guard f.fraction > 0, f.fraction <= 1 else { throw bad("fault_delay_fraction must be in (0, 1], got \(f.fraction)") }
        }
    }
}
