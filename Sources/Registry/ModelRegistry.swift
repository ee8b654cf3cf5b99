import _FunnelKernels
import Foundation
import Persistence
#if canImport(Glibc)
import Glibc
#endif

/// Where a model version is in its life.
public enum ModelState: String, Codable, Sendable, CaseIterable {
    /// Registered, not serving.
    case staging
    /// Serving a deterministic fraction of users next to production.
    case canary
    /// Serving everyone not routed to the canary.
    case production
    /// Given a copy of requests next to production; its answers are compared, never returned.
    case shadow
    /// Served once (or never), kept loadable for a rollback.
    case archived
}

/// One registered version of a named model.
public struct ModelVersion: Codable, Sendable, Equatable {
    public var version: Int
    public var state: ModelState
    /// The version's folder, relative to the registry root (towers, index, ranker, config, metrics).
    public var path: String
    /// Unix seconds.
    public var created: Int64
    /// A fingerprint of the training data (e.g. CRC-32C of the interaction log), to tell
    /// which data a version saw.
    public var dataFingerprint: String
    public var metrics: [String: Double]
    /// When it last became production (to roll back to the one before).
    public var promoted: Int64?
    /// The order in which versions became production (1, 2, ...): a rollback goes to the
    /// one promoted before, even when two promotions fall in the same second.
    public var promotionOrder: Int?
    /// Fraction of users a canary serves.
    public var canaryFraction: Double?
}

/// Errors of the registry, each naming the model, version or file involved.
public enum RegistryError: Error, CustomStringConvertible, Equatable {
    case unknownModel(String)
    case unknownVersion(String, Int)
    case invalidTransition(String)
    case corrupt(String)

    public var description: String {
        switch self {
        case .unknownModel(let m): return "no model named '\(m)' in the registry"
        case .unknownVersion(let m, let v): return "model '\(m)' has no version \(v)"
        case .invalidTransition(let s): return s
        case .corrupt(let s): return "registry file is unreadable: \(s)"
        }
    }
}

/// A model registry on disk: named models with numbered versions in folders under `root`
/// (`root/NAME/vN/`), and one manifest (`root/registry.fnl`, Funnel's versioned,
/// checksummed container around JSON) saying which version is in which state.
///
/// Every change is a read-modify-write of the manifest under an exclusive file lock
/// (`root/.registry.lock`), written atomically (temp file, fsync, rename): readers see the
/// old or the new manifest, never a torn one, and two writers never lose each other's
/// change. Promotion and rollback only rewrite the manifest, so they are atomic too.
public struct ModelRegistry: Sendable {
    public let root: String
    static let magic = "FNLREGST"

    public struct Manifest: Codable, Sendable, Equatable {
        public var models: [String: [ModelVersion]] = [:]
    }

    public init(root: String) {
        self.root = root.hasSuffix("/") ? String(root.dropLast()) : root
    }

    var manifestPath: String { "\(root)/registry.fnl" }

    // MARK: - Reading

    /// The manifest (empty when the registry has none yet).
    /// - Throws: `RegistryError.corrupt` when the file exists but fails its checks.
    public func manifest() throws -> Manifest {
        guard FileManager.default.fileExists(atPath: manifestPath) else { return Manifest() }
        do {
            var (_, r) = try FunnelFile.read(manifestPath, magic: Self.magic, versions: 1...1)
            let bytes = try r.readArray(UInt8.self, "manifest", maxCount: r.remaining)
            let m = try JSONDecoder().decode(Manifest.self, from: Data(bytes))
            try Self.check(m)
            return m
        } catch let e as DecodingError {
            throw RegistryError.corrupt("\(manifestPath): \(e)")
        } catch {
            throw RegistryError.corrupt("\(manifestPath): \(error)")
        }
    }

    /// Refuses a manifest whose names or paths could point outside the registry: every
    /// model name is letters, digits, '-' and '_', every version path is exactly
    /// `<name>/v<version>`, versions are positive and distinct, fractions in (0, 1).
    static func check(_ m: Manifest) throws {
        for (name, versions) in m.models {
            guard Self.validName(name) else { throw RegistryError.corrupt("model name '\(name)' is not letters, digits, '-' and '_'") }
            var seen = Set<Int>()
            for v in versions {
                guard v.version > 0, seen.insert(v.version).inserted else { throw RegistryError.corrupt("\(name): version \(v.version) is not positive or repeats") }
                guard v.path == "\(name)/v\(v.version)" else {
                    throw RegistryError.corrupt("\(name) v\(v.version): path '\(v.path)' is not '\(name)/v\(v.version)' (versions live inside the registry root)")
                }
                if let f = v.canaryFraction, !(f > 0 && f < 1) { throw RegistryError.corrupt("\(name) v\(v.version): canary fraction \(f) is not in (0, 1)") }
            }
        }
    }

    /// Refuses a model name `register` would refuse, before any work is done for it.
    public static func checkName(_ name: String) throws {
        guard validName(name) else { throw RegistryError.invalidTransition("model name '\(name)': use letters, digits, '-' and '_' (ASCII, at most 200)") }
    }

    static func validName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 200 && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
    }

    public func versions(of name: String) throws -> [ModelVersion] {
        guard let v = try manifest().models[name] else { throw RegistryError.unknownModel(name) }
        return v
    }

    /// The production version, else the newest version.
    public func current(_ name: String) throws -> ModelVersion {
        let all = try versions(of: name)
        if let p = all.first(where: { $0.state == .production }) { return p }
        guard let last = all.last else { throw RegistryError.unknownModel(name) }
        return last
    }

    public func folder(_ name: String, _ v: ModelVersion) -> String { "\(root)/\(v.path)" }

    /// `folder(name, v)` when it is a real folder inside the root: a symlink or a file in
    /// its place is refused (a registry's versions are what `register` moved in).
    public func checkedFolder(_ name: String, _ v: ModelVersion) throws -> String {
        let path = folder(name, v)
        var st = stat()
        guard lstat(path, &st) == 0 else { throw RegistryError.corrupt("\(path): missing (errno \(errno))") }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw RegistryError.corrupt("\(path) is \((st.st_mode & S_IFMT) == S_IFLNK ? "a symlink" : "not a folder"); a version folder must be a real folder inside the registry")
        }
        return path
    }

    /// Which version serves `userID`: the canary for a deterministic `canaryFraction` of
    /// users (by a hash of the id, stable across processes and restarts), else production.
    /// - Returns: the version and whether it is the canary.
    public func route(_ name: String, userID: String) throws -> (version: ModelVersion, canary: Bool) {
        let all = try versions(of: name)
        guard let production = all.first(where: { $0.state == .production }) ?? all.last else {
            throw RegistryError.unknownModel(name)
        }
        if let canary = all.first(where: { $0.state == .canary }), let f = canary.canaryFraction,
           Self.bucket(userID) < f {
            return (canary, true)
        }
        return (production, false)
    }

    /// A user's position in [0, 1): CRC-32C of the id, so every process agrees.
    public static func bucket(_ userID: String) -> Double {
        let bytes = Array(userID.utf8)
        let h = bytes.withUnsafeBytes { fk_crc32c(0x9E37_79B9, $0.baseAddress, $0.count) }
        return Double(h) / 4_294_967_296
    }

    // MARK: - Changing

    /// Registers the model folder at `source` (moved into the registry) as the next version
    /// of `name`, in staging.
    @discardableResult
    public func register(_ name: String, from source: String, dataFingerprint: String,
                         metrics: [String: Double] = [:]) throws -> ModelVersion {
        guard Self.validName(name) else {
            throw RegistryError.invalidTransition("model name '\(name)': use letters, digits, '-' and '_'")
        }
        return try update { m in
            let next = (m.models[name]?.map(\.version).max() ?? 0) + 1
            let path = "\(name)/v\(next)"
            try FileManager.default.createDirectory(atPath: "\(root)/\(name)", withIntermediateDirectories: true)
            let target = "\(root)/\(path)"
            if FileManager.default.fileExists(atPath: target) {  // left over from a crash before the manifest was written
                try FileManager.default.removeItem(atPath: target)
            }
            try FileManager.default.moveItem(atPath: source, toPath: target)
            let v = ModelVersion(version: next, state: .staging, path: path, created: Int64(Date().timeIntervalSince1970),
                                 dataFingerprint: dataFingerprint, metrics: metrics)
            m.models[name, default: []].append(v)
            return v
        }
    }

    /// Makes `version` production (the old production is archived) or a canary for
    /// `canaryFraction` of users (a previous canary goes back to staging).
    public func promote(_ name: String, version: Int, canaryFraction: Double? = nil) throws {
        if let f = canaryFraction, !(f > 0 && f < 1) {
            throw RegistryError.invalidTransition("a canary fraction must be in (0, 1), got \(f)")
        }
        try update { m in
            guard var all = m.models[name] else { throw RegistryError.unknownModel(name) }
            guard let i = all.firstIndex(where: { $0.version == version }) else { throw RegistryError.unknownVersion(name, version) }
            let now = Int64(Date().timeIntervalSince1970)
            if let f = canaryFraction {
                guard all[i].state != .production else {
                    throw RegistryError.invalidTransition("\(name) v\(version) is production; a canary must be another version")
                }
                for j in all.indices where all[j].state == .canary { all[j].state = .staging; all[j].canaryFraction = nil }
                all[i].state = .canary
                all[i].canaryFraction = f
            } else {
                for j in all.indices where all[j].state == .production { all[j].state = .archived }
                all[i].state = .production
                all[i].canaryFraction = nil
                all[i].promoted = now
                all[i].promotionOrder = (all.compactMap(\.promotionOrder).max() ?? 0) + 1
            }
            m.models[name] = all
        }
    }

    /// Makes `version` the shadow of `name`: it answers a copy of the requests, its answers
    /// are only compared with the served ones. A previous shadow goes back to staging.
    /// - Throws: `RegistryError.invalidTransition` for the production or canary version.
    public func shadow(_ name: String, version: Int) throws {
        try update { m in
            guard var all = m.models[name] else { throw RegistryError.unknownModel(name) }
            guard let i = all.firstIndex(where: { $0.version == version }) else { throw RegistryError.unknownVersion(name, version) }
            guard all[i].state != .production, all[i].state != .canary else {
                throw RegistryError.invalidTransition("\(name) v\(version) is \(all[i].state.rawValue); a shadow must be another version")
            }
            for j in all.indices where all[j].state == .shadow { all[j].state = .staging }
            all[i].state = .shadow
            m.models[name] = all
        }
    }

    /// The shadow version of `name`, if there is one.
    public func shadowVersion(_ name: String) throws -> ModelVersion? {
        try versions(of: name).first { $0.state == .shadow }
    }

    /// Production goes back to the version promoted before the current one; the current
    /// one is archived. - Returns: the version now in production.
    @discardableResult
    public func rollback(_ name: String) throws -> ModelVersion {
        try update { m in
            guard var all = m.models[name] else { throw RegistryError.unknownModel(name) }
            guard let current = all.firstIndex(where: { $0.state == .production }) else {
                throw RegistryError.invalidTransition("\(name) has no production version to roll back")
            }
            let previous = all.indices.filter { $0 != current && all[$0].promoted != nil && all[$0].state == .archived }
                .max { (all[$0].promotionOrder ?? -1, all[$0].promoted!) < (all[$1].promotionOrder ?? -1, all[$1].promoted!) }
            guard let previous else {
                throw RegistryError.invalidTransition("\(name) v\(all[current].version) is the first production version: nothing to roll back to")
            }
            all[current].state = .archived
            all[current].promoted = nil  // not a rollback target again
            all[current].promotionOrder = nil
            all[previous].state = .production
            m.models[name] = all
            return all[previous]
        }
    }

    /// Archives `versions` for good: they stop serving (canary, shadow, staging) and are no
    /// longer rollback targets. Production cannot be retired.
    /// - Returns: the versions changed.
    @discardableResult
    public func retire(_ name: String, versions: [Int]) throws -> [ModelVersion] {
        try update { m in
            guard var all = m.models[name] else { throw RegistryError.unknownModel(name) }
            var changed = [ModelVersion]()
            for v in versions {
                guard let i = all.firstIndex(where: { $0.version == v }) else { throw RegistryError.unknownVersion(name, v) }
                guard all[i].state != .production else {
                    throw RegistryError.invalidTransition("\(name) v\(v) is production: promote another version before retiring it")
                }
                all[i].state = .archived
                all[i].promoted = nil
                all[i].promotionOrder = nil
                all[i].canaryFraction = nil
                changed.append(all[i])
            }
            m.models[name] = all
            return changed
        }
    }

    /// Read-modify-write of the manifest under the registry's lock.
    /// Removes what killed writers left in the registry: temporaries whose owner process is
    /// gone (see `Leftovers`) in the root and in each model's folder, and version folders
    /// the manifest does not list (moved in by a `register` killed before its manifest
    /// write). Runs under the registry's lock, as every change does.
    /// - Returns: the paths removed.
    @discardableResult
    public func sweepLeftovers() throws -> [String] {
        guard FileManager.default.fileExists(atPath: manifestPath) else { return Leftovers.sweep(root) }
        return try locked { try sweepLocked(try manifest()) }
    }

    private func sweepLocked(_ m: Manifest) throws -> [String] {
        var removed = Leftovers.sweep(root)
        for (name, versions) in m.models {
            let folder = "\(root)/\(name)"
            removed += Leftovers.sweep(folder)
            let listed = Set(versions.map { URL(fileURLWithPath: $0.path).lastPathComponent })
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
            where entry.hasPrefix("v") && Int(entry.dropFirst()) != nil && !listed.contains(entry) {
                if (try? FileManager.default.removeItem(atPath: "\(folder)/\(entry)")) != nil { removed.append("\(folder)/\(entry)") }
            }
        }
        return removed
    }

    private func locked<T>(_ body: () throws -> T) throws -> T {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let fd = open("\(root)/.registry.lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw RegistryError.corrupt("cannot open \(root)/.registry.lock: errno \(errno)") }
        defer { close(fd) }
        guard flock(fd, LOCK_EX) == 0 else { throw RegistryError.corrupt("cannot lock \(root)/.registry.lock: errno \(errno)") }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }

    func update<T>(_ change: (inout Manifest) throws -> T) throws -> T {
        try locked { try updateLocked(change) }
    }

    private func updateLocked<T>(_ change: (inout Manifest) throws -> T) throws -> T {
        var m = try manifest()
        _ = try? sweepLocked(m)
        let result = try change(&m)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let json = Array(try encoder.encode(m))
        try FunnelFile.write(to: manifestPath, magic: Self.magic, version: 1) { w in
            w.write(array: json)  // length-prefixed
        }
        return result
    }
}
