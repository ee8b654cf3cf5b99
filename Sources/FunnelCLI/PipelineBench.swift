import ArgumentParser
import Foundation
import Funnel

/// `funnel pipeline-bench`: PROTOCOLS.md section 4. A generated catalog, towers trained on
/// it, an HNSW index over the item embeddings, a 200-tree lambdarank GBDT on replayed
/// requests; then 10,000 requests, one at a time on one thread: retrieve 500 candidates
/// (ef 128) -> rank them -> MMR 0.7 + freshness + at most 3 per category -> top 20.
/// Reports p50 / p99 per stage and in total. `--export DIR` writes everything a peer
/// pipeline needs to run the same requests (tools/peer-pipeline).
struct PipelineBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline-bench",
        abstract: "Latency of the whole funnel per stage (PROTOCOLS.md section 4) on a generated catalog.")

    @Option(help: "Items in the generated catalog.") var items: Int = 100_000
    @Option(help: "Users in the generated catalog.") var users: Int = 20_000
    @Option(help: "Interactions in the generated catalog.") var interactions: Int = 1_000_000
    @Option(help: "Requests measured (users taken round-robin).") var requests: Int = 10_000
    @Option(help: "Candidates retrieved per request.") var candidates: Int = 500
    @Option(help: "HNSW beam width (raised to the number of items asked for).") var ef: Int = 128
    @Option(help: "GBDT boosting rounds (trees).") var rounds: Int = 200
    @Option(name: .customLong("trees"), help: .hidden) var treesAlias: Int?
    var trees: Int { treesAlias ?? rounds }
    @Option(help: "Items returned per request.") var k: Int = 20
    @Option(help: "MMR lambda.") var lambda: Double = 0.7
    @Option(help: "MMR re-orders the ranker's top N.") var mmrPool: Int = 100
    @Option(help: "Tower training epochs.") var epochs: Int = 1
    @Option(help: "HNSW storage: fp16 (half precision: half the bytes of float, the same candidate recall), none (float) or int8 (traversal on codes, final candidates re-scored in float).")
    var quantization: String = "fp16"
    @Option(help: "Threads for building (generation, training, index); requests always run on one thread.") var threads: Int?

    func validate() throws {
        try checkThreads(threads)
        try checkThreads(concurrent, flag: "--concurrent")
    }
    @Flag(help: "Run the stages on the calling thread (no budget hand-off) instead of serving with budgets.") var inline = false
    @Option(help: "Write the data, the ranker's training set and the requests for tools/peer-pipeline here.") var export: String?
    @Option(help: "Write the latencies as JSON.") var json: String?
    @Option(help: "Also measure throughput with this many threads issuing requests at once (in-process capacity).") var concurrent: Int?
    @Option(help: "Also write the trained funnel as a bundle folder here (what `funnel serve` serves; tools/serve-bench).") var bundle: String?
    @Option(help: "Measure this bundle folder's engine in-process instead of training a funnel (the yardstick of tools/serve-bench).")
    var model: String?
    @Option(help: "With --model: the requests' user ids, one per line (default: the bundle's first --requests users).")
    var usersFile: String?
    @Flag(help: "Also time the parts of the stages (retrieval, features, GBDT scoring; re-ranking with parts switched off).")
    var breakdown = false
    @Option var seed: UInt64 = 42

    func run() throws {
        if let model { return try measure(bundle: model) }
        try FunnelCLI.run {
            let threads = threads ?? Parallel.availableCores
            guard let q = HNSWIndex.Quantization(rawValue: quantization) else {
                throw ValidationError("--quantization must be one of \(HNSWIndex.Quantization.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            var t = now()
            var c = SyntheticCatalog.Config()
            c.items = items
            c.users = users
            c.interactions = interactions
            c.seed = seed
            let data = try DataSource.synthetic(c).load()
            print("catalog: \(items) items, \(users) users, \(data.log.count) interactions (\(fmt(now() - t, 1)) s)")

            // The funnel of PROTOCOLS.md section 4, trained as `funnel train` trains any catalog.
            var config = FunnelTrainingConfig()
            config.towers.epochs = epochs
            config.towers.batchSize = 1024
            config.towers.idDropout = 0.2
            config.towers.seed = seed
            config.towers.threads = threads
            config.towers.patience = 0
            config.index = .init(metric: .cosine, M: 16, efConstruction: 200, quantization: q)
            config.indexThreads = threads
            config.ranker.rounds = trees
            config.ranker.numLeaves = 31
            config.ranker.minDataInLeaf = 50
            config.ranker.learningRate = 0.05
            config.ranker.threads = threads
            config.rankerCandidates = candidates
            config.rankerRequests = 5_000
            config.keepRankerData = export != nil
            config.baselines = false
            config.maxEvaluationUsers = 2_000
            config.serving.candidates = candidates
            config.serving.ef = ef
            config.serving.mmrLambda = lambda
            config.serving.mmrPool = mmrPool
            config.serving.freshnessHalfLifeDays = 30
            config.serving.freshnessWeight = 0.2
            config.serving.retrievalBudgetMs = 500
            config.serving.rankingBudgetMs = 500
            config.serving.deadlineMs = 1_500
            config.serving.explanations = 0  // PROTOCOLS.md section 4 times the funnel without TreeSHAP
            t = now()
            let funnel = try FunnelTrainer.train(data, config: config) { if case .note(let s) = $0 { print(s) } }
            guard let ranker = funnel.ranker else { throw ValidationError("too few replayed requests held their target among the candidates") }
            print("trained: towers \(epochs) epoch(s) in \(fmt(funnel.report.trainSeconds, 1)) s, HNSW (M 16, efConstruction 200, \(quantization)), "
                  + "ranker \(ranker.trees.count) trees on \(funnel.report.rankerQueries) replayed requests (\(fmt(now() - t, 1)) s in all)")
            let pipeline = try funnel.pipeline(withRanker: true, inline: inline)
            let config_ = pipeline.config
            let features = funnel.features, statistics = features.statistics, end = features.now
            let userVectors = funnel.userVectors, itemVectors = funnel.itemVectors

            // The requests: users round-robin, everything they have seen excluded, served now.
            let requestUsers = (0..<requests).map { $0 % users }
            let excludes = requestUsers.map { Set(statistics.history($0, before: end &+ 1)) }
            if let bundle {
                try funnel.writeBundle(to: bundle)
                print("wrote the bundle to \(bundle)/")
            }
            if let export {
                try exportPeerData(to: export, features: features, itemVectors: itemVectors,
                                   userVectors: userVectors, requestUsers: requestUsers, userIDs: funnel.catalog.userIDs, ranker: funnel.rankerData!, config: config_)
                print("wrote the peer's data to \(export)/")
            }
            if breakdown {
                let predictor = GBDTPredictor(ranker)
                var fx = [Float](), sc = [Double](repeating: 0, count: candidates)
                var tf = 0.0, tp = 0.0, tr = 0.0
                for n in 0..<min(500, requests) {
                    let u = requestUsers[n]
                    let rq = FunnelRequest(user: u, vector: Array(userVectors.row(u)), exclude: excludes[n])
                    var a = now()
                    let cands = try pipeline.retrieve(rq, count: candidates)
                    tr += now() - a
                    a = now()
                    features.compute(user: u, candidates: cands, into: &fx)
                    tf += now() - a
                    a = now()
                    fx.withUnsafeBufferPointer { xp in sc.withUnsafeMutableBufferPointer { predictor.predict(xp.baseAddress!, rows: cands.count, stride: features.count, into: $0.baseAddress!) } }
                    tp += now() - a
                }
                var variants = [(String, PipelineConfig)]()
                var v = config_; variants.append(("all", v))
                v.mmrLambda = 1; variants.append(("no mmr", v))
                v.freshness = nil; variants.append(("no mmr, no freshness", v))
                v.rules = BusinessRules(); variants.append(("nothing", v))
                let rq0 = FunnelRequest(user: requestUsers[0], vector: Array(userVectors.row(requestUsers[0])), exclude: excludes[0])
                let ranked0 = try pipeline.rank(rq0, try pipeline.retrieve(rq0, count: candidates))
                for (name, cfg) in variants {
                    let a = now()
                    for _ in 0..<500 { _ = pipeline.rerank(rq0, ranked0, k: k, override: cfg) }
                    print("rerank \(name): \(fmt((now() - a) / 500 * 1e6, 1)) us")
                }
                print("breakdown per request: retrieve \(fmt(tr / 500 * 1e6, 0)) us, features \(fmt(tf / 500 * 1e6, 0)) us, predict \(fmt(tp / 500 * 1e6, 0)) us")
            }
            // Recall of the candidate lists against exact search (same exclusions), first 200 requests.
            var found = 0, wanted = 0
            for n in 0..<min(200, requests) {
                let u = requestUsers[n]
                let rq = FunnelRequest(user: u, vector: Array(userVectors.row(u)), exclude: excludes[n])
                let truth = Set(try pipeline.retrieveExact(rq, count: candidates).map(\.id))
                found += try pipeline.retrieve(rq, count: candidates).filter { truth.contains($0.id) }.count
                wanted += truth.count
            }
            let candidateRecall = Double(found) / Double(max(1, wanted))
            print("candidate recall@\(candidates) against exact search: \(fmt(candidateRecall, 4))")
            var stageTimes = [String: [Double]](), totals = [Double](), paths = [String: Int]()
            for _ in 0..<min(200, requests) {  // warm-up
                let u = requestUsers[0]
                _ = try pipeline.recommend(FunnelRequest(user: u, vector: Array(userVectors.row(u)), exclude: excludes[0]), k: k)
            }
            var checksum = 0
            for (n, u) in requestUsers.enumerated() {
                let r = try pipeline.recommend(FunnelRequest(user: u, vector: Array(userVectors.row(u)), exclude: excludes[n]), k: k)
                for (stage, s) in r.stageSeconds { stageTimes[stage, default: []].append(s) }
                totals.append(r.totalSeconds)
                paths[r.path.joined(separator: " > "), default: 0] += 1
                checksum &+= r.items.first?.id ?? 0
            }
            var concurrentRate: Double? = nil
            if let concurrent, concurrent > 1 {
                let t0 = now()
                DispatchQueue.concurrentPerform(iterations: concurrent) { w in
                    for n in stride(from: w, to: requestUsers.count, by: concurrent) {
                        let u = requestUsers[n]
                        _ = try? pipeline.recommend(FunnelRequest(user: u, vector: Array(userVectors.row(u)), exclude: excludes[n]), k: k)
                    }
                }
                concurrentRate = Double(requestUsers.count) / (now() - t0)
                print("in-process throughput, \(concurrent) threads at once: \(fmt(concurrentRate!, 0)) requests/s")
            }
            totals.sort()
            print("\(requests) requests, one at a time on one thread (\(inline ? "inline" : "served: each stage under its budget on a stage-executor thread")):")
            var rows = [[String]]()
            var out: [String: Any] = [:]
            for stage in ["retrieval", "ranking", "rerank"] {
                let s = (stageTimes[stage] ?? []).sorted()
                rows.append([stage, fmt(quantile(s, 0.5) * 1e6, 0), fmt(quantile(s, 0.99) * 1e6, 0)])
                out[stage] = ["p50_us": quantile(s, 0.5) * 1e6, "p99_us": quantile(s, 0.99) * 1e6]
            }
            rows.append(["total", fmt(quantile(totals, 0.5) * 1e6, 0), fmt(quantile(totals, 0.99) * 1e6, 0)])
            out["total"] = ["p50_us": quantile(totals, 0.5) * 1e6, "p99_us": quantile(totals, 0.99) * 1e6,
                            "mean_us": totals.reduce(0, +) / Double(max(1, totals.count)) * 1e6]
            printAligned(header: ["stage", "p50 us", "p99 us"], rows: rows)
            for (path, count) in paths.sorted(by: { $0.value > $1.value }) { print("  \(count) x \(path)") }
            if let json {
                out["config"] = ["items": items, "users": users, "requests": requests, "candidates": candidates, "ef": ef,
                                 "trees": ranker.trees.count, "features": features.count, "k": k, "mmr_lambda": lambda,
                                 "mmr_pool": mmrPool, "inline": inline, "quantization": quantization] as [String: Any]
                out["candidate_recall"] = candidateRecall
                if let concurrentRate { out["concurrent"] = ["threads": concurrent!, "requests_per_second": concurrentRate] }
                out["machine"] = MachineReport.current.json
                out["paths"] = paths
                let bytes = try JSONSerialization.data(withJSONObject: out, options: [.prettyPrinted, .sortedKeys])
                try AtomicFile.write(Array(bytes) + [10], to: json)
            }
        }
    }

    /// `--model`: the bundle's engine answering `recommend` in-process, one request at a time
    /// and from `--concurrent` threads at once (CPU seconds of the whole process per request).
    func measure(bundle folder: String) throws {
        try FunnelCLI.run {
            let engine = try Engine(folder: folder)
            var users = try usersFile.map { try String(contentsOfFile: $0, encoding: .utf8).split(separator: "\n").map(String.init) }
                ?? Array(engine.catalog.userIDs.prefix(requests))
            users = Array(users.prefix(requests))
            let c = try engine.capacity(users: users, k: k, threads: concurrent ?? Parallel.availableCores)
            print("\(c.requests) requests, one at a time: mean \(fmt(c.meanSeconds * 1e6, 0)) us, p50 \(fmt(c.p50Seconds * 1e6, 0)) us, "
                  + "p99 \(fmt(c.p99Seconds * 1e6, 0)) us (cores / mean: \(fmt(c.idealCapacity, 0)) requests/s)")
            print("\(c.threads) threads at once: \(fmt(c.concurrentRate, 0)) requests/s, \(fmt(c.cpuSecondsPerRequest * 1e6, 0)) CPU us a request "
                  + "-> capacity \(fmt(c.capacity, 0)) requests/s on \(Parallel.availableCores) cores")
            if let json {
                var out = c.json
                out["bundle"] = folder
                out["k"] = k
                out["machine"] = MachineReport.current.json
                let bytes = try JSONSerialization.data(withJSONObject: out, options: [.prettyPrinted, .sortedKeys])
                try AtomicFile.write(Array(bytes) + [10], to: json)
            }
        }
    }

    /// Everything tools/peer_pipeline.py needs, as fvecs / ivecs and one JSON of parameters:
    /// the same item vectors, the same per-item and per-request feature inputs, the same
    /// ranker training set (trained again there with LightGBM, same parameters), the same
    /// requests and exclusions.
    func exportPeerData(to dir: String, features: RankingFeatures, itemVectors: Matrix,
                        userVectors: Matrix, requestUsers: [Int], userIDs: [String], ranker data: LabeledData,
                        config: PipelineConfig) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try VectorFile.writeFvecs(itemVectors, to: "\(dir)/items.fvecs")
        var q = Matrix(rows: requestUsers.count, columns: userVectors.columns)
        for (r, u) in requestUsers.enumerated() { for c in 0..<userVectors.columns { q[r, c] = userVectors[u, c] } }
        try VectorFile.writeFvecs(q, to: "\(dir)/requests.fvecs")
        // The catalog's id of each request's user (an HTTP request names its user).
        try AtomicFile.write(Array(requestUsers.map { userIDs[$0] }.joined(separator: "\n").utf8) + [10], to: "\(dir)/request_users.txt")
        // Per item, the item-only features as they are now: log_popularity, log_recent_popularity,
        // item_age_days, item_mean_rating, price; and the primary category and creation time.
        let n = itemVectors.rows
        var itemTable = Matrix(rows: n, columns: 5)
        var dummy = [Float]()
        for i in 0..<n {
            features.compute(user: nil, candidates: [RankedItem(id: i, score: 0)], into: &dummy)
            itemTable[i, 0] = dummy[2]; itemTable[i, 1] = dummy[3]; itemTable[i, 2] = dummy[4]
            itemTable[i, 3] = dummy[7]; itemTable[i, 4] = dummy[8]
        }
        try VectorFile.writeFvecs(itemTable, to: "\(dir)/item_features.fvecs")
        let categories = (0..<n).map { Int32(features.items.primaryCategory($0) ?? -1) }
        try VectorFile.writeIvecs(categories, columns: 1, to: "\(dir)/item_category.ivecs")
        let ages = (0..<n).map { i -> Float in features.items.created(i).map { Float(features.now - $0) } ?? 0 }
        try VectorFile.writeFvecs(try Matrix(rows: n, columns: 1, storage: ages), to: "\(dir)/item_age_seconds.fvecs")
        // Per request, the user's history (repeats kept, variable length): the exclusions are
        // its distinct items; category shares and activity are computed from it there.
        try AtomicFile.write(to: "\(dir)/history.ivecs") { w in
            for u in requestUsers {
                let h = features.statistics.history(u, before: features.now &+ 1)
                try w.write(value: Int32(h.count).littleEndian)
                for i in h { try w.write(value: i.littleEndian) }
            }
        }
        try VectorFile.writeFvecs(data.features, to: "\(dir)/ranker_features.fvecs")
        try VectorFile.writeFvecs(try Matrix(rows: data.rowCount, columns: 1, storage: data.labels), to: "\(dir)/ranker_labels.fvecs")
        let sizes = zip(data.groups!.dropFirst(), data.groups!).map { Int32($0 - $1) }
        try VectorFile.writeIvecs(sizes, columns: 1, to: "\(dir)/ranker_groups.ivecs")
        let params: [String: Any] = [
            "candidates": config.candidates, "ef": config.ef, "k": k, "trees": trees, "num_leaves": 31, "min_data_in_leaf": 50,
            "learning_rate": 0.05, "mmr_lambda": config.mmrLambda, "mmr_pool": config.mmrPool,
            "freshness_half_life_seconds": 30 * 86_400, "freshness_weight": config.freshnessWeight,
            "max_per_category": config.rules.maxPerCategory ?? 0, "M": 16, "ef_construction": 200,
            "requests": requestUsers.count, "categories": features.items.categoryNames.count,
        ]
        let bytes = try JSONSerialization.data(withJSONObject: params, options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(Array(bytes) + [10], to: "\(dir)/params.json")
    }
}
