import Datasets
import Foundation
import GBDT
import HNSW
import LinearAlgebra
import MetricsTestKit
import Rerank
import Serving
import Testing

/// A small random world: users, items with categories, creation times and a price, and a
/// time-stamped, rated interaction log.
struct World {
    let users = 30, items = 300, dimension = 8, categories = 6
    var log: InteractionLog
    var category: [Int32]
    var created: [Int64]
    var price: [Float]
    var vectors: Matrix
    var userVectors: Matrix

    init(seed: UInt64) {
        var g = SeededGenerator(seed: seed)
        log = InteractionLog(users: Vocabulary((0..<users).map { "u\($0)" }), items: Vocabulary((0..<items).map { "i\($0)" }), hasWeights: true)
        for _ in 0..<2_000 {
            // Popularity skewed towards low ids; times over 100 days with deliberate ties.
            let i = Int32(min(items - 1, Int(Double(items) * pow(Double.random(in: 0..<1, using: &g), 2))))
            log.append(user: Int32.random(in: 0..<Int32(users), using: &g), item: i,
                       timestamp: 1_000_000 + Int64.random(in: 0..<100, using: &g) * 86_400, weight: Float(Int.random(in: 1...5, using: &g)))
        }
        category = (0..<items).map { _ in Int32.random(in: 0..<6, using: &g) }
        created = (0..<items).map { _ in 1_000_000 - 86_400 * 30 + Int64.random(in: 0..<(130 * 86_400), using: &g) }
        price = (0..<items).map { _ in Float.random(in: 1..<100, using: &g) }
        vectors = Matrix(rows: items, columns: dimension)
        userVectors = Matrix(rows: users, columns: dimension)
        for i in 0..<vectors.storage.count { vectors.storage[i] = Float.random(in: -1..<1, using: &g) }
        for i in 0..<userVectors.storage.count { userVectors.storage[i] = Float.random(in: -1..<1, using: &g) }
        vectors.normalizeRows()
        userVectors.normalizeRows()
    }

    func features() throws -> RankingFeatures {
        let attributes = try ItemAttributes(count: items, categories: category.map { [$0] }, categoryNames: (0..<categories).map { "c\($0)" },
                                            createdAt: created, numeric: [("price", price)])
        return try RankingFeatures(items: attributes, statistics: InteractionStatistics(log: log))
    }

    func index() throws -> HNSWIndex {
        let index = try HNSWIndex(dimension: dimension, parameters: .init(metric: .cosine, M: 16, efConstruction: 200))
        try index.add(vectors, threads: 1)
        return index
    }
}

@Suite("Funnel pipeline: features, ranker data, stages, fallbacks, metrics")
struct PipelineTests {
    @Test("as-of counts, recent counts, mean ratings and histories equal a scan of the log")
    func statistics() throws {
        let w = World(seed: 1)
        let s = InteractionStatistics(log: w.log, recentWindow: 10 * 86_400)
        var g = SeededGenerator(seed: 2)
        for _ in 0..<200 {
            let item = Int.random(in: 0..<w.items, using: &g), user = Int.random(in: 0..<w.users, using: &g)
            let t = 1_000_000 + Int64.random(in: -2...102, using: &g) * 86_400 + Int64.random(in: -1...1, using: &g)
            let before = (0..<w.log.count).filter { w.log.timestamps[$0] < t }
            let ofItem = before.filter { Int(w.log.itemIndex[$0]) == item }
            #expect(s.popularity(item, before: t) == ofItem.count)
            #expect(s.recentPopularity(item, before: t) == ofItem.filter { w.log.timestamps[$0] >= t - 10 * 86_400 }.count)
            let mean = ofItem.isEmpty ? Float.nan : ofItem.map { w.log.weights![$0] }.reduce(0, +) / Float(ofItem.count)
            let got = s.meanWeight(item, before: t)
            #expect(mean.isNaN ? got.isNaN : abs(got - mean) < 1e-4)
            let history = before.filter { Int(w.log.userIndex[$0]) == user }.map { w.log.itemIndex[$0] }
            #expect(Set(s.history(user, before: t)) == Set(history) && s.history(user, before: t).count == history.count)
        }
    }

    @Test("features of a replayed request are computed from its past only, as a hand computation says")
    func features() throws {
        let w = World(seed: 3)
        let f = try w.features()
        #expect(f.count == 9 && f.names.last == "price")
        let user = 4, t: Int64 = 1_000_000 + 50 * 86_400
        let candidates = [RankedItem(id: 7, score: 0.5), RankedItem(id: 0, score: 0.25)]
        var x = [Float]()
        f.compute(user: user, candidates: candidates, asOf: t, into: &x)
        #expect(x.count == 2 * f.count)
        let past = (0..<w.log.count).filter { w.log.timestamps[$0] < t }
        let mine = past.filter { Int(w.log.userIndex[$0]) == user }
        for (r, c) in candidates.enumerated() {
            let row = Array(x[r * f.count..<(r + 1) * f.count])
            let pop = past.filter { Int(w.log.itemIndex[$0]) == c.id }
            let recent = pop.filter { w.log.timestamps[$0] >= t - 30 * 86_400 }
            let affinity = Float(mine.filter { w.category[Int(w.log.itemIndex[$0])] == w.category[c.id] }.count) / Float(mine.count)
            let expected: [Float] = [Float(c.score), Float(r), Float(log1p(Double(pop.count))), Float(log1p(Double(recent.count))),
                                     Float(Double(t - w.created[c.id]) / 86_400), affinity, Float(log1p(Double(mine.count))),
                                     pop.isEmpty ? .nan : pop.map { w.log.weights![$0] }.reduce(0, +) / Float(pop.count), w.price[c.id]]
            for j in 0..<f.count {
                #expect(expected[j].isNaN ? row[j].isNaN : abs(row[j] - expected[j]) < 1e-4, "\(f.names[j])")
            }
        }
        // An unknown user has no history: no affinity, no activity.
        f.compute(user: nil, candidates: candidates, into: &x)
        #expect(x[5] == 0 && x[6] == 0)
    }

    @Test("ranker training data: one group per query with a retrieved positive, labels where the user then interacted")
    func trainingData() throws {
        let w = World(seed: 4)
        let f = try w.features()
        let queries = [RankerQuery(user: 1, time: 1_000_000 + 40 * 86_400, positives: [3, 5], exclude: []),
                       RankerQuery(user: 2, time: 1_000_000 + 60 * 86_400, positives: [299], exclude: []),  // not retrieved
                       RankerQuery(user: 3, time: 1_000_000 + 80 * 86_400, positives: [8], exclude: [])]
        let (data, used) = try RankerTrainingData.build(queries: queries, features: f) { q in
            (0..<10).map { RankedItem(id: $0 + q.user, score: 1 - Double($0) / 10) }
        }
        #expect(used == 2 && data.groups == [0, 10, 20] && data.featureCount == f.count)
        let first: [Float] = (0..<10).map { [3, 5].contains($0 + 1) ? 1 : 0 }
        let second: [Float] = (0..<10).map { $0 + 3 == 8 ? 1 : 0 }
        #expect(data.labels == first + second)
        // Popularity features are as of each query's time.
        let t = queries[2].time
        let pop = (0..<w.log.count).filter { w.log.timestamps[$0] < t && w.log.itemIndex[$0] == 3 }.count
        #expect(data.features[10, 2] == Float(log1p(Double(pop))))
    }

    func pipeline(_ w: World, ranker: GBDTModel?, config: PipelineConfig) throws -> FunnelPipeline {
        try FunnelPipeline(index: w.index(), itemVectors: w.vectors, features: w.features(), ranker: ranker, config: config)
    }

    /// A ranker trained on replayed requests of the world (whatever it learns, the tests
    /// compare the pipeline's order with the model's own predictions).
    func ranker(_ w: World) throws -> GBDTModel {
        let f = try w.features()
        let queries = (0..<w.users).map { RankerQuery(user: $0, time: 1_000_000 + 70 * 86_400, positives: Set((0..<40).map { Int32($0) }), exclude: []) }
        let (data, _) = try RankerTrainingData.build(queries: queries, features: f) { q in
            (0..<50).map { RankedItem(id: ($0 * 7 + q.user) % w.items, score: Double(50 - $0) / 50) }
        }
        var p = GBDTParameters()
        p.rounds = 20
        p.minDataInLeaf = 5
        return try GBDTTrainer.train(p, train: data).model
    }

    @Test("retrieval returns the exact nearest items minus exclusions; ranking follows the model; rules hold")
    func stages() throws {
        let w = World(seed: 5)
        var config = PipelineConfig()
        config.candidates = 40
        config.ef = 300
        config.inline = true
        config.mmrLambda = 0.5
        config.explanations = 2
        // Budgets far above what a loaded CI machine (ASan, a fuzzer beside it) needs: the
        // test checks each stage's answer, not its time.
        config.retrievalBudget = 5
        config.rankingBudget = 5
        let model = try ranker(w)
        let p = try pipeline(w, ranker: model, config: config)
        for u in 0..<5 {
            let q = Array(w.userVectors.row(u))
            let exclude: Set<Int32> = [Int32(u), 10, 11, 12]
            let request = FunnelRequest(user: u, vector: q, exclude: exclude)
            // Oracle: brute-force cosine over all items not excluded.
            let truth = (0..<w.items).filter { !exclude.contains(Int32($0)) }
                .map { ($0, Distance.dot(q, w.vectors.row($0))) }.sorted { $0.1 > $1.1 }.prefix(config.candidates).map(\.0)
            let got = try p.retrieve(request, count: config.candidates)
            #expect(got.map(\.id) == truth)
            #expect(got.enumerated().allSatisfy { $0.element.retrievalRank == $0.offset })
            let exact = try p.retrieveExact(request, count: config.candidates)
            #expect(exact.map(\.id) == truth)
            // Ranking: the model's prediction of each candidate's feature row, best first.
            let ranked = try p.rank(request, got)
            var x = [Float]()
            p.features.compute(user: u, candidates: got, into: &x)
            let d = p.features.count
            let scores = try got.indices.map { try model.predict(Array(x[$0 * d..<($0 + 1) * d])) }
            let order = got.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : got[$0].id < got[$1].id }.map { got[$0].id }
            #expect(ranked.map(\.id) == order)
            // The whole request: k items, at most 3 per category, none excluded, each explained.
            let answer = try p.recommend(request, k: 10)
            #expect(answer.path == ["retrieval:ann", "ranking:gbdt", "rerank"])
            #expect(answer.items.count == 10)
            #expect(Set(answer.items.map(\.id)).count == 10 && answer.items.allSatisfy { !exclude.contains(Int32($0.id)) })
            let perCategory = Dictionary(grouping: answer.items, by: { w.category[$0.id] })
            #expect(perCategory.values.allSatisfy { $0.count <= 3 })
            #expect(answer.items.allSatisfy { $0.contributions.count == 2 && $0.rankerScore != nil && $0.retrievalRank != nil })
        }
    }

    @Test("a failing ANN stage falls back to exact search; no query vector falls back to popular items; no ranker keeps retrieval order")
    func fallbacks() throws {
        let w = World(seed: 6)
        var config = PipelineConfig()
        config.candidates = 20
        config.mmrLambda = 1
        config.freshness = nil
        config.rules = BusinessRules()
        config.retrievalBudget = 5  // the exact fallback must not turn into a timeout on a loaded machine
        config.rankingBudget = 5
        let p = try pipeline(w, ranker: nil, config: config)
        // The ANN stage has failed often enough for its breaker to open: no ANN call now.
        for _ in 0..<p.recommender.retrievalBreaker.failureThreshold { p.recommender.retrievalBreaker.record(success: false) }
        let q = Array(w.userVectors.row(0))
        let a = try p.recommend(FunnelRequest(user: 0, vector: q), k: 5)
        #expect(a.path == ["retrieval:circuit-open->exact", "ranking:unavailable->retrieval-order", "rerank"])
        let truth = (0..<w.items).map { ($0, Distance.dot(q, w.vectors.row($0))) }.sorted { $0.1 > $1.1 }.prefix(5).map(\.0)
        #expect(a.items.map(\.id) == truth)

        let b = try p.recommend(FunnelRequest(user: nil, vector: nil), k: 5)
        #expect(b.path.first == "retrieval:circuit-open->popular", "\(b.path)")
        var counts = [Int](repeating: 0, count: w.items)
        for i in w.log.itemIndex { counts[Int(i)] += 1 }
        let popular = (0..<w.items).sorted { counts[$0] != counts[$1] ? counts[$0] > counts[$1] : $0 < $1 }.prefix(5)
        #expect(b.items.map(\.id) == Array(popular))
    }

    @Test("a malformed request is an error naming the problem, not a silent fallback")
    func malformedRequests() throws {
        let w = World(seed: 10)
        var config = PipelineConfig()
        config.retrievalBudget = 5  // the last check wants the ANN path, not a loaded machine's timeout
        let p = try pipeline(w, ranker: nil, config: config)
        let q = Array(w.userVectors.row(0))
        func message(_ request: FunnelRequest, k: Int = 5) -> String? {
            do { _ = try p.recommend(request, k: k); return nil } catch let e as ServingError { return "\(e)" } catch { return "\(error)" }
        }
        #expect(message(FunnelRequest(user: 0, vector: Array(q.dropLast())))?.contains("\(q.count - 1) values") == true)
        var nan = q
        nan[3] = .nan
        #expect(message(FunnelRequest(user: 0, vector: nan))?.contains("position 3") == true)
        #expect(message(FunnelRequest(user: w.users, vector: q))?.contains("outside") == true)
        #expect(message(FunnelRequest(user: -1, vector: q))?.contains("outside") == true)
        #expect(message(FunnelRequest(user: 0, vector: q), k: 0)?.contains("k must be") == true)
        // The same request, well formed, is answered by the ANN stage.
        #expect(message(FunnelRequest(user: 0, vector: q)) == nil)
        #expect(try p.recommend(FunnelRequest(user: 0, vector: q), k: 5).path.first == "retrieval:ann")
    }

    @Test("a corrupt ranker file is refused on load, and the funnel still answers in retrieval order, saying so")
    func corruptRanker() throws {
        let w = World(seed: 9)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("funnel-ranker-\(UUID().uuidString).gbdt").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try ranker(w).save(to: path)
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[bytes.count / 3] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let loaded = try? GBDTModel.load(from: path)
        #expect(loaded == nil)
        var config = PipelineConfig()
        config.mmrLambda = 1
        config.freshness = nil
        config.rules = BusinessRules()
        // Budgets far above what a loaded CI machine needs: this test is about the ranker.
        config.retrievalBudget = 5
        config.rankingBudget = 5
        config.deadline = 10
        let p = try pipeline(w, ranker: loaded, config: config)
        let q = Array(w.userVectors.row(1))
        let a = try p.recommend(FunnelRequest(user: 1, vector: q), k: 5)
        #expect(a.path == ["retrieval:ann", "ranking:unavailable->retrieval-order", "rerank"])
        #expect(a.items.map(\.id) == (try p.retrieve(FunnelRequest(user: 1, vector: q), count: 5)).map(\.id))
        #expect(a.totalSeconds < config.deadline)
    }

    @Test("a ranker that does not match the features is refused with a clear error")
    func mismatchedRanker() throws {
        let w = World(seed: 7)
        var model = try ranker(w)
        model.featureCount = 3
        #expect(throws: ServingError.self) { try pipeline(w, ranker: model, config: PipelineConfig()) }
    }

    @Test("stage latencies and fallbacks are recorded as metrics, labelled with the served version")
    func metrics() throws {
        let w = World(seed: 8)
        var config = PipelineConfig()
        config.retrievalBudget = 5  // a loaded CI machine must not turn the failure into a timeout
        config.deadline = 10
        let p = try pipeline(w, ranker: nil, config: config)
        let test = TestMetrics()
        p.recommender.metrics = StageMetrics(label: "t", dimensions: [("version", "v2")], factory: test)
        // No query vector: retrieval fails every time (and exact search too: popular items answer).
        for _ in 0..<3 { _ = try p.recommend(FunnelRequest(user: 0, vector: nil), k: 5) }
        #expect(try test.expectTimer("t_stage_seconds", [("stage", "retrieval"), ("version", "v2")]).values.count == 3)
        #expect(try test.expectTimer("t_request_seconds", [("version", "v2")]).values.count == 3)
        #expect(try test.expectCounter("t_fallbacks_total", [("kind", "retrieval:failed"), ("version", "v2")]).totalValue == 3)
        #expect(try test.expectCounter("t_fallbacks_total", [("kind", "ranking:unavailable"), ("version", "v2")]).totalValue == 3)
    }
}
