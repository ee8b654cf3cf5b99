import ArgumentParser
import Foundation
import Funnel

/// The main job on built-in data, the whole funnel through the library, as a user's own
/// catalog goes through it: generate a catalog (users with tastes, items with categories,
/// tags, prices, titles and creation times, a long tail, items too new to have any
/// interactions), train the funnel (towers, HNSW, GBDT ranker on replayed requests),
/// evaluate every stage leave-last-one-out against popularity and ALS, write the bundle,
/// load it and serve requests, text searches and similar items from it.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the funnel end to end on a generated catalog (no download).")

    @Option(help: "Users in the generated catalog.") var users: Int = 4_000
    @Option(help: "Items in the generated catalog.") var items: Int = 10_000
    @Option(help: "Interactions in the generated catalog.") var interactions: Int = 200_000
    @Option(help: "Training epochs of the towers.") var epochs: Int = 4
    @Option(help: "Recommendations per user.") var k: Int = 10
    @Option(help: "Random seed.") var seed: UInt64 = 42
    @Flag(inversion: .prefixedNo, help: "logQ correction of the in-batch softmax (removes the sampling bias of in-batch negatives).") var logQ = true
    @Option(help: "Threads (default: all cores).") var threads: Int?
    @Option(help: "Keep the bundle in this new folder (default: a temporary folder, removed at the end).") var out: String?

    func validate() throws {
        guard users > 0, items > 1, interactions > 0 else { throw ValidationError("catalog sizes must be positive") }
        guard k > 0, k <= Engine.maxK, epochs > 0 else { throw ValidationError("--k and --epochs must be positive") }
        try checkThreads(threads)
    }

    func run() throws {
        let threads = threads ?? Parallel.availableCores
        var catalog = SyntheticCatalog.Config()
        catalog.users = users
        catalog.items = items
        catalog.interactions = interactions
        catalog.seed = seed
        var t = now()
        let data = try DataSource.synthetic(catalog).load()
        print("1. catalog: \(users) users, \(items) items, \(data.log.count) interactions (categories, tags, prices, titles, "
              + "creation times; a long tail; \(Int(catalog.coldItemFraction * 100))% of items too new to have any), generated in \(fmt(now() - t, 2)) s")

        var config = FunnelTrainingConfig()
        config.towers.epochs = epochs
        config.towers.batchSize = 512
        config.towers.idDropout = 0.2
        config.towers.seed = seed
        config.towers.logQCorrection = logQ
        config.towers.threads = threads
        config.towers.patience = 0
        config.indexThreads = threads
        config.ranker.rounds = 100
        config.ranker.numLeaves = 15
        config.ranker.minDataInLeaf = 50
        config.ranker.seed = seed
        config.ranker.threads = threads
        config.rankerCandidates = 100
        config.serving.candidates = 100
        config.serving.mmrPool = 50
        config.serving.freshnessHalfLifeDays = 30
        config.serving.freshnessWeight = 0.2
        let bar = ProgressBar()
        t = now()
        let funnel = try FunnelTrainer.train(data, config: config) { event in
            switch event {
            case .batches(let p): bar.update(p)
            case let .epoch(r, valid):
                bar.finish()
                print("2. towers, epoch \(r.epoch)/\(epochs): in-batch softmax loss \(fmt(Double(r.loss), 4)), "
                      + "\(fmt(r.examplesPerSecond, 0)) examples/s, validation HR@10 \(fmt(valid.hr10, 4))")
            case let .stage(name, done, total): bar.stage(name, done: done, total: total)
            case .note: break
            }
        }
        let r = funnel.report
        print("3. trained the funnel in \(fmt(now() - t, 1)) s: towers \(fmt(r.trainSeconds, 1)) s, HNSW over \(funnel.index.count) item embeddings "
              + "(items without interactions embedded from their features alone), ranker \(r.rankerTrees) trees on \(r.rankerQueries) replayed requests")
        var rows = [["two-tower retrieval", fmt(r.towers.hr10, 4), fmt(r.towers.ndcg10, 4)]]
        if let p = r.popularity { rows.append(["popularity", fmt(p.hr10, 4), fmt(p.ndcg10, 4)]) }
        if let a = r.als { rows.append(["implicit ALS (LAPACKE)", fmt(a.hr10, 4), fmt(a.ndcg10, 4)]) }
        print("4. leave-last-one-out test, full catalog, seen items excluded (\(r.towers.users) users):")
        printAligned(header: ["model", "HR@10", "NDCG@10"], rows: rows)

        t = now()
        let (stages, requests) = try FunnelEvaluation.run(funnel, k: k, lambdas: [1.0, 0.7])
        print("5. the whole funnel on the same test requests, each as of its time (\(fmt(now() - t, 1)) s):")
        var table: [(String, FunnelQuality)] = [("retrieval order (two-tower + HNSW)", stages.retrieval), ("+ GBDT ranking", stages.ranked)]
        table += stages.reranked.map { ("+ MMR \($0.lambda), freshness, <= 3 per category", $0.quality) }
        printAligned(header: ["stage (\(requests) requests)", "HR@\(k)", "NDCG@\(k)", "intra-list diversity", "coverage"], rows: table.map {
            [$0.0, fmt($0.1.hr, 4), fmt($0.1.ndcg, 4), fmt($0.1.diversity, 3), fmt($0.1.coverage, 3)]
        })

        // The bundle, loaded as a server would, answering what users ask.
        let folder = out ?? NSTemporaryDirectory() + "funnel-demo-\(UUID().uuidString)"
        defer { if out == nil { try? FileManager.default.removeItem(atPath: folder) } }
        try funnel.writeBundle(to: folder)
        let engine = try Engine(folder: folder)
        var totals = [Double](), paths = [String: Int]()
        for u in 0..<min(users, 2_000) {
            let answer = try engine.recommend(user: engine.catalog.userIDs[u], k: k)
            totals.append(answer.latencyUs)
            paths[answer.path.joined(separator: " > "), default: 0] += 1
            if u == 0 {
                print("6. bundle written and loaded (\(folder)); user \(engine.catalog.userIDs[u]): why each of the first 3 items is there")
                for item in answer.items.prefix(3) { print("     \(item.item) \(item.title ?? "") (\(item.category ?? "-"))  " + describe(item)) }
            }
        }
        totals.sort()
        print("7. served \(totals.count) users through the bundle (budgets 50 ms per stage, deadline 150 ms, TreeSHAP top-3 per item): "
              + "p50 \(fmt(quantile(totals, 0.5), 0)) us, p99 \(fmt(quantile(totals, 0.99), 0)) us per request")
        for (path, count) in paths.sorted(by: { $0.value > $1.value }) { print("   \(count) x \(path)") }
        let title = engine.catalog.titles?[7] ?? ""
        let search = try engine.search(title, k: 3)
        print("8. search '\(title)': " + search.items.map { "\($0.item) \($0.title ?? "")" }.joined(separator: "; "))
    }
}
