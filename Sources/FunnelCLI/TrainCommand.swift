import ArgumentParser
import Foundation
import Funnel

/// `funnel train`: two-tower retrieval trained on MovieLens or on CSV files described by a
/// feature schema, evaluated leave-last-one-out against popularity and implicit ALS computed
/// on the same split.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train user and item towers with in-batch softmax; evaluate against popularity and ALS.")

    @OptionGroup var source: TrainingSource
    @Option var dimension: Int = 64
    @Option var epochs: Int = 20
    @Option var batchSize: Int = 1024
    @Option var temperature: Float = 0.05
    @Option var learningRate: Float = 0.003
    @Option(help: "Learning rate of the embedding tables (default 0.05 for adagrad; lazy-adam wants about 0.003).")
    var embeddingLearningRate: Float?
    @Option(help: "Embedding optimizer: adagrad (row-wise) or lazy-adam.") var embeddingOptimizer: String = "adagrad"
    @Option var idDropout: Float = 0.1
    @Option(help: "Learning-rate schedule: constant, or cosine (linear warm-up, then cosine decay to --lr-floor x the rate).")
    var lrSchedule: String = "constant"
    @Option(help: "Cosine schedule: warm-up steps.") var warmupSteps: Int = 50
    @Option(help: "Cosine schedule: the final fraction of the learning rates.") var lrFloor: Float = 0.1
    @Flag(inversion: .prefixedNo, help: "logQ correction of the in-batch softmax.") var logQ = true
    @Option(help: "Extra negatives per batch drawn uniformly from the catalog (mixed negative sampling; 0: in-batch only).")
    var randomNegatives: Int = 0
    @Flag(help: "Skip the ALS baseline.") var noALS = false
    @Flag(help: "Tune ALS on validation over regularization {1, 10} x confidence {10, 40} (4 fits).") var alsGrid = false
    @Option var seed: UInt64 = 42
    @Option(help: "Training threads (1: deterministic).") var threads: Int = 1
    @Option(help: "Write metrics and training statistics as JSON.") var json: String?
    @Flag(help: "Also run the incremental protocol: train to the 80% time quantile, retrain incrementally on the next 10%, compare with a full retrain to 90%.")
    var incremental = false
    @Option(help: "Incremental protocol: epochs of the warm-started retrain.") var incrementalEpochs: Int = 2
    @Option(help: "Incremental protocol: replayed older interactions per new one.") var replay: Double = 1
    @Flag(help: "Also run the cold-start protocol: hold out 10% of items (seed 42) from training, embed them from features alone.")
    var coldStart = false
    @Option(help: "Write the model folder here instead of registering it (towers, HNSW index over item embeddings, history, metrics).")
    var out: String?
    @Option(help: "Registry root the model is registered in (when --out is not given).") var registry: String = "indexes"
    @Option(help: "Model name in the registry (default: movielens, or the interaction file's name).") var name: String?

    func run() throws {
        try FunnelCLI.run {
            let input = try source.load()
            let log = input.log
            let split = LeaveLastOutSplit(log)
            let (userFeatures, itemFeatures) = (input.userFeatures, input.itemFeatures)
            var p = TwoTowerParameters()
            p.dimension = dimension
            p.epochs = epochs
            p.batchSize = batchSize
            p.temperature = temperature
            p.learningRate = learningRate
            guard let optimizer = EmbeddingOptimizer(rawValue: embeddingOptimizer) else {
                throw ValidationError("--embedding-optimizer must be adagrad or lazy-adam, not '\(embeddingOptimizer)'")
            }
            p.embeddingOptimizer = optimizer
            p.embeddingLearningRate = embeddingLearningRate ?? (optimizer == .adagrad ? 0.05 : 0.003)
            p.idDropout = idDropout
            switch lrSchedule {
            case "constant": p.schedule = .constant
            case "cosine":
                guard warmupSteps >= 0, (0...1).contains(lrFloor) else {
                    throw ValidationError("--warmup-steps must be >= 0 and --lr-floor in 0...1")
                }
                p.schedule = .cosine(warmupSteps: warmupSteps, floor: lrFloor)
            default: throw ValidationError("--lr-schedule must be constant or cosine, not '\(lrSchedule)'")
            }
            p.logQCorrection = logQ
            guard randomNegatives >= 0 else { throw ValidationError("--random-negatives must be >= 0") }
            p.randomNegatives = randomNegatives
            p.seed = seed
            p.threads = max(1, threads)
            print("\(input.label): \(log.count) interactions, \(log.users.count) users, \(log.items.count) items; "
                  + "\(split.train.count) train, \(split.validation.count) validation, \(split.test.count) test")
            let model = TwoTowerModel(userFeatures: userFeatures, itemFeatures: itemFeatures, parameters: p)
            var rng = SeededGenerator(seed: seed)
            let t0 = now()
            let bar = ProgressBar()
            let reports = model.fit(split.train, rng: &rng, progress: bar.update) { r in
                bar.finish()
                let valid = try! model.evaluate(heldOut: split.validation, exclude: { split.trainItems[Int($0)] })
                print(String(format: "epoch %2d  loss %.4f  %8.0f examples/s  validation NDCG@10 %.4f  HR@10 %.4f",
                             r.epoch, r.loss, r.examplesPerSecond, valid.ndcg10, valid.hr10))
                return valid.ndcg10
            }
            let examples = reports.count * split.train.count
            let trainSeconds = now() - t0
            let towers = try model.evaluate(heldOut: split.test, exclude: split.seenBeforeTest)
            // Baselines on the same split.
            var counts = [Float](repeating: 0, count: log.items.count)
            for pair in split.train { counts[Int(pair.item)] += 1 }
            let popularity = RetrievalMetrics.evaluate(heldOut: split.test, exclude: split.seenBeforeTest, scores: { _ in counts })
            var rows = [["two-tower", "\(towers)"], ["popularity", "\(popularity)"]]
            var alsMetrics: RetrievalMetrics? = nil
            if !noALS {
                // A small grid on validation (regularization x confidence), then test with the best.
                let a0 = now()
                let grid: [(Float, Float)] = alsGrid ? [(1, 10), (10, 10), (1, 40), (10, 40)] : [(1, 10)]
                var best: (score: Double, x: Matrix, y: Matrix, reg: Float, alpha: Float)? = nil
                for (reg, alpha) in grid {
                    let (x, y) = ImplicitALS.fit(pairs: split.train, users: log.users.count, items: log.items.count,
                                                 regularization: reg, alpha: alpha)
                    let v = try RetrievalMetrics.evaluate(users: x, items: y, heldOut: split.validation,
                                                          exclude: { split.trainItems[Int($0)] })
                    if best == nil || v.ndcg10 > best!.score { best = (v.ndcg10, x, y, reg, alpha) }
                }
                let als = try RetrievalMetrics.evaluate(users: best!.x, items: best!.y, heldOut: split.test,
                                                        exclude: split.seenBeforeTest)
                alsMetrics = als
                rows.append(["ALS (64 factors, reg \(Int(best!.reg)), alpha \(Int(best!.alpha)))", "\(als)  \(fmt(now() - a0, 1)) s"])
            }
            print("test (leave-last-one-out, full corpus, seen items excluded):")
            printAligned(header: ["model", "metrics"], rows: rows)
            print("two-tower training: \(fmt(trainSeconds, 1)) s, \(fmt(Double(examples) / trainSeconds, 0)) examples/s (including per-epoch validation)")
            let incrementalReport = incremental
                ? try runIncremental(input: input, userFeatures: userFeatures, itemFeatures: itemFeatures, parameters: p) : nil
            let coldStartReport = coldStart
                ? try runColdStart(input: input, split: split, userFeatures: userFeatures, itemFeatures: itemFeatures, parameters: p) : nil

            // The model folder: towers, the item index, each user's history, the metrics;
            // registered as the next version of --name unless --out names a folder.
            let out = self.out ?? "\(registry)/.incoming-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try model.save(to: "\(out)/towers.fnl", userIDs: log.users.keys, itemIDs: log.items.keys)
            let itemVectors = model.embedAll(model.items)
            let index = try HNSWIndex(dimension: p.dimension, parameters: .init(metric: .cosine, M: 16, efConstruction: 200))
            try index.add(itemVectors)
            try index.save(to: "\(out)/items.hnsw")
            try UserHistory(split.trainItems).save(to: "\(out)/history.fnl")
            // The ranker: every user's validation interaction replayed as of its time.
            let rankerStart = now()
            let features = try input.rankingFeatures()
            var config = PipelineConfig()
            config.candidates = 200
            config.inline = true
            let retrieval = try FunnelPipeline(index: index, itemVectors: itemVectors, features: features, ranker: nil, config: config)
            let userVectors = model.embedAll(model.users)
            let queries = split.validation.keys.sorted().map {
                RankerQuery(user: Int($0), time: split.validationTime[$0]!, positives: [split.validation[$0]!], exclude: split.trainItems[Int($0)])
            }
            let (rankerData, used) = try RankerTrainingData.build(queries: queries, features: features) { q in
                try retrieval.retrieve(FunnelRequest(user: q.user, vector: Array(userVectors.row(q.user)), exclude: q.exclude, asOf: q.time),
                                       count: config.candidates)
            }
            var gp = GBDTParameters()
            gp.objective = .lambdarank
            gp.rounds = 200
            gp.numLeaves = 7
            gp.minDataInLeaf = 200
            gp.learningRate = 0.05
            gp.seed = seed
            var (ranker, _) = try GBDTTrainer.train(gp, train: rankerData)
            ranker.featureNames = features.names
            try ranker.save(to: "\(out)/ranker.gbdt")
            print("ranker: lambdarank, \(ranker.trees.count) trees over \(features.count) features, on \(used) replayed validation requests "
                  + "(\(fmt(now() - rankerStart, 1)) s)")
            print("wrote towers.fnl, items.hnsw, history.fnl, ranker.gbdt, metrics.json")
            do {
                func obj(_ m: RetrievalMetrics) -> [String: Double] { ["HR@10": m.hr10, "NDCG@10": m.ndcg10, "HR@50": m.hr50, "MRR": m.mrr] }
                var report: [String: Any] = obj(towers)
                var baselines: [String: Any] = ["popularity": obj(popularity)]
                if let alsMetrics { baselines["als"] = obj(alsMetrics) }
                report["baselines"] = baselines
                if let coldStartReport { report["cold_start"] = coldStartReport }
                if let incrementalReport { report["incremental"] = incrementalReport }
                // Training time alone (the per-epoch validation excluded), as the peers measure it.
                let pureSeconds = reports.reduce(0.0) { $0 + Double(split.train.count) / max($1.examplesPerSecond, 1e-9) }
                report["training"] = ["wall_seconds": trainSeconds, "examples_per_second": Double(examples) / pureSeconds,
                                      "threads": p.threads, "epochs": reports.count]
                let data = try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys])
                try AtomicFile.write(Array(data) + [10], to: "\(out)/metrics.json")
                if let json { try AtomicFile.write(Array(data) + [10], to: json) }
            }
            if self.out == nil {
                let name = self.name ?? (source.movielens != nil ? "movielens"
                    : ((input.label as NSString).deletingPathExtension.isEmpty ? "model" : (input.label as NSString).deletingPathExtension))
                let v = try ModelRegistry(root: registry).register(
                    name, from: out, dataFingerprint: fingerprint(log),
                    metrics: ["HR@10": towers.hr10, "NDCG@10": towers.ndcg10, "HR@50": towers.hr50, "MRR": towers.mrr])
                print("registered \(name) v\(v.version) (staging) in \(registry)/\(v.path); "
                      + "serve it with `funnel registry promote \(name) \(v.version)`")
            } else {
                print("model folder: \(out)/")
            }
        }
    }

    /// PROTOCOLS.md section 2, cold start: 10% of items (seed 42) never seen in training;
    /// every interaction with them is ranked among the cold items only, by the towers
    /// (items embedded without their id), by a genre-profile content baseline, and at random.
    /// The features of PROTOCOLS.md section 2: user id, age, gender, occupation; item id,
    /// genres, release-year bucket.
    static func movieLensFeatures(_ ml: MovieLens) throws -> (EntityFeatures, EntityFeatures) {
        let users = try EntityFeatures.build(count: ml.users.count, table: ml.users, kinds: [
            ("user_id", .id), ("age", .numericBuckets(column: "age", buckets: 8)),
            ("gender", .categorical(column: "gender")), ("occupation", .categorical(column: "occupation")),
        ])
        let items = try EntityFeatures.build(count: ml.items.count, table: ml.items, kinds: [
            ("item_id", .id), ("genres", .multiCategorical(column: "genres")),
            ("year", .numericBuckets(column: "year", buckets: 10)),
        ])
        return (users, items)
    }

    /// The ranking features of MovieLens: genres as categories, release dates as ages,
    /// ratings as weights, from the whole log (requests replayed as of their time see only
    /// their past).
    static func movieLensRankingFeatures(_ ml: MovieLens) throws -> RankingFeatures {
        let attributes = try ItemAttributes(table: ml.items, category: "genres", createdAt: "release_date")
        return try RankingFeatures(items: attributes, statistics: InteractionStatistics(log: ml.interactions))
    }

    /// PROTOCOLS.md section 2, incremental retraining. Each user's first interaction after
    /// the 90% time quantile is held out and ranked among all items, leaving out what the
    /// user touched before it.
    func runIncremental(input: TrainingData, userFeatures: EntityFeatures, itemFeatures: EntityFeatures,
                        parameters: TwoTowerParameters) throws -> [String: Any] {
        let log = input.log
        let times = log.timestamps.sorted()
        let q80 = times[times.count * 8 / 10], q90 = times[times.count * 9 / 10]
        var old = [(user: Int32, item: Int32)](), new = [(user: Int32, item: Int32)]()
        // Every interaction after the 90% quantile is a held-out target, ranked among all items
        // minus what its user touched before it (earlier held-out ones included).
        var seen = [Set<Int32>](repeating: [], count: log.users.count)
        var targets = [(user: Int32, item: Int32, exclude: Set<Int32>)]()
        for n in log.chronologicalOrder() {
            let pair = (user: log.userIndex[n], item: log.itemIndex[n]), t = log.timestamps[n]
            if t < q80 { old.append(pair) } else if t < q90 { new.append(pair) } else {
                targets.append((pair.user, pair.item, seen[Int(pair.user)]))
            }
            seen[Int(pair.user)].insert(pair.item)
        }
        let heldOutUsers = Set(targets.map(\.user)).count
        func hr10(_ model: TwoTowerModel) throws -> (hr10: Double, ndcg10: Double) {
            let scores = try Matrix.multiply(model.embedAll(model.users), model.embedAll(model.items), transposeB: true)
            var hits = 0.0, dcg = 0.0
            for (u, item, exclude) in targets {
                let row = scores.row(Int(u)), s = row[Int(item)]
                var rank = 0  // ties count against
                for (j, v) in row.enumerated() where j != Int(item) && v >= s && !exclude.contains(Int32(j)) { rank += 1 }
                if rank < 10 { hits += 1; dcg += 1 / log2(Double(rank) + 2) }
            }
            return (hits / Double(max(1, targets.count)), dcg / Double(max(1, targets.count)))
        }
        var p = parameters
        p.patience = 0
        // Base model: everything before the 80% quantile.
        let model = TwoTowerModel(userFeatures: userFeatures, itemFeatures: itemFeatures, parameters: p)
        var rng = SeededGenerator(seed: parameters.seed)
        model.fit(old, rng: &rng)
        let before = try hr10(model)
        // Incremental: the new 10% plus a replay sample of older interactions (--replay per new one).
        var replayed = old
        replayed.shuffle(using: &rng)
        let update = new + replayed.prefix(Int(Double(new.count) * replay))
        let inc0 = now()
        var incParams = p
        incParams.epochs = incrementalEpochs
        let warm = model.continuing(with: incParams)
        warm.fit(update, rng: &rng)
        let incSeconds = now() - inc0
        let incremental = try hr10(warm)
        // Full retrain from scratch on everything before the 90% quantile.
        let full0 = now()
        let full = TwoTowerModel(userFeatures: userFeatures, itemFeatures: itemFeatures, parameters: p)
        var rng2 = SeededGenerator(seed: parameters.seed)
        full.fit(old + new, rng: &rng2)
        let fullSeconds = now() - full0
        let fullMetrics = try hr10(full)
        print("incremental protocol: \(old.count) interactions before the 80% quantile, \(new.count) up to 90%, "
              + "\(targets.count) held-out interactions of \(heldOutUsers) users after it")
        printAligned(header: ["model", "HR@10", "NDCG@10", "train s"], rows: [
            ["trained to 80% (no update)", fmt(before.hr10, 4), fmt(before.ndcg10, 4), "-"],
            ["incremental retrain (new 10% + \(fmt(replay, 1))x replay, \(incrementalEpochs) epochs)", fmt(incremental.hr10, 4), fmt(incremental.ndcg10, 4), fmt(incSeconds, 1)],
            ["full retrain to 90%", fmt(fullMetrics.hr10, 4), fmt(fullMetrics.ndcg10, 4), fmt(fullSeconds, 1)],
        ])
        print("incremental reaches \(fmt(incremental.hr10 / max(fullMetrics.hr10, 1e-12) * 100, 1))% of the full retrain's HR@10 "
              + "in \(fmt(incSeconds / fullSeconds * 100, 1))% of its wall time")
        return ["held_out": targets.count, "before": ["HR@10": before.hr10, "NDCG@10": before.ndcg10],
                "incremental": ["HR@10": incremental.hr10, "NDCG@10": incremental.ndcg10, "seconds": incSeconds],
                "full_retrain": ["HR@10": fullMetrics.hr10, "NDCG@10": fullMetrics.ndcg10, "seconds": fullSeconds]]
    }

    func runColdStart(input: TrainingData, split: LeaveLastOutSplit, userFeatures: EntityFeatures,
                      itemFeatures: EntityFeatures, parameters: TwoTowerParameters) throws -> [String: Any] {
        let itemCount = input.log.items.count
        var shuffled = Array(0..<itemCount)
        var g = SeededGenerator(seed: 42)
        shuffled.shuffle(using: &g)
        let cold = Set(shuffled.prefix(itemCount / 10).map { Int32($0) })
        let coldList = cold.sorted()
        let train = split.train.filter { !cold.contains($0.item) }
        var p = parameters
        p.idDropout = max(p.idDropout, 0.3)
        p.epochs = min(p.epochs, 10)
        p.patience = 0
        let model = TwoTowerModel(userFeatures: userFeatures, itemFeatures: itemFeatures, parameters: p)
        var rng = SeededGenerator(seed: parameters.seed)
        model.fit(train, rng: &rng)
        let u = model.embedAll(model.users)
        let v = model.embedAll(model.items, withoutID: true)
        // Category profiles (genres on MovieLens): a user's summed category indicators over
        // training items; an item's category indicator. Without a category column, no baseline.
        let categories = input.itemCategories()
        let nc = categories?.count ?? 0
        func genres(_ i: Int) -> [Float] {
            var x = [Float](repeating: 0, count: nc)
            for c in categories?.lists[i] ?? [] { x[Int(c)] = 1 }
            return x
        }
        var profile = [[Float]](repeating: [Float](repeating: 0, count: nc), count: input.log.users.count)
        for pair in train {
            let gi = genres(Int(pair.item))
            for j in 0..<nc { profile[Int(pair.user)][j] += gi[j] }
        }
        var towerHits = 0, genreHits = 0, total = 0
        let log = input.log
        for n in 0..<log.count where cold.contains(log.itemIndex[n]) {
            let user = Int(log.userIndex[n]), target = log.itemIndex[n]
            let ur = u.row(user)
            let ts = Distance.dot(ur, v.row(Int(target)))
            let gs = nc > 0 ? Distance.cosineSimilarity(profile[user], genres(Int(target))) : 0
            var towerRank = 0, genreRank = 0
            for c in coldList where c != target {
                if Distance.dot(ur, v.row(Int(c))) >= ts { towerRank += 1 }
                if nc > 0 && Distance.cosineSimilarity(profile[user], genres(Int(c))) >= gs { genreRank += 1 }
            }
            total += 1
            if towerRank < 10 { towerHits += 1 }
            if genreRank < 10 { genreHits += 1 }
        }
        let n = Double(max(1, total))
        print("cold start: \(cold.count) items held out of training, \(total) interactions on them, ranked among the cold items:")
        printAligned(header: ["method", "HR@10"], rows: [
            ["two-tower, items from features alone", fmt(Double(towerHits) / n, 4)],
            ["\(input.category ?? "category")-profile content baseline (ties count against)", nc > 0 ? fmt(Double(genreHits) / n, 4) : "n/a (no category column)"],
            ["random", fmt(10 / Double(cold.count), 4)],
        ])
        var out: [String: Any] = ["items": cold.count, "interactions": total, "HR@10": Double(towerHits) / n, "random_HR@10": 10 / Double(cold.count)]
        if nc > 0 { out["category_profile_HR@10"] = Double(genreHits) / n }
        return out
    }
}
