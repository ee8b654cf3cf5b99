import ArgumentParser
import Foundation
import Funnel

/// The main job on built-in data, the whole funnel: generate a catalog, train user and item
/// towers, index the item embeddings with HNSW, retrieve for users, rank the candidates with
/// a GBDT (explained by TreeSHAP), re-rank with MMR, freshness and a category cap, and
/// evaluate every stage leave-last-one-out against popularity and exact search.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the funnel end to end on a generated catalog (no download).")

    @Option(help: "Users in the generated catalog.") var users: Int = 4_000
    @Option(help: "Items in the generated catalog.") var items: Int = 10_000
    @Option(help: "Interactions in the generated catalog.") var interactions: Int = 200_000
    @Option(help: "Training epochs of the towers.") var epochs: Int = 4
    @Option(help: "Users evaluated (leave-last-one-out).") var evalUsers: Int = 2_000
    @Option(help: "Recommendations per user.") var k: Int = 10
    @Option(help: "HNSW beam width at query time.") var ef: Int = 64
    @Option(help: "Random seed.") var seed: UInt64 = 42
    @Flag(inversion: .prefixedNo, help: "logQ correction of the in-batch softmax (removes the sampling bias of in-batch negatives).") var logQ = true
    @Option(help: "Threads (default: all cores).") var threads: Int?

    func validate() throws {
        guard users > 0, items > 0, interactions > 0 else { throw ValidationError("catalog sizes must be positive") }
        guard k > 0, epochs > 0 else { throw ValidationError("--k and --epochs must be positive") }
    }

    func run() throws {
        try FunnelCLI.run {
            let threads = threads ?? Parallel.availableCores
            var config = SyntheticCatalog.Config()
            config.users = users
            config.items = items
            config.interactions = interactions
            config.seed = seed
            var t = now()
            let catalog = SyntheticCatalog.generate(config, threads: threads)
            let events = catalog.interactions
            print("1. catalog: \(users) users, \(items) items (\(catalog.coldItems.count) too new to have interactions), "
                  + "\(events.count) interactions, generated in \(fmt(now() - t, 2)) s")

            // Features -> towers.
            let end = config.start + config.duration
            let userFeatures = try EntityFeatures.build(count: users, table: catalog.users, kinds: [
                ("user_id", .id), ("region", .categorical(column: "region")), ("age", .numericBuckets(column: "age", buckets: 6)),
            ])
            let itemFeatures = try EntityFeatures.build(count: items, table: catalog.items, kinds: [
                ("item_id", .id), ("category", .categorical(column: "category")), ("tags", .multiCategorical(column: "tags")),
                ("price", .numericBuckets(column: "price", buckets: 8)), ("age", .ageBuckets(column: "created_at", now: end, buckets: 10)),
                ("title", .hashedText(column: "title", buckets: 512)),
            ])
            let split = LeaveLastOutSplit(events)
            var p = TwoTowerParameters()
            p.epochs = epochs
            p.batchSize = 512
            p.idDropout = 0.2
            p.seed = seed
            p.logQCorrection = logQ
            let model = TwoTowerModel(userFeatures: userFeatures, itemFeatures: itemFeatures, parameters: p)
            var rng = SeededGenerator(seed: seed)
            t = now()
            model.fit(split.train, rng: &rng) { r in
                print("2. towers, epoch \(r.epoch)/\(epochs): in-batch softmax loss \(fmt(Double(r.loss), 4))")
                return nil
            }
            let trainSeconds = now() - t
            print("   trained on \(split.train.count) interactions x \(epochs) epochs in \(fmt(trainSeconds, 1)) s "
                  + "(\(fmt(Double(split.train.count * epochs) / trainSeconds, 0)) examples/s)")

            // Item embeddings -> HNSW; cold items embedded from their features alone.
            let itemVectors = model.embedAll(model.items)
            let coldVectors = model.embedAll(model.items, withoutID: true)
            t = now()
            let index = try HNSWIndex(dimension: p.dimension, parameters: .init(metric: .cosine, M: 16, efConstruction: 200))
            let cold = Set(catalog.coldItems)
            let warmIDs = (0..<items).filter { !cold.contains(Int32($0)) }
            var warm = Matrix(rows: warmIDs.count, columns: p.dimension)
            for (r, i) in warmIDs.enumerated() { for c in 0..<p.dimension { warm[r, c] = itemVectors[i, c] } }
            try index.add(warm, ids: warmIDs.map { UInt64($0) }, threads: threads)
            print("3. HNSW index over \(index.count) item embeddings built in \(fmt(now() - t, 2)) s; "
                  + "\(catalog.coldItems.count) cold items then inserted from features alone")
            for c in catalog.coldItems { try index.add(coldVectors.row(Int(c)), id: UInt64(c)) }

            // Retrieval for users, evaluated leave-last-one-out.
            let userVectors = model.embedAll(model.users)
            let exact = try ExactIndex(vectors: itemVectors, metric: .cosine)
            var popularity = [Int](repeating: 0, count: items)
            for pair in split.train { popularity[Int(pair.item)] += 1 }
            let byPopularity = (0..<items).sorted { popularity[$0] != popularity[$1] ? popularity[$0] > popularity[$1] : $0 < $1 }
            let evaluated = split.test.keys.sorted().prefix(evalUsers)
            var hitsHNSW = 0, hitsExact = 0, hitsPop = 0, overlap = 0
            var latencies = [Double]()
            for (n, u) in evaluated.enumerated() {
                let seen = split.seenBeforeTest(u)
                let q = userVectors.row(Int(u))
                let want = k + seen.count
                let s = now()
                let found = try index.search(q, k: want, ef: max(ef, want)).filter { !seen.contains(Int32($0.id)) }.prefix(k)
                latencies.append(now() - s)
                let truth = try exact.search(q, k: want).filter { !seen.contains(Int32($0.id)) }.prefix(k)
                let popular = byPopularity.lazy.filter { !seen.contains(Int32($0)) }.prefix(k)
                let target = Int(split.test[u]!)
                if found.contains(where: { $0.id == target }) { hitsHNSW += 1 }
                if truth.contains(where: { $0.id == target }) { hitsExact += 1 }
                if popular.contains(target) { hitsPop += 1 }
                overlap += Set(found.map(\.id)).intersection(truth.map(\.id)).count
                if n < 3 {
                    let cat = catalog.items.categoricalCodes("category")!
                    let recent = split.train.filter { $0.user == u }.suffix(4).map { cat.vocabulary[cat.codes[Int($0.item)]] }
                    print("   user u\(u): recent categories \(recent.joined(separator: " ")) -> "
                          + found.prefix(5).map { "i\($0.id)(\(cat.vocabulary[cat.codes[$0.id]]))" }.joined(separator: " "))
                }
            }
            latencies.sort()
            let nUsers = Double(evaluated.count)
            print("4. retrieval for \(evaluated.count) users: HNSW p50 \(fmt(quantile(latencies, 0.5) * 1e6, 0)) us, "
                  + "p99 \(fmt(quantile(latencies, 0.99) * 1e6, 0)) us; HNSW top-\(k) agrees with exact search on "
                  + "\(fmt(Double(overlap) / (nUsers * Double(k)) * 100, 1))% of items")
            printAligned(header: ["leave-last-one-out", "HR@\(k)"], rows: [
                ["two-tower + HNSW", fmt(Double(hitsHNSW) / nUsers, 4)],
                ["two-tower + exact search", fmt(Double(hitsExact) / nUsers, 4)],
                ["popularity", fmt(Double(hitsPop) / nUsers, 4)],
            ])
            // A cold item is findable immediately: search with its own feature embedding.
            if let c = catalog.coldItems.first {
                let hit = try index.search(coldVectors.row(Int(c)), k: 1, ef: ef).first
                print("5. cold item i\(c) (no interactions) is retrievable from its features: nearest = i\(hit?.id ?? -1)")
            }
            var servingVectors = itemVectors
            for c in catalog.coldItems { for j in 0..<p.dimension { servingVectors[Int(c), j] = coldVectors[Int(c), j] } }
            try rankAndRerank(catalog: catalog, split: split, index: index, userVectors: userVectors, itemVectors: servingVectors)
        }
    }

    /// Stages 6 to 8 through the library's `FunnelPipeline`: a GBDT ranker trained on
    /// replayed validation requests (features as of each request's time), evaluated on the
    /// test interactions of other users; then MMR, freshness and a category cap; then the
    /// same requests served with budgets, fallbacks and explanations.
    func rankAndRerank(catalog: SyntheticCatalog, split: LeaveLastOutSplit, index: HNSWIndex, userVectors: Matrix,
                       itemVectors: Matrix) throws {
        let statistics = InteractionStatistics(log: catalog.interactions)
        let attributes = try ItemAttributes(table: catalog.items, category: "category", createdAt: "created_at", numeric: ["price"])
        let features = try RankingFeatures(items: attributes, statistics: statistics)
        var config = PipelineConfig()
        config.candidates = 100
        config.ef = ef
        config.mmrPool = 50
        config.explanations = 3
        let retrieval = try FunnelPipeline(index: index, itemVectors: itemVectors, features: features, ranker: nil, config: config)
        func request(_ u: Int32, exclude: Set<Int32>, asOf: Int64?) -> FunnelRequest {
            FunnelRequest(user: Int(u), vector: Array(userVectors.row(Int(u))), exclude: exclude, asOf: asOf)
        }

        // Ranker training data: the validation interaction of half the users, replayed.
        let users = split.validation.keys.sorted()
        let rankerRequests = RankerTraining.validationRequests(split, userVectors: userVectors, users: Array(users.prefix(users.count / 2)))
        var t = now()
        var gp = GBDTParameters()
        gp.objective = .lambdarank
        gp.rounds = 100
        gp.numLeaves = 15
        gp.minDataInLeaf = 50
        let (trained, used, _) = try RankerTraining.train(rankerRequests, retrieval: [retrieval], features: features,
                                                       candidates: config.candidates, parameters: gp)
        guard let ranker = trained else { print("6. too few training groups for the ranker"); return }
        print("6. GBDT ranker (lambdarank, \(ranker.trees.count) trees, \(features.count) features) trained on \(used) replayed requests "
              + "in \(fmt(now() - t, 2)) s")
        let pipeline = try FunnelPipeline(index: index, itemVectors: itemVectors, features: features, ranker: ranker, config: config)

        // Held-out users' test interactions, each request as of its own time.
        let heldOut = users.dropFirst(users.count / 2).filter { split.test[$0] != nil }
        let requests = heldOut.map { (request: request($0, exclude: split.seenBeforeTest($0), asOf: split.testTime[$0]!), target: split.test[$0]!) }
        t = now()
        let report = try OfflineEvaluation.run(pipeline, requests: requests, k: k, lambdas: [1.0, 0.7])
        print("7. on \(requests.count) held-out users (test interactions), \(config.candidates) HNSW candidates each (\(fmt(now() - t, 1)) s):")
        printAligned(header: ["stage", "HR@\(k)", "NDCG@\(k)", "intra-list diversity", "coverage"], rows:
            [("retrieval order (two-tower + HNSW)", report.retrieval), ("+ GBDT ranking", report.ranked)].map { row in
                [row.0, fmt(row.1.hr, 4), fmt(row.1.ndcg, 4), fmt(row.1.diversity, 3), fmt(row.1.coverage, 3)]
            } + report.reranked.map { r in
                ["+ MMR \(r.lambda), freshness, <= 3 per category", fmt(r.quality.hr, 4), fmt(r.quality.ndcg, 4),
                 fmt(r.quality.diversity, 3), fmt(r.quality.coverage, 3)]
            })

        // The same requests served: budgets, deadline, fallbacks, explanations.
        var totals = [Double](), paths = [String: Int]()
        for (n, (r, _)) in requests.enumerated() {
            let answer = try pipeline.recommend(r, k: k)
            totals.append(answer.totalSeconds)
            paths[answer.path.joined(separator: " > "), default: 0] += 1
            if n == 0 {
                print("   user u\(r.user!): why each of the first 3 items is there")
                for item in answer.items.prefix(3) { print("     " + explain(item, categories: attributes.categoryNames)) }
            }
        }
        totals.sort()
        print("8. served through FunnelPipeline (budgets 50 ms per stage, deadline 150 ms, TreeSHAP top-3 per item): "
              + "p50 \(fmt(quantile(totals, 0.5) * 1e6, 0)) us, p99 \(fmt(quantile(totals, 0.99) * 1e6, 0)) us per request")
        for (path, count) in paths.sorted(by: { $0.value > $1.value }) { print("   \(count) x \(path)") }
    }
}

/// One line saying why an item is in a list: retrieval, ranker and its top features, rules.
func explain(_ item: RankedItem, categories: [String]) -> String {
    var parts = ["i\(item.id)"]
    if let c = item.category, c < categories.count { parts.append("(\(categories[c]))") }
    if let r = item.retrievalRank, let s = item.retrievalScore { parts.append("retrieved #\(r + 1) sim \(fmt(s, 3))") }
    if let s = item.rankerScore {
        parts.append("ranker \(fmt(s, 3))" + (item.contributions.isEmpty ? "" : " [" + item.contributions.map {
            "\($0.feature) \(String(format: "%+.3f", $0.value))" }.joined(separator: ", ") + "]"))
    }
    if !item.explanation.isEmpty { parts.append("rules: " + item.explanation.joined(separator: "; ")) }
    return parts.joined(separator: "  ")
}
