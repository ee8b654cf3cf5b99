import Datasets
import Engine
import Foundation
import LinearAlgebra
import Persistence

/// Valid inputs for every target, written by this build's own writers (the committed
/// corpora start from these; `FuzzRegressionTests` checks each is still accepted).
public enum FuzzSeeds {
    /// Writes `DIR/<target>/seed-N` for every target; returns how many.
    public static func write(to dir: String) throws -> Int {
        var count = 0
        for (target, seeds) in try all() {
            let folder = "\(dir)/\(target)"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for (i, seed) in seeds.enumerated() {
                try AtomicFile.write(seed, to: "\(folder)/seed-\(i + 1)")
                count += 1
            }
        }
        return count
    }

    public static func all() throws -> [(String, [[UInt8]])] {
        let t = Templates.shared
        let cat = t.catalogFolder
        func file(_ path: String, lines: Int? = nil) throws -> [UInt8] {
            let bytes = try FileBytes.read(path)
            guard let lines else { return bytes }
            var seen = 0
            for (i, b) in bytes.enumerated() where b == 10 {
                seen += 1
                if seen == lines { return Array(bytes[...i]) }
            }
            return bytes
        }
        let schema = Array(t.schemaJSON.utf8)
        let items = try file("\(cat)/items.csv", lines: 30), users = try file("\(cat)/users.csv", lines: 30)
        let interactions = try file("\(cat)/interactions.csv", lines: 120)
        let sep = Array("\n====\n".utf8)
        let scratch = Scratch.shared.folder("seeds")
        let m = try Matrix(rows: 3, columns: 4, storage: (0..<12).map { Float($0) / 4 })
        func written(_ name: String, _ write: (String) throws -> Void) throws -> [UInt8] {
            let path = "\(scratch)/\(name)"
            try write(path)
            return try FileBytes.read(path)
        }
        let set = try VectorFile.decode(try written("m.fvecs") { try VectorFile.writeFvecs(m, to: $0) }, format: .fvecs, path: "m.fvecs")
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../GBDTTests/Fixtures").path
        let walPath = "\(scratch)/live.wal"
        try? FileManager.default.removeItem(atPath: walPath)
        let changes: [LiveChange] = [
            .upsert(item: "new-1", attributes: ["title": .string("a new item"), "tags": .string("t1|t2")]),
            .interactions([LiveInteraction(user: t.knownUser, item: "new-1", timestamp: 1_700_000_000)]),
            .delete(item: "new-1"),
        ]
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let encoded = try changes.map { Array(try encoder.encode($0)) }
        do {
            let wal = try WriteAheadLog(path: walPath)
            for e in encoded { _ = try wal.append(e) }
        }
        return [
            ("csv", [items, Array("a,\"b \"\"quoted\"\"\",c\r\n1,2,3\n".utf8)]),
            ("catalog", [schema + sep + items + sep + users + sep + interactions]),
            ("schema", [schema]),
            ("fvecs", [try written("s.fvecs") { try VectorFile.writeFvecs(m, to: $0) }]),
            ("ivecs", [try written("s.ivecs") { try VectorFile.writeIvecs([1, 2, 3, 4, 5, 6], columns: 3, to: $0) }]),
            ("bvecs", [try written("s.bvecs") { try VectorFile.writeBvecs([1, 2, 3, 4, 5, 6], columns: 2, to: $0) }]),
            ("idx", [try written("s.idx") { try VectorFile.writeIDX(set, to: $0) }]),
            ("npy", [try written("s.npy") { try VectorFile.writeNpy(set, to: $0) }]),
            ("svmlight", [Array("1 qid:1 1:0.5 3:2\n0 qid:1 2:1.5\n2 qid:2 1:-1 4:1e-3\n".utf8)]),
            ("query", [Array("2\n1\n".utf8)]),
            ("weight", [Array("1\n0.5\n2\n".utf8)]),
            ("delimited", [Array("1\t0.5\t2\n0\t1.5\t-1\n".utf8)]),
            ("lightgbm", [try file("\(fixtures)/lgb_nan.model.txt")]),
            ("container", [try file(t.towers)]),
            ("towers", [try FuzzTargets.sealedSeed(of: t.towers)]),
            ("hnsw", [try FuzzTargets.sealedSeed(of: t.hnsw), try FuzzTargets.sealedSeed(of: t.hnsw, flag: 0x80)]),
            ("gbdt", [try FuzzTargets.sealedSeed(of: t.gbdt)]),
            ("item-catalog", [try FuzzTargets.sealedSeed(of: t.catalog)]),
            ("history", [try FuzzTargets.sealedSeed(of: t.history)]),
            ("registry", [try FuzzTargets.sealedSeed(of: t.registryManifest)]),
            ("wal", [try FileBytes.read(walPath)]),
            ("live-change", encoded),
            ("server-config", [Array(#"{"port": 9090, "max_k": 50, "idle_timeout": 20, "read_timeout": 5, "serving": {"deadline_ms": 80}}"#.utf8)]),
            ("filter", [Array("category=c1|c2\nprice>=1\ncreated>=2024-01-01".utf8)]),
            ("http", [Array("GET /v1/models/shop/recommend?user=\(t.knownUser)&k=5&explain=true".utf8),
                      Array("POST /v1/models/shop/recommend\n{\"user\": \"\(t.knownUser)\", \"k\": 3}".utf8),
                      Array("GET /v1/models/shop/items/\(t.firstItem)/similar?k=4".utf8),
                      Array("GET /v1/models/shop/search?q=item&k=3".utf8)]),
            ("bundle-manifest", [try file("\(t.bundle)/manifest.json")]),
            ("bundle-towers", [try FuzzTargets.sealedSeed(of: t.towers)]),
            ("bundle-items", [try FuzzTargets.sealedSeed(of: t.hnsw)]),
            ("bundle-ranker", [try FuzzTargets.sealedSeed(of: t.gbdt)]),
            ("bundle-catalog", [try FuzzTargets.sealedSeed(of: t.catalog)]),
        ]
    }
}
