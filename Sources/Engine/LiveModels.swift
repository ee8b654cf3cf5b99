import Foundation
import Registry
import Serving
#if canImport(Glibc)
import Glibc
#endif

/// The versions of one registry model a server answers with, kept in step with the
/// registry while it serves: production, the canary (for its share of users, routed by a
/// hash of their id) and the shadow.
///
/// `refresh()` (called by a background poll, or by hand) looks at the registry manifest;
/// when it changed, every version the new state needs is loaded and validated beside the
/// ones serving, then the new set is swapped in at once. Requests that already hold an
/// engine finish on it. A version that fails to load or validate is refused and reported
/// (`lastError`), and the old set keeps serving. Routing reads only the in-memory set: no
/// request reads the manifest.
public final class LiveModels: @unchecked Sendable {
    public struct Snapshot: Sendable {
        public var production: Engine
        public var canary: (engine: Engine, fraction: Double)?
        public var shadow: Engine?
        /// Every loaded version by name ("v3").
        public var versions: [String: Engine]
    }

    public let root: String
    public let name: String
    public let writable: Bool
    public let serving: Data?
    private let lock = NSLock()
    private var current: Snapshot
    private var signature: String
    private var failure: String?
    private var poller: Thread?
    private var stopping = false
    /// Runs on newly loaded versions before they serve, under `swapLock` (which live writes
    /// also take, so that no write falls between a replay and the swap).
    public var beforeSwap: (@Sendable ([Engine]) throws -> Void)?
    public let swapLock = NSLock()
    private let refreshing = NSLock()

    /// Loads what the registry serves now.
    /// - Throws: `RegistryError` for an unknown model, `EngineError` when a version fails to load.
    /// - Parameter writable: the versions take live writes (see `Engine.init(writable:)`).
    /// - Parameter serving: replaces some serving settings of every version (see `ServingSettings.overlaid`).
    public init(root: String, name: String, writable: Bool = false, serving: Data? = nil) throws {
        self.root = root
        self.name = name
        self.writable = writable
        self.serving = serving
        signature = Self.signature(of: ModelRegistry(root: root).manifestFile)
        current = try Self.load(root: root, name: name, reuse: [:], writable: writable, serving: serving)
    }

    deinit { stop() }

    /// The versions serving now.
    public var snapshot: Snapshot { lock.withLock { current } }

    /// Why the last refresh kept the old versions (nil when it succeeded).
    public var lastError: String? { lock.withLock { failure } }

    /// The engine that answers `user`: the canary for its share of users, else production.
    public func route(_ user: String) -> Engine {
        let s = snapshot
        if let c = s.canary, ModelRegistry.bucket(user) < c.fraction { return c.engine }
        return s.production
    }

    /// The engine of a version ("v3") pinned by a request, when it is loaded.
    public func version(_ v: String) -> Engine? { snapshot.versions[v] }

    /// Reloads when the registry manifest changed since the last look.
    /// - Returns: true when a new set of versions now serves.
    @discardableResult
    public func refresh() -> Bool {
        // One refresh at a time (the poll and an admin request may both ask).
        refreshing.lock()
        defer { refreshing.unlock() }
        let sig = Self.signature(of: ModelRegistry(root: root).manifestFile)
        guard sig != lock.withLock({ signature }) else { return false }
        do {
            let old = snapshot.versions
            let next = try Self.load(root: root, name: name, reuse: old, writable: writable, serving: serving)
            let fresh = next.versions.filter { old[$0.key] !== $0.value }.map(\.value)
            try swapLock.withLock {
                try beforeSwap?(fresh)
                lock.withLock {
                    current = next
                    signature = sig
                    failure = nil
                }
            }
            return true
        } catch {
            // Keep serving what serves; look again at the next change.
            lock.withLock {
                signature = sig
                failure = "\(error)"
            }
            return false
        }
    }

    /// Polls the registry every `interval` seconds on a background thread until `stop()`.
    public func startPolling(every interval: Double = 1, onChange: @escaping @Sendable (LiveModels, Bool) -> Void = { _, _ in }) {
        lock.withLock {
            guard poller == nil else { return }
            let t = Thread { [weak self] in
                while let self, !self.lock.withLock({ self.stopping }) {
                    let before = self.lastError
                    let changed = self.refresh()
                    if changed || self.lastError != before { onChange(self, changed) }
                    Thread.sleep(forTimeInterval: interval)
                }
            }
            t.name = "funnel-registry-poll"
            poller = t
            t.start()
        }
    }

    public func stop() { lock.withLock { stopping = true } }

    // MARK: - Loading

    static func load(root: String, name: String, reuse: [String: Engine], writable: Bool, serving: Data?) throws -> Snapshot {
        let registry = ModelRegistry(root: root)
        let versions = try registry.versions(of: name)
        func engine(_ v: ModelVersion) throws -> Engine {
            if let e = reuse["v\(v.version)"] { return e }
            return try Engine(folder: try registry.checkedFolder(name, v), name: name, version: "v\(v.version)", writable: writable, serving: serving)
        }
        let production = try engine(try registry.current(name))
        var loaded = [production.version!: production]
        var canary: (Engine, Double)? = nil
        if let c = versions.first(where: { $0.state == .canary }), let f = c.canaryFraction {
            let e = try engine(c)
            loaded["v\(c.version)"] = e
            canary = (e, f)
        }
        var shadow: Engine? = nil
        if let s = versions.first(where: { $0.state == .shadow }) {
            let e = try engine(s)
            loaded["v\(s.version)"] = e
            shadow = e
        }
        return Snapshot(production: production, canary: canary, shadow: shadow, versions: loaded)
    }

    /// The manifest's size and modification time (and inode: an atomic rename changes it).
    static func signature(of path: String) -> String {
        var st = stat()
        guard stat(path, &st) == 0 else { return "missing" }
        return "\(st.st_ino)/\(st.st_size)/\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
    }
}

extension ModelRegistry {
    /// The manifest's path (watched by `LiveModels`).
    public var manifestFile: String { "\(root)/registry.fnl" }
}
