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
            try rankAndRerank(catalog: catalog, split: split, index: index, userVectors: userVectors,
                              itemVectors: itemVectors, popularity: popularity, end: end)
        }
    }

    /// Stages 6 and 7: a GBDT ranker over retrieval candidates (trained on the validation
    /// interactions, evaluated on the test ones), then MMR, freshness and a category cap.
    func rankAndRerank(catalog: SyntheticCatalog, split: LeaveLastOutSplit, index: HNSWIndex, userVectors: Matrix,
                       itemVectors: Matrix, popularity: [Int], end: Int64) throws {
        let cat = catalog.items.categoricalCodes("category")!
        guard case .timestamp(let created)? = catalog.items.columns["created_at"] else { return }
        let candidates = 100
        let featureNames = ["tower_score", "retrieval_rank", "log_popularity", "age_days", "category_affinity"]
        // Per-user category shares of the training history.
        var affinity = [[Int: Double]](repeating: [:], count: userVectors.rows)
        for pair in split.train { affinity[Int(pair.user)][Int(cat.codes[Int(pair.item)]), default: 0] += 1 }
        for u in affinity.indices {
            let total = affinity[u].values.reduce(0, +)
            if total > 0 { for (c, v) in affinity[u] { affinity[u][c] = v / total } }
        }
        func retrieve(_ u: Int32) throws -> [Neighbor] {
            let seen = split.seenBeforeTest(u)
            return try index.search(userVectors.row(Int(u)), k: candidates + seen.count, ef: max(ef, candidates + seen.count))
                .filter { !seen.contains(Int32($0.id)) }.prefix(candidates).map { $0 }
        }
        func features(_ u: Int32, _ list: [Neighbor]) -> [[Float]] {
            list.enumerated().map { (rank, n) in
                [1 - n.distance, Float(rank), Float(log(1 + Double(popularity[n.id]))),
                 Float(Double(end - created[n.id]) / 86_400), Float(affinity[Int(u)][Int(cat.codes[n.id])] ?? 0)]
            }
        }
        // Training groups: validation interactions (the item after the training history).
        var rows = [[Float]](), labels = [Float](), groups = [0]
        let users = split.validation.keys.sorted()
        let trainUsers = users.prefix(users.count / 2)
        for u in trainUsers {
            let seenTrain = split.trainItems[Int(u)]
            let list = try index.search(userVectors.row(Int(u)), k: candidates + seenTrain.count, ef: max(ef, candidates + seenTrain.count))
                .filter { !seenTrain.contains(Int32($0.id)) }.prefix(candidates).map { $0 }
            guard list.contains(where: { Int32($0.id) == split.validation[u]! }) else { continue }
            rows.append(contentsOf: features(u, list))
            labels.append(contentsOf: list.map { Int32($0.id) == split.validation[u]! ? 1 : 0 })
            groups.append(rows.count)
        }
        guard groups.count > 10 else { print("6. too few training groups for the ranker"); return }
        var p = GBDTParameters()
        p.objective = .lambdarank
        p.rounds = 100
        p.numLeaves = 15
        p.minDataInLeaf = 50
        var t = now()
        let data = LabeledData(features: try Matrix(rowArrays: rows), labels: labels, groups: groups)
        let (ranker, _) = try GBDTTrainer.train(p, train: data)
        let predictor = GBDTPredictor(ranker)
        print("6. GBDT ranker (lambdarank, \(ranker.trees.count) trees) trained on \(groups.count - 1) users' candidates in \(fmt(now() - t, 2)) s")

        /// Ranking: GBDT scores of the candidates' features, best first.
        func rankList(_ u: Int32, _ list: [Neighbor]) -> (ranked: [RankedItem], features: [[Float]]) {
            let f = features(u, list)
            var scores = [Double](repeating: 0, count: f.count)
            let flat = f.flatMap { $0 }
            flat.withUnsafeBufferPointer { xp in
                scores.withUnsafeMutableBufferPointer { predictor.predict(xp.baseAddress!, rows: f.count, stride: 5, into: $0.baseAddress!) }
            }
            let ranked = zip(list, scores).map { RankedItem(id: $0.0.id, score: $0.1, category: Int(cat.codes[$0.0.id]), createdAt: created[$0.0.id]) }
                .sorted { $0.score != $1.score ? $0.score > $1.score : $0.id < $1.id }
            return (ranked, f)
        }
        /// Re-ranking: MMR (lambda 0.7) over the top 50, mild freshness, at most 3 per category.
        func rerankList(_ ranked: [RankedItem], _ k: Int) -> [RankedItem] {
            let top = Array(ranked.prefix(50))
            var emb = Matrix(rows: top.count, columns: itemVectors.columns)
            for (r, item) in top.enumerated() { for c in 0..<itemVectors.columns { emb[r, c] = itemVectors[item.id, c] } }
            // Scores to [0, 1] so that relevance and similarity are on one scale.
            let lo = top.map(\.score).min() ?? 0, hi = top.map(\.score).max() ?? 1
            let normalized = top.map { item -> RankedItem in var x = item; x.score = hi > lo ? (item.score - lo) / (hi - lo) : 1; return x }
            var final = MMR.rerank(normalized, embeddings: emb, lambda: 0.7, k: 50)
            final = FreshnessDecay.exponential(halfLife: 60 * 86_400).apply(final, now: end, weight: 0.2)
            var rules = BusinessRules()
            rules.maxPerCategory = 3
            return rules.apply(final, k: k)
        }

        // Evaluation on the test interactions of the other users.
        var hitsRetrieval = 0, hitsRanked = 0, hitsFinal = 0, n = 0
        var divRanked = 0.0, divFinal = 0.0
        var latRank = [Double](), latRerank = [Double]()
        var shown = false
        var finals = [Int32: [Int]]()
        let heldOut = users.dropFirst(users.count / 2).filter { split.test[$0] != nil }
        for u in heldOut {
            let target = split.test[u]!
            let list = try retrieve(u)
            if list.isEmpty { continue }
            n += 1
            if list.prefix(k).contains(where: { Int32($0.id) == target }) { hitsRetrieval += 1 }
            t = now()
            let (ranked, f) = rankList(u, list)
            latRank.append(now() - t)
            if ranked.prefix(k).contains(where: { Int32($0.id) == target }) { hitsRanked += 1 }
            t = now()
            let final = rerankList(ranked, k)
            latRerank.append(now() - t)
            finals[u] = final.map(\.id)
            if final.contains(where: { Int32($0.id) == target }) { hitsFinal += 1 }
            func diversity(_ ids: [Int]) -> Double {
                var m = Matrix(rows: ids.count, columns: itemVectors.columns)
                for (r, id) in ids.enumerated() { for c in 0..<itemVectors.columns { m[r, c] = itemVectors[id, c] } }
                return MMR.diversity(m)
            }
            divRanked += diversity(ranked.prefix(k).map(\.id))
            divFinal += diversity(final.map(\.id))
            if !shown {
                shown = true
                let e = try ranker.explain(f[list.firstIndex { $0.id == ranked[0].id }!])
                let why = e.top(3).map { "\(featureNames[$0.feature]) \(String(format: "%+.3f", $0.contribution))" }.joined(separator: ", ")
                print("   user u\(u): top item i\(ranked[0].id) because \(why); final list: "
                      + final.prefix(5).map { "i\($0.id)" + ($0.reasons.isEmpty ? "" : "[\($0.reasons.joined(separator: "; "))]") }.joined(separator: " "))
            }
        }

        // The same requests through the library's Recommender: budgets, deadline, fallbacks.
        let byPopularity = (0..<popularity.count).sorted { popularity[$0] != popularity[$1] ? popularity[$0] > popularity[$1] : $0 < $1 }
        let recommender = Recommender(
            retrieve: { user, _ in
                try retrieve(Int32(user)).map { RankedItem(id: $0.id, score: Double(1 - $0.distance)) }
            },
            popular: { count in byPopularity.prefix(count).map { RankedItem(id: $0, score: Double(popularity[$0])) } },
            rank: { user, list in
                rankList(Int32(user), list.map { Neighbor(id: $0.id, distance: Float(1 - $0.score)) }).ranked
            },
            rerank: { ranked, k in rerankList(ranked, k) })
        recommender.candidates = candidates
        recommender.retrievalBudget = 0.05
        recommender.rankingBudget = 0.05
        recommender.deadline = 0.2
        var totals = [Double](), same = 0, paths = [String: Int]()
        for u in heldOut {
            let r = recommender.recommend(user: Int(u), k: k)
            totals.append(r.totalSeconds)
            paths[r.path.joined(separator: " > "), default: 0] += 1
            if r.items.map(\.id) == finals[u] { same += 1 }
        }
        totals.sort()
        latRank.sort()
        latRerank.sort()
        let nd = Double(max(1, n))
        print("7. on \(n) held-out users (test interactions), \(candidates) HNSW candidates each: "
              + "ranking p50 \(fmt(quantile(latRank, 0.5) * 1e6, 0)) us, re-ranking p50 \(fmt(quantile(latRerank, 0.5) * 1e6, 0)) us")
        printAligned(header: ["stage", "HR@\(k)", "intra-list diversity"], rows: [
            ["retrieval order (two-tower + HNSW)", fmt(Double(hitsRetrieval) / nd, 4), "-"],
            ["+ GBDT ranking", fmt(Double(hitsRanked) / nd, 4), fmt(divRanked / nd, 3)],
            ["+ MMR 0.7, freshness, <= 3 per category", fmt(Double(hitsFinal) / nd, 4), fmt(divFinal / nd, 3)],
        ])
        print("8. served through Recommender (budgets 50 ms per stage, deadline 200 ms): p50 \(fmt(quantile(totals, 0.5) * 1e6, 0)) us, "
              + "p99 \(fmt(quantile(totals, 0.99) * 1e6, 0)) us per request; \(same) of \(heldOut.count) lists equal the stage-by-stage run")
        for (path, count) in paths.sorted(by: { $0.value > $1.value }) { print("   \(count) x \(path)") }
    }
}
