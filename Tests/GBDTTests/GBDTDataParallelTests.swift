import Collectives
import Datasets
import Foundation
import LinearAlgebra
import Testing
@testable import GBDT

/// Data-parallel training (ranks as threads) against one process on all the rows: the
/// same trees, split for split.
@Suite("GBDT data-parallel training grows the single-process trees")
struct GBDTDataParallelTests {
    /// Queries of 5 to 34 documents; a missing-value feature, a discrete one, noise.
    static func rankingData(queries: Int, seed: UInt64) -> LabeledData {
        var rng = SeededGenerator(seed: seed)
        var rows = [[Float]](), labels = [Float](), groups = [0]
        for _ in 0..<queries {
            for _ in 0..<(5 + rng.nextInt(below: 30)) {
                var x = (0..<7).map { _ in rng.nextGaussian() }
                x[5] = Float(rng.nextInt(below: 4))
                if rng.nextInt(below: 7) == 0 { x[2] = .nan }
                let relevance = x[0] * 1.2 + (x[2].isNaN ? 0.5 : x[2]) - 0.4 * x[5] + 0.3 * rng.nextGaussian()
                labels.append(Float(max(0, min(4, Int(relevance + 1.5)))))
                rows.append(x)
            }
            groups.append(rows.count)
        }
        let m = try! Matrix(rows: rows.count, columns: 7, storage: rows.flatMap { $0 })
        return LabeledData(features: m, labels: labels, groups: groups)
    }

    static func expectSameTrees(_ a: GBDTModel, _ b: GBDTModel, _ what: String) {
        #expect(a.trees.count == b.trees.count, "\(what): \(a.trees.count) trees against \(b.trees.count)")
        #expect(abs(a.initScore - b.initScore) <= 1e-12 * max(1, abs(a.initScore)), "\(what): init score")
        for (i, (s, t)) in zip(a.trees, b.trees).enumerated() {
            #expect(s.feature == t.feature && s.threshold == t.threshold && s.defaultLeft == t.defaultLeft
                    && s.left == t.left && s.right == t.right && s.internalCount == t.internalCount && s.leafCount == t.leafCount,
                    "\(what): tree \(i) splits differently")
            guard s.leafValue.count == t.leafValue.count else { continue }
            for (x, y) in zip(s.leafValue, t.leafValue) {
                #expect(abs(x - y) <= 1e-9 * max(1e-3, abs(x)), "\(what): tree \(i) leaf \(x) against \(y)")
            }
        }
    }

    @Test("lambdarank on 1, 2 and 4 ranks: the trees of one process", arguments: [1, 2, 4])
    func lambdarankMatchesOneProcess(ranks: Int) throws {
        let data = Self.rankingData(queries: 120, seed: 21)
        var p = GBDTParameters()
        p.rounds = 25
        p.numLeaves = 15
        p.minDataInLeaf = 10
        p.featureFraction = 0.8  // the same subsets on every rank
        p.seed = 3
        let single = try GBDTTrainer.train(p, train: data).model
        let params = p
        let models = try LocalGroup.run(ranks: ranks) { comm in
            try GBDTTrainer.train(params, train: data.part(comm.rank, of: comm.size), communicator: comm).model
        }
        for (r, m) in models.enumerated() { Self.expectSameTrees(single, m, "rank \(r) of \(ranks)") }
        let a = try single.predict(data.features), b = try models[0].predict(data.features)
        let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        #expect(worst < 1e-8, "largest score difference \(worst)")
    }

    @Test("binary logloss on 3 uneven ranks with validation: same trees, same history, same early stop")
    func binaryWithValidationAndEarlyStopping() throws {
        let train = synthetic(2500, 6, seed: 8) { x in x[0] + 0.5 * x[1] * x[2] > 0.3 ? 1 : 0 }
        let valid = synthetic(600, 6, seed: 9) { x in x[0] + 0.5 * x[1] * x[2] > 0.3 ? 1 : 0 }
        var p = GBDTParameters()
        p.objective = .binary
        p.rounds = 200
        p.learningRate = 0.3
        p.earlyStoppingRounds = 5
        let (single, history) = try GBDTTrainer.train(p, train: train, valid: valid)
        #expect(single.trees.count < 200, "early stopping did not happen")
        let params = p
        let results = try LocalGroup.run(ranks: 3) { comm in
            try GBDTTrainer.train(params, train: train.part(comm.rank, of: comm.size), valid: valid, communicator: comm)
        }
        for (r, (m, h)) in results.enumerated() {
            Self.expectSameTrees(single, m, "rank \(r)")
            #expect(h.count == history.count)
            let loss = { (h: [RoundMetrics]) in h.last!.values.first { $0.name == "binary_logloss" }!.value }
            #expect(abs(loss(h) - loss(history)) < 1e-9)
        }
    }

    @Test("a rank whose part is empty still takes part")
    func emptyPart() throws {
        let data = Self.rankingData(queries: 2, seed: 5)
        var p = GBDTParameters()
        p.rounds = 5
        p.minDataInLeaf = 3
        let single = try GBDTTrainer.train(p, train: data).model
        let params = p
        let models = try LocalGroup.run(ranks: 3) { comm in
            try GBDTTrainer.train(params, train: data.part(comm.rank, of: comm.size), communicator: comm).model
        }
        #expect(models.count == 3)
        for m in models { Self.expectSameTrees(single, m, "3 ranks on 2 queries") }
    }

    @Test("ranks whose parts disagree in shape all fail, naming the rank")
    func mismatchedParts() throws {
        let data = synthetic(300, 4, seed: 2) { x in x[0] }
        var p = GBDTParameters()
        p.objective = .regression
        p.rounds = 3
        let q = p
        #expect(throws: GBDTError.self) {
            _ = try LocalGroup.run(ranks: 2) { comm in
                var part = data.part(comm.rank, of: comm.size)
                if comm.rank == 1 { part.features = Matrix(rows: part.rowCount, columns: 5) }
                return try GBDTTrainer.train(q, train: part, communicator: comm).model
            }
        }
    }
}
