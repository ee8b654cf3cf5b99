import Foundation
import Testing
@testable import GBDT
import Datasets
import LinearAlgebra

/// A regression model on generated rows where column 1 is missing in every ninth row and
/// column d - 1 zero in every eleventh (both missing-value rules get exercised).
func regressionWithMissing(_ n: Int, _ d: Int, seed: UInt64, rounds: Int, leaves: Int, minData: Int,
                           _ label: ([Float]) -> Float) throws -> (LabeledData, GBDTModel) {
    var data = synthetic(n, d, seed: seed, label)
    for r in stride(from: 0, to: n, by: 9) { data.features[r, 1] = .nan }
    for r in stride(from: 0, to: n, by: 11) { data.features[r, d - 1] = 0 }
    var p = GBDTParameters()
    p.objective = .regression
    p.rounds = rounds
    p.numLeaves = leaves
    p.minDataInLeaf = minData
    return (data, try GBDTTrainer.train(p, train: data).model)
}

func synthetic(_ n: Int, _ d: Int, seed: UInt64, _ label: ([Float]) -> Float) -> LabeledData {
    var rng = SeededGenerator(seed: seed)
    var m = Matrix(rows: n, columns: d)
    var y = [Float]()
    for r in 0..<n {
        for c in 0..<d { m[r, c] = rng.nextGaussian() }
        y.append(label(m.row(r)))
    }
    return LabeledData(features: m, labels: y)
}

@Suite("GBDT objectives and metrics against hand computation")
struct GBDTObjectiveTests {
    @Test("binary and regression gradients equal finite differences of their losses")
    func finiteDifferences() {
        let scores: [Double] = [-2, -0.3, 0, 0.7, 3]
        let labels: [Float] = [0, 1, 1, 0, 1]
        let weights: [Float] = [1, 2, 0.5, 1, 3]
        var g = [Float](repeating: 0, count: 5), h = [Float](repeating: 0, count: 5)
        func logloss(_ s: Double, _ y: Float, _ w: Float) -> Double {
            let p = 1 / (1 + exp(-s))
            return -Double(w) * (y > 0 ? log(p) : log(1 - p))
        }
        Gradients.compute(.binary, scores: scores, labels: labels, weights: weights, groups: nil, rank: .init(), g: &g, h: &h)
        let e = 1e-4
        for i in 0..<5 {
            let fd = (logloss(scores[i] + e, labels[i], weights[i]) - logloss(scores[i] - e, labels[i], weights[i])) / (2 * e)
            let fd2 = (logloss(scores[i] + e, labels[i], weights[i]) - 2 * logloss(scores[i], labels[i], weights[i]) + logloss(scores[i] - e, labels[i], weights[i])) / (e * e)
            #expect(abs(Double(g[i]) - fd) < 1e-4)
            #expect(abs(Double(h[i]) - fd2) < 1e-3)
        }
        Gradients.compute(.regression, scores: scores, labels: labels, weights: nil, groups: nil, rank: .init(), g: &g, h: &h)
        for i in 0..<5 { #expect(abs(Double(g[i]) - (scores[i] - Double(labels[i]))) < 1e-6 && h[i] == 1) }
    }

    @Test("lambdarank gradients of a two-document query, computed by hand")
    func lambdaRankByHand() {
        var g = [Float](repeating: 0, count: 2), h = [Float](repeating: 0, count: 2)
        Gradients.compute(.lambdarank, scores: [0, 0], labels: [1, 0], weights: nil, groups: [0, 2], rank: .init(), g: &g, h: &h)
        // deltaNDCG = (2^1 - 1) * (1/log2(2) - 1/log2(3)) / 1; p = 0.5; normalized by log2(1 + s) / s.
        let dn = 1 - 1 / log2(3.0)
        let lambda = 0.5 * dn, hess = 0.25 * dn
        let sum = 2 * lambda
        let f = log2(1 + sum) / sum
        #expect(abs(Double(g[0]) + lambda * f) < 1e-6)
        #expect(abs(Double(g[1]) - lambda * f) < 1e-6)
        #expect(abs(Double(h[0]) - hess * f) < 1e-6 && abs(Double(h[1]) - hess * f) < 1e-6)
    }

    @Test("lambdarank gradients of many queries on several threads match the pairwise formula written out")
    func lambdaRankReference() {
        var rng = SeededGenerator(seed: 21)
        var groups = [0], labels = [Float](), scores = [Double]()
        for q in 0..<40 {
            let n = q == 0 ? 1 : 1 + rng.nextInt(below: 60)  // a one-document query too
            for _ in 0..<n {
                labels.append(q == 1 ? 0 : Float(rng.nextInt(below: 4) == 0 ? rng.nextInt(below: 4) : 0))  // query 1: no gain
                scores.append(Double(rng.nextInt(below: 5)) * 0.5)  // ties in score
            }
            groups.append(labels.count)
        }
        let rank = LambdaRankOptions()
        // The reference: every pair (i < j in score order, ties by index) with i in the top 30
        // and different labels, as in LightGBM's lambdarank objective.
        var rg = [Double](repeating: 0, count: labels.count), rh = rg
        for q in 0..<(groups.count - 1) {
            let r = groups[q]..<groups[q + 1]
            let gain = { (i: Int) -> Double in pow(2, Double(labels[i])) - 1 }
            let ideal = r.map(gain).sorted(by: >)
            let maxDCG = ideal.prefix(30).enumerated().reduce(0.0) { $0 + $1.element / log2(Double($1.offset) + 2) }
            guard r.count > 1, maxDCG > 0 else { continue }
            let order = r.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
            let best = scores[order.first!], worst = scores[order.last!]
            var lam = [Int: Double](), hes = [Int: Double](), sum = 0.0
            for i in 0..<min(order.count - 1, 30) {
                for j in (i + 1)..<order.count where labels[order[i]] != labels[order[j]] {
                    let (hi, lo, hp, lp) = labels[order[i]] > labels[order[j]] ? (order[i], order[j], i, j) : (order[j], order[i], j, i)
                    let ds = scores[hi] - scores[lo]
                    var dn = (gain(hi) - gain(lo)) * abs(1 / log2(Double(hp) + 2) - 1 / log2(Double(lp) + 2)) / maxDCG
                    if best != worst { dn /= 0.01 + abs(ds) }
                    let p = 1 / (1 + exp(ds))
                    lam[lo, default: 0] += p * dn
                    lam[hi, default: 0] -= p * dn
                    hes[lo, default: 0] += p * (1 - p) * dn
                    hes[hi, default: 0] += p * (1 - p) * dn
                    sum += 2 * p * dn
                }
            }
            let f = sum > 0 ? log2(1 + sum) / sum : 1
            for i in r { rg[i] = (lam[i] ?? 0) * f; rh[i] = (hes[i] ?? 0) * f }
        }
        for threads in [1, 3] {
            var g = [Float](repeating: 9, count: labels.count), h = g
            Gradients.compute(.lambdarank, scores: scores, labels: labels, weights: nil, groups: groups, rank: rank,
                              g: &g, h: &h, threads: threads)
            for i in labels.indices {
                #expect(abs(Double(g[i]) - rg[i]) < 1e-5 * max(1, abs(rg[i])), "threads \(threads), row \(i): g \(g[i]) vs \(rg[i])")
                #expect(abs(Double(h[i]) - rh[i]) < 1e-5 * max(1, abs(rh[i])), "threads \(threads), row \(i): h \(h[i]) vs \(rh[i])")
            }
        }
    }

    @Test("NDCG, MAP, AUC and logloss on small cases computed by hand")
    func metrics() {
        // One query: labels 3, 0, 1 ranked by scores 0.1, 0.9, 0.5 -> order 1, 2, 0.
        let labels: [Float] = [3, 0, 1], scores: [Double] = [0.1, 0.9, 0.5]
        let dcg = 0 / log2(2.0) + 1 / log2(3.0) + 7 / log2(4.0)
        let ideal = 7 / log2(2.0) + 1 / log2(3.0) + 0
        #expect(abs(RankingMetrics.ndcg(at: 3, scores: scores, labels: labels, groups: [0, 3]) - dcg / ideal) < 1e-12)
        #expect(abs(RankingMetrics.ndcg(at: 1, scores: scores, labels: labels, groups: [0, 3]) - 0) < 1e-12)
        // A query with no relevant document counts as 1.
        #expect(RankingMetrics.ndcg(at: 3, scores: [1, 2], labels: [0, 0], groups: [0, 2]) == 1)
        // MAP@3: relevant at ranks 2 and 3 -> (1/2 + 2/3) / 2.
        #expect(abs(RankingMetrics.map(at: 3, scores: scores, labels: labels, groups: [0, 3]) - (0.5 + 2.0 / 3) / 2) < 1e-12)
        // AUC: positives score 0.8, 0.4; negatives 0.5, 0.4 -> pairs (0.8>0.5, 0.8>0.4, 0.4<0.5, 0.4=0.4 half) = 2.5/4.
        #expect(abs(RankingMetrics.auc(scores: [0.8, 0.4, 0.5, 0.4], labels: [1, 1, 0, 0]) - 0.625) < 1e-12)
        #expect(abs(RankingMetrics.logloss(probabilities: [0.9, 0.2], labels: [1, 0]) - (-(log(0.9) + log(0.8)) / 2)) < 1e-12)
        #expect(abs(RankingMetrics.rmse(predictions: [1, 3], labels: [0, 0]) - sqrt(5.0)) < 1e-12)
    }
}

@Suite("GBDT training")
struct GBDTTrainingTests {
    @Test("a one-split tree finds the brute-force best threshold and leaf values -G/H")
    func stumpAgainstBruteForce() throws {
        let data = synthetic(200, 3, seed: 1) { x in x[1] > 0.3 ? 2 : (x[2] > 0 ? 0.5 : 0) }
        var p = GBDTParameters()
        p.objective = .regression
        p.rounds = 1
        p.numLeaves = 2
        p.learningRate = 1
        p.minDataInLeaf = 1
        let (model, _) = try GBDTTrainer.train(p, train: data)
        let t = model.trees[0]
        // Brute force: every feature, every threshold between sorted values, squared-error gain.
        let mean = Double(data.labels.reduce(0, +)) / 200
        var best = (gain: -1.0, feature: -1, left: 0.0, right: 0.0)
        for f in 0..<3 {
            let order = (0..<200).sorted { data.features[$0, f] < data.features[$1, f] }
            var gl = 0.0
            for i in 0..<199 {
                gl += Double(data.labels[order[i]]) - mean
                let nl = Double(i + 1), nr = Double(199 - i)
                let gr = -gl
                let gain = gl * gl / nl + gr * gr / nr
                if gain > best.gain { best = (gain, f, gl / nl, gr / nr) }
            }
        }
        #expect(Int(t.feature[0]) == best.feature)
        #expect(abs(t.leafValue[0] - best.left) < 1e-4 && abs(t.leafValue[1] - best.right) < 1e-4)
        #expect(abs(Double(t.gain[0]) - best.gain) < 1e-3 * best.gain)
    }

    @Test("binary training separates a learnable concept; AUC and logloss improve")
    func binary() throws {
        let train = synthetic(3000, 5, seed: 2) { x in (x[0] * x[1] > 0 ? 1 : 0) }
        let valid = synthetic(1000, 5, seed: 3) { x in (x[0] * x[1] > 0 ? 1 : 0) }
        var p = GBDTParameters()
        p.objective = .binary
        p.rounds = 60
        let (model, history) = try GBDTTrainer.train(p, train: train, valid: valid)
        let auc = history.last!.values.first { $0.name == "auc" }!.value
        #expect(auc > 0.97)
        let first = history.first!.values.first { $0.name == "binary_logloss" }!.value
        let last = history.last!.values.first { $0.name == "binary_logloss" }!.value
        #expect(last < first)
        let probs = try model.predict(valid.features)
        #expect(probs.allSatisfy { $0 > 0 && $0 < 1 })
    }

    @Test("lambdarank raises NDCG above the initial ranking on grouped data")
    func lambdarank() throws {
        var data = synthetic(2000, 6, seed: 4) { x in Float(max(0, min(4, Int((x[0] + x[3]) * 1.5 + 1.5)))) }
        data.groups = Array(stride(from: 0, through: 2000, by: 20))
        var p = GBDTParameters()
        p.rounds = 40
        p.minDataInLeaf = 10
        let (model, _) = try GBDTTrainer.train(p, train: data)
        let scores = try model.predict(data.features)
        let random = RankingMetrics.ndcg(at: 10, scores: [Double](repeating: 0, count: 2000), labels: data.labels, groups: data.groups!)
        let trained = RankingMetrics.ndcg(at: 10, scores: scores, labels: data.labels, groups: data.groups!)
        #expect(trained > random + 0.2, "random \(random), trained \(trained)")
    }

    @Test("same seed and threads give the same model; 1 and 2 threads agree; batch equals single-row")
    func determinism() throws {
        let data = synthetic(1500, 8, seed: 5) { x in x[0] + x[1] * x[2] }
        var p = GBDTParameters()
        p.objective = .regression
        p.rounds = 15
        p.featureFraction = 0.7
        p.baggingFraction = 0.8
        p.baggingFrequency = 1
        p.seed = 11
        let a = try GBDTTrainer.train(p, train: data).model
        let b = try GBDTTrainer.train(p, train: data).model
        p.threads = 2
        let c = try GBDTTrainer.train(p, train: data).model
        #expect(a == b)
        #expect(a == c)
        let batch = try a.predict(data.features, threads: 2)
        for r in stride(from: 0, to: 1500, by: 37) { #expect(try a.predict(data.features.row(r)) == batch[r]) }
    }

    @Test("trees of 33-64 leaves (64-bit QuickScorer) and over 64 (lockstep walk) predict as the tree walk does",
          arguments: [50, 100])
    func wideTrees(leaves: Int) throws {
        var data = synthetic(3000, 6, seed: 9) { x in sin(x[0] * 6) + x[1] * x[2] - x[3] }
        for r in stride(from: 0, to: 3000, by: 11) { data.features[r, 4] = .nan }
        var p = GBDTParameters()
        p.objective = .regression
        p.rounds = 5
        p.numLeaves = leaves
        p.minDataInLeaf = 5
        let model = try GBDTTrainer.train(p, train: data).model
        #expect(model.trees.contains { $0.leafValue.count > (leaves > 64 ? 64 : 32) })
        let batch = try model.predict(data.features)
        for r in stride(from: 0, to: 3000, by: 7) { #expect(try model.predict(data.features.row(r)) == batch[r]) }
    }

    @Test("missing values go the learned default direction")
    func missingValues() throws {
        // Missing feature 0 behaves like a large value.
        var data = synthetic(1000, 2, seed: 6) { x in x[0] > 0.5 ? 1 : 0 }
        for r in stride(from: 0, to: 1000, by: 5) {
            data.features[r, 0] = .nan
            data.labels[r] = 1
        }
        var p = GBDTParameters()
        p.objective = .binary
        p.rounds = 20
        let (model, _) = try GBDTTrainer.train(p, train: data)
        #expect(try model.predict([.nan, 0]) > 0.8)
        #expect(try model.predict([-1, 0]) < 0.2)
    }

    @Test("bad data and parameters are refused with a reason")
    func badInput() {
        let data = synthetic(50, 2, seed: 7) { x in x[0] }
        var p = GBDTParameters()
        p.objective = .binary
        #expect(throws: GBDTError.self) { try GBDTTrainer.train(p, train: data) }
        p.objective = .lambdarank
        #expect(throws: GBDTError.self) { try GBDTTrainer.train(p, train: data) }
        p.objective = .regression
        p.numLeaves = 1
        #expect(throws: GBDTError.self) { try GBDTTrainer.train(p, train: data) }
    }
}

@Suite("GBDT model files")
struct GBDTFileTests {
    func model() throws -> (GBDTModel, LabeledData) {
        let data = synthetic(500, 4, seed: 8) { x in x[0] > 0 ? 1 : 0 }
        var p = GBDTParameters()
        p.objective = .binary
        p.rounds = 10
        return (try GBDTTrainer.train(p, train: data).model, data)
    }

    @Test("save and load give identical predictions; corrupt files are refused")
    func roundTrip() throws {
        let (m, data) = try model()
        let path = NSTemporaryDirectory() + "funnel-gbdt-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try m.save(to: path)
        let loaded = try GBDTModel.load(from: path)
        #expect(loaded == m)
        #expect(try loaded.predict(data.features) == m.predict(data.features))
        let good = Array(FileManager.default.contents(atPath: path)!)
        var rng = SeededGenerator(seed: 3)
        for _ in 0..<40 {
            var b = good
            b[rng.nextInt(below: b.count)] ^= 0x5A
            FileManager.default.createFile(atPath: path, contents: Data(b))
            #expect(throws: GBDTError.self) { try GBDTModel.load(from: path) }
            FileManager.default.createFile(atPath: path, contents: Data(good.prefix(rng.nextInt(below: good.count))))
            #expect(throws: GBDTError.self) { try GBDTModel.load(from: path) }
        }
    }

    @Test("a LightGBM text model is read with its missing-value rules and predicts by hand")
    func lightGBMText() throws {
        // Tree 0 splits feature 1 at 0.5 (NaN type, default left), then feature 0 at -1 (zero type, default right).
        // Tree 1 splits feature 2 at 2 (none type: NaN read as 0).
        let text = """
        tree
        version=v4
        num_class=1
        num_tree_per_iteration=1
        label_index=0
        max_feature_idx=2
        objective=binary sigmoid:1
        feature_names=a b c

        Tree=0
        num_leaves=3
        num_cat=0
        split_feature=1 0
        split_gain=10 5
        threshold=0.5 -1
        decision_type=10 4
        left_child=1 -1
        right_child=-3 -2
        leaf_value=0.1 0.2 0.3
        leaf_count=10 20 30
        internal_value=0 0
        internal_count=60 30
        shrinkage=1

        Tree=1
        num_leaves=2
        num_cat=0
        split_feature=2
        split_gain=1
        threshold=2
        decision_type=0
        left_child=-1
        right_child=-2
        leaf_value=-0.5 0.5
        leaf_count=1 1
        internal_value=0
        internal_count=2
        shrinkage=0.1

        end of trees
        """
        let path = NSTemporaryDirectory() + "lgb-\(UUID().uuidString).txt"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let m = try GBDTModel.loadLightGBM(path)
        #expect(m.objective == .binary && m.featureNames == ["a", "b", "c"])
        func raw(_ x: [Float]) -> Double { x.withUnsafeBufferPointer { m.rawScore($0.baseAddress!) } }
        // decision 10 = default-left | NaN type; decision 4 = zero type, default right.
        #expect(raw([0, 0.2, 0]) == 0.2 - 0.5)       // f1 <= .5 -> node 1; f0 = 0 (zero type) -> default right -> leaf 1
        #expect(raw([-2, 0.2, 3]) == 0.1 + 0.5)      // f0 <= -1 -> leaf 0; f2 > 2 -> leaf 1
        #expect(raw([.nan, .nan, .nan]) == 0.2 - 0.5) // f1 NaN -> default left; f0 NaN (zero type) -> right; f2 NaN -> 0 <= 2
        #expect(raw([5, 0.9, 0]) == 0.3 - 0.5)
        #expect(abs(try m.predict([5, 0.9, 0]) - 1 / (1 + exp(0.2))) < 1e-12)
    }
}

@Suite("GBDT on LightGBM's example data")
struct GBDTRealDataTests {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../shared/data").standardized.path

    @Test("lambdarank on rank.train reaches a sensible NDCG@10 on rank.test, when the data is present")
    func lambdarankExample() throws {
        let train = "\(Self.dir)/lightgbm_lambdarank/rank.train"
        guard FileManager.default.fileExists(atPath: train) else {
            print("lightgbm_lambdarank not found under \(Self.dir): real-data check skipped")
            return
        }
        let tr = try LabeledData.readSVMLight(train, queryFile: train + ".query")
        let te = try LabeledData.readSVMLight("\(Self.dir)/lightgbm_lambdarank/rank.test", queryFile: "\(Self.dir)/lightgbm_lambdarank/rank.test.query", featureCount: tr.featureCount)
        #expect(tr.rowCount == 3005 && tr.queryCount == 201 && te.rowCount == 768)
        var p = GBDTParameters()
        p.minDataInLeaf = 50
        p.minSumHessianInLeaf = 5
        p.rounds = 50
        let (model, _) = try GBDTTrainer.train(p, train: tr)
        let ndcg = RankingMetrics.ndcg(at: 10, scores: try model.predict(te.features), labels: te.labels, groups: te.groups!)
        #expect(ndcg > 0.55, "NDCG@10 \(ndcg)")
    }
}

@Suite("LightGBM model import against LightGBM's own predictions")
struct LightGBMFixtureTests {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

    /// Fixtures written by tools/make_lightgbm_fixture.py: NaN-type and zero-as-missing splits.
    @Test("predictions equal LightGBM's to 1e-6, one row at a time and in a batch", arguments: ["nan", "zero"])
    func fixture(name: String) throws {
        let model = try GBDTModel.loadLightGBM("\(Self.dir)/lgb_\(name).model.txt")
        let rowsText = try String(contentsOfFile: "\(Self.dir)/lgb_\(name).rows.tsv", encoding: .utf8)
        let rows: [[Float]] = rowsText.split(separator: "\n").map { line in
            line.split(separator: "\t").map { $0 == "nan" ? Float.nan : Float(String($0))! }
        }
        let expected = try String(contentsOfFile: "\(Self.dir)/lgb_\(name).pred.txt", encoding: .utf8)
            .split(separator: "\n").map { Double(String($0))! }
        #expect(rows.count == expected.count && rows.count == 200)
        #expect(rows.joined().contains { $0.isNaN } && rows.joined().contains(0))
        let batch = try model.predict(try Matrix(rowArrays: rows))
        // 200 rows: six 32-row groups and an eight-row one; 199: six 32-row groups and a tail of seven taking the one-row path;
        // 190: five 32-row groups and a tail of 30 scored as a 32-row group padded with its last row.
        let odd = try model.predict(try Matrix(rowArrays: Array(rows.prefix(199))))
        let padded = try model.predict(try Matrix(rowArrays: Array(rows.prefix(190))))
        for (i, row) in rows.enumerated() {
            #expect(abs(try model.predict(row) - expected[i]) <= 1e-6, "row \(i)")
            #expect(abs(batch[i] - expected[i]) <= 1e-6, "row \(i) (batch)")
            if i < 199 { #expect(abs(odd[i] - expected[i]) <= 1e-6, "row \(i) (batch of 199)") }
            if i < 190 { #expect(abs(padded[i] - expected[i]) <= 1e-6, "row \(i) (batch of 190)") }
        }
    }
}

@Suite("TreeSHAP explanations")
struct TreeSHAPTests {
    /// E[f(x) | x_S] for one tree: follow x on features in S, average children by cover otherwise.
    func conditional(_ t: Tree, _ x: [Float], _ s: Set<Int>, _ node: Int32 = 0) -> Double {
        if t.isLeafOnly { return t.leafValue[0] }
        if node < 0 { return t.leafValue[Int(~node)] }
        let n = Int(node)
        let f = Int(t.feature[n])
        if s.contains(f) {
            let l = x.withUnsafeBufferPointer { t.goesLeft($0[f], n, t.threshold[n]) }
            return conditional(t, x, s, l ? t.left[n] : t.right[n])
        }
        let cl = t.cover(t.left[n]), cr = t.cover(t.right[n])
        return (cl * conditional(t, x, s, t.left[n]) + cr * conditional(t, x, s, t.right[n])) / (cl + cr)
    }

    @Test("contributions equal brute-force Shapley values and sum with the expected value to the raw score")
    func againstBruteForce() throws {
        let data = synthetic(800, 5, seed: 21) { x in x[0] * x[1] + (x[2] > 0.3 ? 1 : 0) - 0.5 * x[4] }
        var p = GBDTParameters()
        p.objective = .regression
        p.rounds = 8
        p.numLeaves = 12
        p.minDataInLeaf = 10
        let (model, _) = try GBDTTrainer.train(p, train: data)
        let m = 5
        func factorial(_ n: Int) -> Double { n <= 1 ? 1 : Double(n) * factorial(n - 1) }
        for r in [0, 7, 123, 456] {
            var x = data.features.row(r)
            if r == 456 { x[2] = .nan }  // a missing value follows the default direction
            let e = try model.explain(x)
            let raw = try model.predict(x)
            #expect(abs(e.expectedValue + e.contributions.reduce(0, +) - raw) < 1e-9)
            for i in 0..<m {
                var phi = 0.0
                let others = (0..<m).filter { $0 != i }
                for mask in 0..<(1 << others.count) {
                    let s = Set(others.enumerated().filter { mask & (1 << $0.offset) != 0 }.map(\.element))
                    let weight = factorial(s.count) * factorial(m - s.count - 1) / factorial(m)
                    var with = s
                    with.insert(i)
                    for t in model.trees { phi += weight * (conditional(t, x, with) - conditional(t, x, s)) }
                }
                #expect(abs(e.contributions[i] - phi) < 1e-9, "feature \(i): \(e.contributions[i]) vs \(phi)")
            }
        }
    }
}

@Suite("GBDT inputs and early stopping")
struct GBDTInputTests {
    @Test("concatenated sets keep rows, labels and query groups in order; mismatches are refused")
    func concatenate() throws {
        let a = LabeledData(features: try Matrix(rowArrays: [[1, 2], [3, 4], [5, 6]]), labels: [1, 0, 0], groups: [0, 2, 3])
        let b = LabeledData(features: try Matrix(rowArrays: [[7, 8], [9, 10]]), labels: [0, 1], groups: [0, 2])
        let c = try LabeledData.concatenate([a, b])
        #expect(c.features.storage == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        #expect(c.labels == [1, 0, 0, 0, 1] && c.groups == [0, 2, 3, 5])
        let wide = LabeledData(features: try Matrix(rowArrays: [[1, 2, 3]]), labels: [0], groups: [0, 1])
        #expect(throws: DatasetError.self) { try LabeledData.concatenate([a, wide]) }
        let ungrouped = LabeledData(features: try Matrix(rowArrays: [[1, 2]]), labels: [0])
        #expect(throws: DatasetError.self) { try LabeledData.concatenate([a, ungrouped]) }
    }

    func write(_ text: String) -> String {
        let p = NSTemporaryDirectory() + "funnel-svm-\(UUID().uuidString)"
        try! text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    @Test("SVMlight with qid, LightGBM .query groups, and malformed lines named by line")
    func svmlight() throws {
        let a = write("2 qid:1 1:0.5 3:1\n0 qid:1 2:0.25\n1 qid:2 1:1 # comment\n")
        let d = try LabeledData.readSVMLight(a)
        #expect(d.rowCount == 3 && d.featureCount == 4 && d.groups == [0, 2, 3])
        #expect(d.features[0, 1] == 0.5 && d.features[0, 3] == 1 && d.features[1, 2] == 0.25 && d.features[1, 1] == 0)
        let q = write("1\n2\n")
        #expect(try LabeledData.readSVMLight(a, queryFile: q).groups == [0, 1, 3])
        #expect(throws: DatasetError.self) { try LabeledData.readSVMLight(a, queryFile: write("5\n")) }
        for (text, line) in [("1 1:0.5\n1 x:2\n", 2), ("1 1:0.5\nabc 1:2\n", 2), ("1 1:0.5\n1 2:inf\n", 2), ("1 qid:1 1:1\n1 1:2\n", 2)] {
            do {
                _ = try LabeledData.readSVMLight(write(text))
                Issue.record("accepted \(text)")
            } catch let DatasetError.badRow(_, l, _) {
                #expect(l == line)
            }
        }
    }

    @Test("early stopping keeps the best round's trees")
    func earlyStopping() throws {
        let train = synthetic(600, 4, seed: 31) { x in x[0] > 0 ? 1 : 0 }
        // Validation labels are noise: the model can only get worse on it after a few rounds.
        var valid = synthetic(300, 4, seed: 32) { _ in 0 }
        var rng = SeededGenerator(seed: 5)
        for i in 0..<300 { valid.labels[i] = rng.nextUnit() < 0.5 ? 1 : 0 }
        var p = GBDTParameters()
        p.objective = .binary
        p.rounds = 200
        p.earlyStoppingRounds = 10
        let (model, history) = try GBDTTrainer.train(p, train: train, valid: valid)
        #expect(history.count < 200)
        let aucs = history.map { $0.values[0].value }
        let best = aucs.indices.max { aucs[$0] < aucs[$1] }!
        #expect(model.trees.count == best + 1)
        #expect(history.count - 1 - best == 10)
    }
}

@Suite("TreeSHAP by tables")
struct TreeExplainerTests {
    @Test("table contributions equal the recursion's on every row, missing values and repeated features included; untabled trees too",
          arguments: [2_000_000, 3_000, 0])
    func againstRecursion(budget: Int) throws {
        // Few features and deep-ish trees: features repeat along paths.
        let (data, model) = try regressionWithMissing(1500, 4, seed: 31, rounds: 30, leaves: 15, minData: 5) { x in
            x[0] * x[1] + (x[0] > 0.5 ? 1 : 0) - abs(x[2]) + x[3] * x[0]
        }
        let explainer = TreeExplainer(model, budget: budget)
        // The budget decides which trees get tables: all, some, none.
        let tabled = explainer.trees.filter { $0 != nil }.count
        if budget == 0 { #expect(tabled == 0) } else if budget == 2_000_000 { #expect(tabled == model.trees.count) } else { #expect(tabled > 0 && tabled < model.trees.count) }
        let rows = 200
        let x = Array(data.features.storage.prefix(rows * 4))
        let fast = try explainer.explain(rows: x, count: rows, stride: 4)
        let slow = try model.explain(rows: x, count: rows, stride: 4)
        for r in 0..<rows {
            #expect(abs(fast[r].expectedValue - slow[r].expectedValue) < 1e-12)
            for f in 0..<4 {
                #expect(abs(fast[r].contributions[f] - slow[r].contributions[f]) < 1e-9 * max(1, abs(slow[r].contributions[f])), "row \(r) feature \(f)")
            }
            let raw = try model.predict(Array(x[(r * 4)..<(r * 4 + 4)]))
            #expect(abs(fast[r].expectedValue + fast[r].contributions.reduce(0, +) - raw) < 1e-9)
        }
    }
}
