import Collectives
import Datasets
import Foundation
import LinearAlgebra
import Testing
@testable import TwoTower

/// Data-parallel two-tower training (ranks as threads) against one process.
@Suite("Two-tower data-parallel training")
struct TwoTowerDataParallelTests {
    static func parameters(_ optimizer: EmbeddingOptimizer) -> TwoTowerParameters {
        var p = TwoTowerParameters()
        p.dimension = 8
        p.hidden = [12]
        p.temperature = 0.3
        p.idDropout = 0
        p.logQCorrection = true
        p.logQEstimate = .streaming
        p.embeddingOptimizer = optimizer
        return p
    }

    static func largestDifference(_ a: Matrix, _ b: Matrix) -> Float {
        zip(a.storage, b.storage).map { abs($0 - $1) }.max() ?? .infinity
    }

    @Test("a step on P ranks is the single-process step on the concatenated batch (dense, sharded rows, logQ, both optimizers)",
          arguments: [2, 4], [EmbeddingOptimizer.adagrad, .lazyAdam])
    func stepsMatchOneProcess(ranks: Int, optimizer: EmbeddingOptimizer) throws {
        let userFeatures = try tinyFeatures(40, seed: 1), itemFeatures = try tinyFeatures(50, seed: 2)
        let p = Self.parameters(optimizer)
        var rng = SeededGenerator(seed: 9)
        let batches = (0..<12).map { _ -> ([Int32], [Int32]) in
            let u = (0..<32).map { _ in Int32(rng.nextInt(below: 40)) }
            return (u, u.map { _ in Int32(rng.nextInt(below: 50)) })
        }
        let single = TwoTowerModel(userFeatures: userFeatures, itemFeatures: itemFeatures, parameters: p)
        var srng = SeededGenerator(seed: 1)
        let singleLosses = batches.map { single.trainStep(users: $0.0, items: $0.1, rng: &srng) }
        let results = try LocalGroup.run(ranks: ranks) { comm -> ([Float], Matrix, Matrix) in
            let model = TwoTowerModel(userFeatures: userFeatures, itemFeatures: itemFeatures, parameters: p)
            model.communicator = comm
            var r = SeededGenerator(seed: 1)
            var losses = [Float]()
            for (u, i) in batches {
                let mine = comm.share(of: u.count)
                losses.append(model.trainStep(users: Array(u[mine]), items: Array(i[mine]), rng: &r))
            }
            model.users.synchronizeTables()
            model.items.synchronizeTables()
            return (losses, model.embedAll(model.users), model.embedAll(model.items))
        }
        let u0 = single.embedAll(single.users), v0 = single.embedAll(single.items)
        for (rank, (losses, u, v)) in results.enumerated() {
            for (a, b) in zip(losses, singleLosses) { #expect(abs(a - b) < 1e-4 * max(1, abs(b)), "rank \(rank): loss \(a) against \(b)") }
            #expect(Self.largestDifference(u, u0) < 1e-4, "rank \(rank): user embeddings differ by \(Self.largestDifference(u, u0))")
            #expect(Self.largestDifference(v, v0) < 1e-4, "rank \(rank): item embeddings differ by \(Self.largestDifference(v, v0))")
        }
        // The steps changed the model: a rank that trained on its share alone would differ.
        let untouched = TwoTowerModel(userFeatures: userFeatures, itemFeatures: itemFeatures, parameters: p)
        #expect(Self.largestDifference(untouched.embedAll(untouched.items), v0) > 1e-2)
    }

    /// Users in group g (u % 3) interact only with items of category g; the metric is how
    /// many users' best item is in their group.
    static func plantedGroups(_ model: TwoTowerModel) -> Int {
        let u = model.embedAll(model.users), v = model.embedAll(model.items)
        var correct = 0
        for user in 0..<u.rows {
            let scores = (0..<v.rows).map { Distance.dot(u.row(user), v.row($0)) }
            if (scores.indices.max { scores[$0] < scores[$1] }!) % 3 == user % 3 { correct += 1 }
        }
        return correct
    }

    @Test("fit on 1 and 4 ranks (id dropout, random negatives, counted logQ) learns the planted tastes equally well")
    func fitMatchesOneProcessQuality() throws {
        let uf = try EntityFeatures.build(count: 60, table: nil, kinds: [("id", .id)])
        var b = AttributeTable.Builder(specs: [ColumnSpec("cat", .categorical)])
        for i in 0..<90 { try b.append(fields: ["c\(i % 3)"]) { _ in TwoTowerError.invalidData("") } }
        let itf = try EntityFeatures.build(count: 90, table: b.table(keys: Vocabulary((0..<90).map { "i\($0)" })),
                                           kinds: [("id", .id), ("cat", .categorical(column: "cat"))])
        var p = TwoTowerParameters()
        p.dimension = 8
        p.hidden = [16]
        p.temperature = 0.2
        p.batchSize = 64
        p.epochs = 6
        p.randomNegatives = 8
        p.patience = 0
        var rng = SeededGenerator(seed: 3)
        let pairs = (0..<4000).map { _ -> (user: Int32, item: Int32) in
            let u = Int32(rng.nextInt(below: 60))
            return (u, Int32((Int(u) % 3) + 3 * rng.nextInt(below: 30)))
        }
        let single = TwoTowerModel(userFeatures: uf, itemFeatures: itf, parameters: p)
        var srng = SeededGenerator(seed: 5)
        let singleReports = single.fit(pairs, rng: &srng)
        let params = p
        let results = try LocalGroup.run(ranks: 4) { comm -> (Int, [EpochReport]) in
            let model = TwoTowerModel(userFeatures: uf, itemFeatures: itf, parameters: params)
            model.communicator = comm
            var r = SeededGenerator(seed: 5 &+ UInt64(comm.rank))
            let reports = model.fit(Array(pairs[comm.share(of: pairs.count)]), rng: &r)
            return (Self.plantedGroups(model), reports)
        }
        let reference = Self.plantedGroups(single)
        #expect(reference >= 50, "one process: \(reference)/60")
        for (rank, (correct, reports)) in results.enumerated() {
            // Stated tolerance: within 5 of 60 users of one process, final loss within 10%.
            #expect(abs(correct - reference) <= 5, "rank \(rank): \(correct)/60 against \(reference)/60")
            #expect(reports.count == singleReports.count)
            let (a, s) = (reports.last!.loss, singleReports.last!.loss)
            #expect(abs(a - s) <= 0.1 * s, "rank \(rank): final loss \(a) against \(s)")
        }
        // Every rank ends with the same model.
        #expect(Set(results.map(\.0)).count == 1)
    }
}
