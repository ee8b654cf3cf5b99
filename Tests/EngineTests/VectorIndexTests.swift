import Datasets
import Engine
import Foundation
import HNSW
import LinearAlgebra
import Persistence
import Testing

@Suite("Index bundles") struct VectorIndexTests {
    /// Clustered unit vectors, ids "v0"..., an attribute table with a title, categories, a
    /// price and a creation time.
    static func world(n: Int = 2_000, d: Int = 16, seed: UInt64 = 3) throws -> (Matrix, [String], AttributeTable) {
        var g = SeededGenerator(seed: seed)
        var m = Matrix(rows: n, columns: d)
        for r in 0..<n {
            let c = r % 10
            for j in 0..<d { m[r, j] = (j % 10 == c ? 2 : 0) + Float.random(in: -1..<1, using: &g) }
        }
        let ids = (0..<n).map { "v\($0)" }
        var b = AttributeTable.Builder(specs: [ColumnSpec("name", .text), ColumnSpec("kind", .multiCategorical(separator: "|")),
                                               ColumnSpec("price", .numeric), ColumnSpec("born", .timestamp)])
        for r in 0..<n {
            try b.append(fields: ["thing \(r)", r % 3 == 0 ? "a" : "b|c", "\(r % 100)", "\(1_700_000_000 + r)"]) { EngineError.invalidData($0) }
        }
        return (m, ids, b.table(keys: Vocabulary(ids)))
    }

    @Test("filtered search equals a brute-force scan of the items that pass", arguments: [HNSWIndex.Quantization.none, .fp16])
    func filteredSearch(quantization: HNSWIndex.Quantization) throws {
        let (vectors, ids, table) = try Self.world()
        let folder = NSTemporaryDirectory() + "funnel-vi-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var options = VectorIndex.BuildOptions()
        options.parameters = .init(metric: .cosine, M: 16, efConstruction: 200, quantization: quantization)
        options.threads = 1
        try VectorIndex.build(vectors: vectors, ids: ids, attributes: table, title: "name", category: "kind", createdAt: "born",
                              options: options, to: folder)
        let index = try VectorIndex(folder: folder)
        #expect(index.count == 2_000 && index.catalog.titles?[5] == "thing 5")
        let filters: [[String]] = [[], ["category=a"], ["category!=a", "price<=20"], ["price>=50", "created>=\(1_700_001_000)"], ["price<=0"]]
        var hits = 0, total = 0
        for clauses in filters {
            let filter = try ItemFilter.parse(clauses)
            for q in stride(from: 0, to: 2_000, by: 97) {
                let query = Array(vectors.row(q))
                let answer = try index.search(vector: query, k: 10, ef: 200, filter: filter)
                // The oracle: every item that passes, by exact cosine.
                let passing = (0..<2_000).filter { r in
                    (clauses.contains("category=a") ? r % 3 == 0 : true) && (clauses.contains("category!=a") ? r % 3 != 0 : true)
                        && (clauses.contains("price<=20") ? r % 100 <= 20 : true) && (clauses.contains("price>=50") ? r % 100 >= 50 : true)
                        && (clauses.contains("price<=0") ? r % 100 == 0 : true) && (clauses.contains { $0.hasPrefix("created") } ? r >= 1_000 : true)
                }
                let truth = passing.sorted { Distance.cosineSimilarity(query, Array(vectors.row($0))) > Distance.cosineSimilarity(query, Array(vectors.row($1))) }
                    .prefix(10).map { "v\($0)" }
                #expect(answer.items.allSatisfy { passing.contains(Int($0.item.dropFirst())!) }, "\(clauses): an item that fails the filter")
                hits += Set(answer.items.map(\.item)).intersection(truth).count
                total += truth.count
            }
        }
        #expect(Double(hits) / Double(total) >= 0.97, "recall \(Double(hits) / Double(total))")
        #expect(throws: EngineError.self) { try index.search(vector: [1, 2], k: 3) }
        #expect(throws: EngineError.self) { try ItemFilter.parse(["price~3"]) }
        #expect(throws: EngineError.self) { try index.search(vector: Array(vectors.row(0)), k: 3, filter: try ItemFilter.parse(["weight<=3"])) }
        let similar = try index.similar(item: "v42", k: 5)
        #expect(similar.items.count == 5 && !similar.items.contains { $0.item == "v42" })
    }

    @Test("CSV vectors: a header with an id column, bad numbers named by line; the vectors file is checked")
    func csvVectorsAndDamage() throws {
        let folder = NSTemporaryDirectory() + "funnel-vi-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try "id,x,y,z\na,1,0,0\nb,0,1,0\nc,0,0,1\nd,1,1,0\n".write(toFile: "\(folder)/v.csv", atomically: true, encoding: .utf8)
        let (m, ids) = try VectorIndex.readVectors("\(folder)/v.csv")
        #expect(ids == ["a", "b", "c", "d"] && m.rows == 4 && m.columns == 3 && m[3, 1] == 1)
        try "1,2\n3,x\n".write(toFile: "\(folder)/bad.csv", atomically: true, encoding: .utf8)
        #expect(throws: EngineError.invalidData("\(folder)/bad.csv:2: field 2 'x' is not a finite number")) { try VectorIndex.readVectors("\(folder)/bad.csv") }
        #expect(throws: EngineError.self) { try VectorIndex.build(vectors: m, ids: ["a", "a", "b", "c"], to: "\(folder)/dup") }
        var options = VectorIndex.BuildOptions()
        options.threads = 1
        try VectorIndex.build(vectors: m, ids: ids, options: options, to: "\(folder)/b")
        #expect(try VectorIndex(folder: "\(folder)/b").similar(item: "a", k: 1).items.first?.item == "d")
        var bytes = try FileBytes.read("\(folder)/b/\(VectorIndex.vectorsFile)")
        bytes[30] ^= 8
        try Data(bytes).write(to: URL(fileURLWithPath: "\(folder)/b/\(VectorIndex.vectorsFile)"))
        do {
            _ = try VectorIndex(folder: "\(folder)/b")
            Issue.record("a corrupt vectors file loaded")
        } catch let EngineError.corruptBundle(_, file, _) {
            #expect(file == VectorIndex.vectorsFile)
        }
    }

    @Test("an index built from a file a slice at a time is the index built from the vectors in memory, byte for byte",
          arguments: HNSWIndex.Quantization.allCases)
    func streamedBuild(quantization: HNSWIndex.Quantization) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("funnel-stream-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (m, _, _) = try Self.world(n: 1_500, d: 16)
        try VectorFile.writeFvecs(m, to: dir + "/base.fvecs")
        let p = HNSWIndex.Parameters(metric: .cosine, M: 8, efConstruction: 40, quantization: quantization)
        // One thread: the graph is then a function of the seed and the insertion order only.
        try IndexBuilding.build(m, parameters: p, threads: 1).save(to: dir + "/memory.hnsw")
        try IndexBuilding.build(streaming: dir + "/base.fvecs", parameters: p, threads: 1, slice: 97).save(to: dir + "/stream.hnsw")
        #expect(FileManager.default.contents(atPath: dir + "/memory.hnsw") == FileManager.default.contents(atPath: dir + "/stream.hnsw"))
    }

    @Test("an index bundle built from a vector file a slice at a time has the files of one built in memory, and serves the same")
    func streamedBundle() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("funnel-vb-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (m, ids, table) = try Self.world(n: 1_200, d: 16)
        try VectorFile.writeFvecs(m, to: dir + "/v.fvecs")
        var options = VectorIndex.BuildOptions()
        options.parameters = .init(metric: .cosine, M: 8, efConstruction: 40, quantization: .fp16)
        options.threads = 1
        let a = try VectorIndex.build(vectors: m, ids: ids, attributes: table, title: "name", category: "kind", options: options, to: dir + "/a")
        let b = try VectorIndex.build(vectorFile: dir + "/v.fvecs", ids: ids, attributes: table, title: "name", category: "kind", options: options, to: dir + "/b")
        #expect(a.manifest.dataFingerprint == b.manifest.dataFingerprint)
        for file in [ModelBundle.File.index, VectorIndex.vectorsFile, ModelBundle.File.catalog] {
            #expect(FileManager.default.contents(atPath: a.path(file)) == FileManager.default.contents(atPath: b.path(file)), "\(file)")
        }
        let served = try VectorIndex(folder: dir + "/b")
        #expect(served.vectors == m)
        #expect(served.vector(17) == Array(m.row(17)))
        let s = try served.similar(item: ids[17], k: 5)
        #expect(s.items.count == 5 && !s.items.contains { $0.item == ids[17] })
    }
}

