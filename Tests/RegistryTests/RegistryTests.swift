import Foundation
import Persistence
import Registry
import Testing

@Suite("Model registry: versions, promote, canary routing, rollback, integrity")
struct RegistryTests {
    func makeRoot() -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("funnel-registry-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A model folder with one file, to register.
    func folder(_ root: String, _ tag: String) throws -> String {
        let dir = "\(root)/incoming-\(tag)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data(tag.utf8).write(to: URL(fileURLWithPath: "\(dir)/model.txt"))
        return dir
    }

    @Test("versions are numbered, moved under the root, and promotion keeps one production version")
    func lifecycle() throws {
        let root = makeRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = ModelRegistry(root: root)
        let v1 = try r.register("recs", from: try folder(root, "a"), dataFingerprint: "f1", metrics: ["HR@10": 0.08])
        let v2 = try r.register("recs", from: try folder(root, "b"), dataFingerprint: "f2")
        #expect(v1.version == 1 && v2.version == 2 && v1.state == .staging)
        #expect(try String(contentsOfFile: "\(r.folder("recs", v2))/model.txt", encoding: .utf8) == "b")
        #expect(!FileManager.default.fileExists(atPath: "\(root)/incoming-a"))
        try r.promote("recs", version: 1)
        #expect(try r.current("recs").version == 1)
        try r.promote("recs", version: 2)
        let states = try r.versions(of: "recs").map(\.state)
        #expect(states == [.archived, .production])
        #expect(try r.versions(of: "recs")[0].metrics == ["HR@10": 0.08])
        // Rollback returns to v1; there is nothing before v1.
        #expect(try r.rollback("recs").version == 1)
        #expect(try r.versions(of: "recs").map(\.state) == [.production, .archived])
        #expect(throws: RegistryError.self) { try r.rollback("recs") }
        #expect(throws: RegistryError.unknownVersion("recs", 9)) { try r.promote("recs", version: 9) }
        #expect(throws: RegistryError.unknownModel("nope")) { try r.current("nope") }
    }

    @Test("a shadow version is never routed to; one shadow at a time; production and canary cannot be shadows")
    func shadow() throws {
        let root = makeRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = ModelRegistry(root: root)
        for tag in ["a", "b", "c", "d"] { try r.register("recs", from: try folder(root, tag), dataFingerprint: tag) }
        try r.promote("recs", version: 1)
        try r.promote("recs", version: 2, canaryFraction: 0.5)
        #expect(throws: RegistryError.self) { try r.shadow("recs", version: 1) }  // production
        #expect(throws: RegistryError.self) { try r.shadow("recs", version: 2) }  // canary
        try r.shadow("recs", version: 3)
        #expect(try r.shadowVersion("recs")?.version == 3)
        let routed = Set(try (0..<2000).map { try r.route("recs", userID: "u\($0)").version.version })
        #expect(routed == [1, 2], "users go to production or the canary, never the shadow")
        try r.shadow("recs", version: 4)
        #expect(try r.versions(of: "recs").map(\.state) == [.production, .canary, .staging, .shadow])
        // A shadow that did well can be promoted.
        try r.promote("recs", version: 4)
        #expect(try r.shadowVersion("recs") == nil && r.current("recs").version == 4)
    }

    @Test("canary routing is deterministic and sends the configured fraction of users")
    func canary() throws {
        let root = makeRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = ModelRegistry(root: root)
        try r.register("recs", from: try folder(root, "a"), dataFingerprint: "f1")
        try r.register("recs", from: try folder(root, "b"), dataFingerprint: "f2")
        try r.promote("recs", version: 1)
        try r.promote("recs", version: 2, canaryFraction: 0.2)
        #expect(throws: RegistryError.self) { try r.promote("recs", version: 1, canaryFraction: 0.2) }  // production
        #expect(throws: RegistryError.self) { try r.promote("recs", version: 2, canaryFraction: 1.5) }
        let users = (0..<10_000).map { "user-\($0)" }
        let first = try users.map { try r.route("recs", userID: $0) }
        let second = try users.map { try ModelRegistry(root: root).route("recs", userID: $0) }
        #expect(first.map(\.version.version) == second.map(\.version.version))
        let share = Double(first.filter(\.canary).count) / Double(users.count)
        #expect(abs(share - 0.2) < 0.02, "canary share \(share)")
        for (u, route) in zip(users, first) {
            #expect(route.canary == (ModelRegistry.bucket(u) < 0.2))
            #expect(route.version.version == (route.canary ? 2 : 1))
        }
    }

    @Test("a corrupted manifest is refused by name, and concurrent writers lose no version")
    func integrity() throws {
        let root = makeRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = ModelRegistry(root: root)
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            _ = try! r.register("recs", from: try! folder(root, "t\(i)"), dataFingerprint: "f\(i)")
        }
        #expect(try r.versions(of: "recs").map(\.version).sorted() == Array(1...8))
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: "\(root)/registry.fnl")))
        bytes[bytes.count / 2] ^= 0x20
        try Data(bytes).write(to: URL(fileURLWithPath: "\(root)/registry.fnl"))
        #expect(throws: RegistryError.self) { try r.manifest() }
        #expect(FileManager.default.fileExists(atPath: "\(root)/recs/v8/model.txt"))
    }

    @Test("rollback follows the order of promotion, even within one second")
    func rollbackOrderWithinASecond() throws {
        let root = makeRoot()
        let r = ModelRegistry(root: root)
        for tag in ["a", "b", "c"] { try r.register("recs", from: try folder(root, tag), dataFingerprint: tag) }
        try r.promote("recs", version: 1)
        try r.promote("recs", version: 3)
        try r.promote("recs", version: 2)
        #expect(try r.rollback("recs").version == 3)
        #expect(try r.rollback("recs").version == 1)
        #expect(throws: RegistryError.self) { try r.rollback("recs") }
    }

    /// A pid that is not running: a child that has exited and been reaped.
    static func deadPID() throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        return p.processIdentifier
    }

    @Test("what a killed writer left is swept by the next change: temporaries of dead owners, unlisted version folders; live owners' are kept")
    func leftovers() throws {
        let root = makeRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = ModelRegistry(root: root)
        try r.register("recs", from: try folder(root, "a"), dataFingerprint: "f1")
        let dead = try Self.deadPID(), alive = getpid()
        #expect(Leftovers.owner(of: "registry.fnl.tmp-\(dead)-123") == dead)
        #expect(Leftovers.owner(of: ".v2.partial-\(dead)-ABC") == dead && Leftovers.owner(of: "v2") == nil && Leftovers.owner(of: "x.tmp-12") == nil)
        let fm = FileManager.default
        let deadFiles = ["\(root)/registry.fnl.tmp-\(dead)-77", "\(root)/.incoming-\(dead)-X", "\(root)/recs/.v9.partial-\(dead)-Y"]
        let liveFile = "\(root)/.incoming-\(alive)-Z"
        for f in deadFiles + [liveFile] { try fm.createDirectory(atPath: f, withIntermediateDirectories: true) }
        try fm.createDirectory(atPath: "\(root)/recs/v7", withIntermediateDirectories: true)  // moved in, never listed
        let removed = Set(try r.sweepLeftovers())
        #expect(removed == Set(deadFiles + ["\(root)/recs/v7"]))
        #expect(fm.fileExists(atPath: liveFile) && fm.fileExists(atPath: "\(root)/recs/v1/model.txt"))
        // A change sweeps too.
        try fm.createDirectory(atPath: "\(root)/.incoming-\(dead)-W", withIntermediateDirectories: true)
        try r.promote("recs", version: 1)
        #expect(!fm.fileExists(atPath: "\(root)/.incoming-\(dead)-W"))
    }

    @Test("a manifest whose paths leave the root is refused; a symlinked version folder is refused")
    func confinedPaths() throws {
        let root = makeRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = ModelRegistry(root: root)
        try r.register("recs", from: try folder(root, "a"), dataFingerprint: "f1")
        let good = try r.manifest()
        for path in ["../../etc", "recs/v2", "/tmp/recs/v1", "other/v1"] {
            var m = good
            m.models["recs"]![0].path = path
            let json = Array(try JSONEncoder().encode(m))
            try FunnelFile.write(to: "\(root)/registry.fnl", magic: "FNLREGST", version: 1) { $0.write(array: json) }
            do {
                _ = try r.manifest()
                Issue.record("path '\(path)' was accepted")
            } catch let RegistryError.corrupt(message) {
                #expect(message.contains("inside the registry root"), "\(message)")
            }
        }
        let json = Array(try JSONEncoder().encode(good))
        try FunnelFile.write(to: "\(root)/registry.fnl", magic: "FNLREGST", version: 1) { $0.write(array: json) }
        let v = try r.versions(of: "recs")[0]
        #expect(try r.checkedFolder("recs", v) == "\(root)/recs/v1")
        let elsewhere = makeRoot()
        defer { try? FileManager.default.removeItem(atPath: elsewhere) }
        try FileManager.default.moveItem(atPath: "\(root)/recs/v1", toPath: "\(elsewhere)/v1")
        try FileManager.default.createSymbolicLink(atPath: "\(root)/recs/v1", withDestinationPath: "\(elsewhere)/v1")
        do {
            _ = try r.checkedFolder("recs", v)
            Issue.record("a symlinked version folder was accepted")
        } catch let RegistryError.corrupt(message) {
            #expect(message.contains("a symlink"), "\(message)")
        }
    }
}
