import ArgumentParser
import Foundation
import Funnel

/// `funnel train`: the whole funnel on any data source (towers, index, ranker), evaluated
/// leave-last-one-out against popularity and implicit ALS on the same split, written as a
/// model bundle and registered.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train the funnel (towers, HNSW, GBDT ranker) on a catalog; evaluate against popularity and ALS; register the bundle.")

    @OptionGroup var source: TrainingSource
    @Option var dimension: Int = 64
    @Option var epochs: Int = 20
    @Option var batchSize: Int = 1024
    @Option(help: "Softmax temperature (default: searched over 0.05 and 0.1; 0.05 with --no-tune).") var temperature: Float?
    @Option var learningRate: Float = 0.003
    @Option(help: "Learning rate of the embedding tables (default 0.05 for adagrad; lazy-adam wants about 0.003). Given with the optimizer or alone, it fixes that axis of the search.")
    var embeddingLearningRate: Float?
    @Option(help: "Embedding optimizer: adagrad (row-wise) or lazy-adam (default: searched over adagrad 0.05, adagrad 0.02, lazy-adam 0.003; adagrad with --no-tune).")
    var embeddingOptimizer: String?
    @Option(help: "Probability of hiding an id while training (default: searched over 0.1 and 0; 0.1 with --no-tune).") var idDropout: Float?
    @Option(help: "Width of the id embeddings (default: searched over the fourth-root rule's and 64; the rule's with --no-tune).")
    var idWidth: Int?
    @Flag(help: "Train one configuration instead of searching id dropout, id width, the embedding optimizer and rate, and the temperature on validation.")
    var noTune = false
    @Option(help: "The search starts no trial after this many seconds.") var tuneBudget: Double = 900
    @Option(help: "What picks epochs and settings on validation: ndcg (the whole ranking; less noisy on few users) or ndcg@10.")
    var selection: String = "ndcg"
    @Option(help: "Learning-rate schedule: constant, or cosine (linear warm-up, then cosine decay to --lr-floor x the rate).")
    var lrSchedule: String = "constant"
    @Option(help: "Cosine schedule: warm-up steps.") var warmupSteps: Int = 50
    @Option(help: "Cosine schedule: the final fraction of the learning rates.") var lrFloor: Float = 0.1
    @Flag(inversion: .prefixedNo, help: "logQ correction of the in-batch softmax.") var logQ = true
    @Option(help: "logQ's item probabilities: counts (the training pairs' item shares) or streaming (Yi et al.'s estimate).")
    var logQEstimate: String = "counts"
    @Option(help: "Folder for the towers' checkpoint: written after every epoch, resumed from when the same command is run again (after a crash or kill), removed when training ends.")
    var checkpoint: String?
    @Option(help: "Stop when validation NDCG@10 has not improved for this many epochs (0: run every epoch; the best epoch is kept either way).")
    var patience: Int = 3
    @Option(help: "Extra negatives per batch drawn uniformly from the catalog (mixed negative sampling; 0: in-batch only).")
    var randomNegatives: Int = 0
    @Flag(help: "Skip the ALS baseline.") var noALS = false
    @Flag(help: "Tune ALS on validation over regularization {1, 10} x confidence {10, 40} (4 fits).") var alsGrid = false
    @Flag(help: "Skip the GBDT ranker (serve retrieval order).") var noRanker = false
    @Option(help: "Ranker: boosting rounds.") var rounds: Int = 200
    @Option(help: "Ranker: leaves per tree.") var numLeaves: Int = 7
    @Option(help: "Ranker: also replay each user's last N training interactions as requests (towers trained without them).")
    var rankerHistory: Int = 0
    @Option(help: "Index storage: none (float), fp16 or int8.") var quantization: String = "none"
    @Option var seed: UInt64 = 42
    @Option(help: "Training threads (1: deterministic).") var threads: Int = 1
    @Option(help: "Write metrics and training statistics as JSON.") var json: String?
    @Flag(help: "Also run the incremental protocol: train to the 80% time quantile, retrain incrementally on the next 10%, compare with a full retrain to 90%.")
    var incremental = false
    @Option(help: "Incremental protocol: epochs of the warm-started retrain.") var incrementalEpochs: Int = 2
    @Option(help: "Incremental protocol: replayed older interactions per new one.") var replay: Double = 1
    @Flag(help: "Also run the cold-start protocol: hold out 10% of items (seed 42) from training, embed them from features alone.")
    var coldStart = false
    @Option(help: "Write the bundle to this new folder instead of registering it.") var out: String?
    @Option(help: "Registry root the bundle is registered in (when --out is not given).") var registry: String = "indexes"
    @Option(help: "Model name in the registry (default: movielens, or the interaction file's name).") var name: String?

    func configuration() throws -> FunnelTrainingConfig {
        var c = FunnelTrainingConfig()
        var p = TwoTowerParameters()
        guard dimension >= 1, dimension <= 4096 else { throw ValidationError("--dimension must be in 1...4096") }
        guard epochs >= 1, batchSize >= 1 else { throw ValidationError("--epochs and --batch-size must be at least 1") }
        try checkThreads(threads)
        guard temperature.map({ $0 > 0 && $0.isFinite }) ?? true, learningRate > 0, learningRate.isFinite else {
            throw ValidationError("--temperature and --learning-rate must be positive and finite")
        }
        if let embeddingLearningRate, !(embeddingLearningRate > 0 && embeddingLearningRate.isFinite) {
            throw ValidationError("--embedding-learning-rate must be positive and finite")
        }
        guard tuneBudget > 0, tuneBudget.isFinite else { throw ValidationError("--tune-budget must be a positive number of seconds") }
        p.dimension = dimension
        p.epochs = epochs
        p.batchSize = batchSize
        if let temperature { p.temperature = temperature }
        p.learningRate = learningRate
        var optimizer: EmbeddingOptimizer? = nil
        if let embeddingOptimizer {
            guard let o = EmbeddingOptimizer(rawValue: embeddingOptimizer) else {
                throw ValidationError("--embedding-optimizer must be adagrad or lazy-adam, not '\(embeddingOptimizer)'")
            }
            optimizer = o
        }
        p.embeddingOptimizer = optimizer ?? .adagrad
        p.embeddingLearningRate = embeddingLearningRate ?? (p.embeddingOptimizer == .adagrad ? 0.05 : 0.003)
        if let idDropout {
            guard (0..<1).contains(idDropout) else { throw ValidationError("--id-dropout must be in [0, 1)") }
            p.idDropout = idDropout
        }
        guard let metric = ValidationMetric(rawValue: selection) else {
            throw ValidationError("--selection must be ndcg or ndcg@10, not '\(selection)'")
        }
        c.selection = metric
        if let idWidth {
            guard (1...4096).contains(idWidth) else { throw ValidationError("--id-width must be in 1...4096") }
            p.idWidth = idWidth
        }
        if !noTune {
            // A setting given on the command line is fixed; the others are searched.
            var t = TowerTuning()
            if let idWidth { t.idWidth = [idWidth] }
            t.budgetSeconds = tuneBudget
            if let temperature { t.temperature = [temperature] }
            if let idDropout { t.idDropout = [idDropout] }
            if optimizer != nil || embeddingLearningRate != nil {
                t.embedding = [.init(p.embeddingOptimizer, p.embeddingLearningRate)]
            }
            c.tuning = t
        }
        switch lrSchedule {
        case "constant": p.schedule = .constant
        case "cosine":
            guard warmupSteps >= 0, (0...1).contains(lrFloor) else { throw ValidationError("--warmup-steps must be >= 0 and --lr-floor in 0...1") }
            p.schedule = .cosine(warmupSteps: warmupSteps, floor: lrFloor)
        default: throw ValidationError("--lr-schedule must be constant or cosine, not '\(lrSchedule)'")
        }
        p.logQCorrection = logQ
        guard let estimate = LogQEstimate(rawValue: logQEstimate) else {
            throw ValidationError("--logq-estimate must be counts or streaming, not '\(logQEstimate)'")
        }
        p.logQEstimate = estimate
        guard patience >= 0 else { throw ValidationError("--patience must be >= 0") }
        p.patience = patience
        guard randomNegatives >= 0 else { throw ValidationError("--random-negatives must be >= 0") }
        p.randomNegatives = randomNegatives
        p.seed = seed
        p.threads = threads
        c.towers = p
        guard let q = HNSWIndex.Quantization(rawValue: quantization) else {
            throw ValidationError("--quantization must be none, fp16 or int8, not '\(quantization)'")
        }
        c.index.quantization = q
        c.indexThreads = threads
        c.trainRanker = !noRanker
        guard rounds >= 1, numLeaves >= 2, rankerHistory >= 0 else { throw ValidationError("--rounds >= 1, --num-leaves >= 2, --ranker-history >= 0") }
        c.ranker.rounds = rounds
        c.ranker.numLeaves = numLeaves
        c.ranker.seed = seed
        c.rankerHistory = rankerHistory
        c.checkpoint = checkpoint
        c.baselines = !noALS
        c.alsGrid = alsGrid ? [(1, 10), (10, 10), (1, 40), (10, 40)] : [(1, 10)]
        return c
    }

    func run() throws {
        var config = try configuration()
        // Under mpirun the towers train data-parallel: every rank loads the same data and
        // fits its share in lockstep; rank 0 goes on to the index, ranker and bundle.
        let comm = try defaultCommunicator()
        config.communicator = comm
        if comm.size > 1 && config.tuning != nil {
            if comm.isRoot { print("under mpirun the towers train with one setting: the validation search is skipped (as with --no-tune)") }
            config.tuning = nil
        }
        if comm.isRoot { try checkDestination(out: out, registry: registry, name: name) }
        let data = try source.load()
        guard comm.isRoot else {
            try FunnelTrainer.trainTowersAsWorker(data, config: config)
            return
        }
        let bar = ProgressBar()
        let funnel = try FunnelTrainer.train(data, config: config, progress: { event in
            switch event {
            case .note(let s): bar.finish(); print(s)
            case .batches(let p): bar.update(p)
            case let .epoch(r, valid):
                bar.finish()
                print(String(format: "epoch %2d  loss %.4f  %8.0f examples/s  validation NDCG@10 %.4f  HR@10 %.4f  NDCG %.4f",
                             r.epoch, r.loss, r.examplesPerSecond, valid.ndcg10, valid.hr10, valid.ndcg))
            case let .stage(name, done, total): bar.stage(name, done: done, total: total)
            }
        })
        let r = funnel.report
        if !r.tuning.isEmpty {
            print("towers' validation search (chosen by validation \(config.selection.label); each trial early-stopped on it, its best epoch kept):")
            printAligned(header: ["id dropout", "id width", "embedding optimizer", "temperature", "valid NDCG", "valid NDCG@10", "valid HR@10", "best epoch", "s", ""],
                         rows: r.tuning.map { t in
                [fmt(Double(t.idDropout), 2), t.idWidth.map(String.init) ?? "rule", t.embedding.description, fmt(Double(t.temperature), 2), fmt(t.validation.ndcg, 4), fmt(t.validation.ndcg10, 4),
                 fmt(t.validation.hr10, 4), "\(t.bestEpoch)/\(t.epochs)", fmt(t.seconds, 1), t.chosen ? "chosen" : ""]
            })
        }
        var rows = [["two-tower", "\(r.towers)"]]
        if let p = r.popularity { rows.append(["popularity", "\(p)"]) }
        if let als = r.als, let s = r.alsSetting {
            rows.append(["ALS (64 factors, reg \(Int(s.regularization)), alpha \(Int(s.alpha)))", "\(als)  \(fmt(r.alsSeconds, 1)) s"])
        }
        print("test (leave-last-one-out, full corpus, seen items excluded):")
        printAligned(header: ["model", "metrics"], rows: rows)
        print("two-tower training: \(fmt(r.trainSeconds, 1)) s, \(fmt(r.examplesPerSecond, 0)) examples/s (per-epoch validation left out)")
        if incremental {
            let inc = try Protocols.incremental(data, parameters: funnel.config.towers, epochs: incrementalEpochs, replay: replay)
            print("incremental protocol: \(inc.old) interactions before the 80% quantile, \(inc.new) up to 90%, "
                  + "\(inc.heldOut) held-out interactions of \(inc.heldOutUsers) users after it")
            printAligned(header: ["model", "HR@10", "NDCG@10", "train s"], rows: [
                ["trained to 80% (no update)", fmt(inc.before.hr10, 4), fmt(inc.before.ndcg10, 4), "-"],
                ["incremental retrain (new 10% + \(fmt(replay, 1))x replay, \(incrementalEpochs) epochs)", fmt(inc.incremental.hr10, 4),
                 fmt(inc.incremental.ndcg10, 4), fmt(inc.incrementalSeconds, 1)],
                ["full retrain to 90%", fmt(inc.full.hr10, 4), fmt(inc.full.ndcg10, 4), fmt(inc.fullSeconds, 1)],
            ])
            print("incremental reaches \(fmt(inc.incremental.hr10 / max(inc.full.hr10, 1e-12) * 100, 1))% of the full retrain's HR@10 "
                  + "in \(fmt(inc.incrementalSeconds / max(inc.fullSeconds, 1e-12) * 100, 1))% of its wall time")
            funnel.extraMetrics["incremental"] = inc.json
        }
        if coldStart {
            let cold = try Protocols.coldStart(data, split: funnel.split, parameters: funnel.config.towers)
            // The served model's own settings (its id dropout may be lower than the protocol's).
            let served = try Protocols.coldStart(data, split: funnel.split, parameters: funnel.config.towers, minimumDropout: 0)
            print("cold start: \(cold.items) items held out of training, \(cold.interactions) interactions on them, ranked among the cold items:")
            printAligned(header: ["method", "HR@10"], rows: [
                ["two-tower, items from features alone (id dropout >= 0.3)", fmt(cold.towersHR10, 4)],
                ["two-tower with the served settings (id dropout \(funnel.config.towers.idDropout))", fmt(served.towersHR10, 4)],
                ["\(data.category ?? "category")-profile content baseline (ties count against)",
                 cold.categoryProfileHR10.map { fmt($0, 4) } ?? "n/a (no category column)"],
                ["random", fmt(cold.randomHR10, 4)],
            ])
            var coldJSON = cold.json
            coldJSON["served_settings_HR@10"] = served.towersHR10
            funnel.extraMetrics["cold_start"] = coldJSON
        }
        if let json {
            var report = r.json(threads: config.towers.threads)
            for (k, v) in funnel.extraMetrics { report[k] = v }
            let bytes = try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys])
            try AtomicFile.write(Array(bytes) + [10], to: json)
        }
        if let out {
            try funnel.writeBundle(to: out)
            print("bundle: \(out)/")
        } else {
            let name = self.name ?? Self.defaultName(data.label)
            let v = try funnel.register(in: registry, name: name)
            print("registered \(name) v\(v.version) (staging) in \(registry)/\(v.path); "
                  + "serve it with `funnel registry promote \(name) \(v.version) --registry \(registry)`")
        }
    }

    /// "ml-100k" -> "movielens"; "ratings.csv" -> "ratings".
    static func defaultName(_ label: String) -> String {
        if label == "ml-100k" { return "movielens" }
        let stem = (label as NSString).deletingPathExtension
        let cleaned = String(stem.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "-" })
        return cleaned.isEmpty ? "model" : cleaned
    }
}
