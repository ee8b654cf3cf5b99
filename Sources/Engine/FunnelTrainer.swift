import Collectives
import Datasets
import Foundation
import GBDT
import HNSW
import LinearAlgebra
import Persistence
import Registry
import Serving
import TwoTower

/// Everything that decides how a funnel is trained.
public struct FunnelTrainingConfig: Sendable {
    public var towers = TwoTowerParameters()
    /// The ranks that train the towers together (data parallelism; `defaultCommunicator()`
    /// under mpirun). Rank 0 calls `FunnelTrainer.train`, every other rank
    /// `FunnelTrainer.trainTowersAsWorker`; the stages after the towers run on rank 0.
    public var communicator: any Communicator = SingleProcess.shared
    /// A folder for the towers' checkpoint, written by rank 0 after every epoch; a run
    /// started again with it resumes after the last epoch saved (TowerCheckpoint). Nil: none.
    public var checkpoint: String? = nil
    /// The item index (cosine over unit item embeddings).
    public var index = HNSWIndex.Parameters(metric: .cosine, M: 16, efConstruction: 200)
    /// Threads for the index build.
    public var indexThreads = Parallel.availableCores
    /// Train a GBDT ranker on replayed validation requests.
    public var trainRanker = true
    public var ranker: GBDTParameters = {
        var p = GBDTParameters()
        p.objective = .lambdarank
        p.rounds = 200
        p.numLeaves = 7
        p.minDataInLeaf = 200
        p.learningRate = 0.05
        return p
    }()
    /// Candidates retrieval hands to the ranker while its training data is built.
    public var rankerCandidates = 200
    /// Also replay each user's last N training interactions as ranker requests, scored by
    /// towers trained without them (0: validation requests only).
    public var rankerHistory = 0
    /// At most this many replayed validation requests train the ranker (users taken in id
    /// order; nil: all). Bounds ranker training on large catalogs.
    public var rankerRequests: Int? = nil
    /// Keep the ranker's training data in `TrainedFunnel.rankerData` (for exports to peers).
    public var keepRankerData = false
    /// Validation (early stopping) and test metrics use at most this many users, spread
    /// evenly over the ids (a full-corpus score per user costs items x dimension).
    public var maxEvaluationUsers = 10_000
    /// Evaluate popularity and implicit ALS on the same split.
    public var baselines = true
    /// ALS settings tried on validation, the best tested: (regularization, confidence alpha).
    public var alsGrid: [(regularization: Float, alpha: Float)] = [(1, 10)]
    /// How the bundle serves.
    public var serving = ServingSettings()
    /// What the towers' early stopping and their search maximize on validation (the ALS
    /// baseline's grid is still chosen on NDCG@10, as the peers' grids are).
    public var selection = ValidationMetric.ndcg
    /// The towers' validation search (nil: train `towers` as given). `funnel train` searches
    /// by default; the chosen settings replace those of `towers` in the trained funnel's config.
    public var tuning: TowerTuning? = nil

    public init() {}

    /// The configuration as name -> value (kept in the bundle's manifest).
    public var summary: [String: String] {
        let t = towers
        return ["dimension": "\(t.dimension)", "epochs": "\(t.epochs)", "batch_size": "\(t.batchSize)",
                "temperature": "\(t.temperature)", "learning_rate": "\(t.learningRate)",
                "embedding_optimizer": t.embeddingOptimizer.rawValue, "embedding_learning_rate": "\(t.embeddingLearningRate)",
                "id_dropout": "\(t.idDropout)", "id_width": t.idWidth.map { "\($0)" } ?? "rule", "logq": "\(t.logQCorrection)", "logq_estimate": t.logQEstimate.rawValue, "random_negatives": "\(t.randomNegatives)",
                "seed": "\(t.seed)", "hnsw_m": "\(index.M)", "hnsw_ef_construction": "\(index.efConstruction)",
                "quantization": index.quantization.rawValue, "ranker_rounds": "\(ranker.rounds)", "ranker_leaves": "\(ranker.numLeaves)",
                "ranker_candidates": "\(rankerCandidates)", "ranker_history": "\(rankerHistory)"]
    }
}

/// What a trainer reports while it works. A command line draws bars from these; a library
/// user may log them or ignore them.
public enum TrainingEvent: Sendable {
    /// A line worth showing (what was loaded, what a stage did).
    case note(String)
    /// Progress of the current towers epoch.
    case batches(TrainingProgress)
    /// An epoch ended, with its validation metrics.
    case epoch(EpochReport, validation: RetrievalMetrics)
    /// A named stage advanced: `done` of `total` units.
    case stage(String, done: Int, total: Int)
}

/// What training measured.
public struct TrainingReport: Sendable {
    /// Test metrics (leave-last-one-out, full corpus, seen items excluded).
    public var towers = RetrievalMetrics()
    public var popularity: RetrievalMetrics?
    public var als: RetrievalMetrics?
    public var alsSetting: (regularization: Float, alpha: Float)?
    public var alsSeconds = 0.0
    public var trainSeconds = 0.0
    /// Training examples per second with the per-epoch validation left out.
    public var examplesPerSecond = 0.0
    public var epochs = 0
    public var rankerTrees = 0
    public var rankerQueries = 0
    public var rankerSeconds = 0.0
    /// The towers' validation search, when one ran (the chosen trial marked).
    public var tuning: [TuningTrial] = []

    /// The headline metrics a registry version carries.
    public var headline: [String: Double] {
        ["HR@10": towers.hr10, "NDCG@10": towers.ndcg10, "HR@50": towers.hr50, "MRR": towers.mrr]
    }

    /// The report as JSON-ready values (`metrics.json` of a bundle).
    public func json(threads: Int) -> [String: Any] {
        func obj(_ m: RetrievalMetrics) -> [String: Double] { ["HR@10": m.hr10, "NDCG@10": m.ndcg10, "HR@50": m.hr50, "MRR": m.mrr] }
        var out: [String: Any] = obj(towers)
        var baselines = [String: Any]()
        if let popularity { baselines["popularity"] = obj(popularity) }
        if let als { baselines["als"] = obj(als) }
        out["baselines"] = baselines
        out["training"] = ["wall_seconds": trainSeconds, "examples_per_second": examplesPerSecond, "threads": threads, "epochs": epochs]
        out["ranker"] = ["trees": rankerTrees, "queries": rankerQueries, "seconds": rankerSeconds]
        if !tuning.isEmpty { out["tuning"] = tuning.map(\.json) }
        out["machine"] = MachineReport.current.json
        return out
    }
}

/// A trained funnel, in memory: towers, item and user embeddings, the item index, the
/// ranker and the catalog, with the split it was trained and measured on.
public final class TrainedFunnel: @unchecked Sendable {
    public let data: TrainingData
    public let config: FunnelTrainingConfig
    public let split: LeaveLastOutSplit
    public let towers: TwoTowerModel
    public let userVectors: Matrix
    public let itemVectors: Matrix
    public let index: HNSWIndex
    public let ranker: GBDTModel?
    public let catalog: ItemCatalog
    public let features: RankingFeatures
    public internal(set) var report: TrainingReport
    /// Extra sections of `metrics.json` (the experiment protocols add theirs).
    public var extraMetrics: [String: Any] = [:]
    /// The ranker's lambdarank groups, when `FunnelTrainingConfig.keepRankerData` asked for them.
    public internal(set) var rankerData: LabeledData? = nil

    init(data: TrainingData, config: FunnelTrainingConfig, split: LeaveLastOutSplit, towers: TwoTowerModel, userVectors: Matrix,
         itemVectors: Matrix, index: HNSWIndex, ranker: GBDTModel?, catalog: ItemCatalog, features: RankingFeatures, report: TrainingReport) {
        self.data = data
        self.config = config
        self.split = split
        self.towers = towers
        self.userVectors = userVectors
        self.itemVectors = itemVectors
        self.index = index
        self.ranker = ranker
        self.catalog = catalog
        self.features = features
        self.report = report
    }

    /// The funnel as a pipeline (offline: stages inline, no budgets).
    public func pipeline(withRanker: Bool = true, inline: Bool = true) throws -> FunnelPipeline {
        var c = config.serving.pipelineConfig
        c.inline = inline
        return try FunnelPipeline(index: index, itemVectors: itemVectors, features: features,
                                  ranker: withRanker ? ranker : nil, config: c)
    }

    /// Writes the funnel as a bundle to `folder` (which must not exist).
    @discardableResult
    public func writeBundle(to folder: String) throws -> ModelBundle {
        var manifest = ModelBundle.Manifest(kind: .funnel, dataLabel: data.label, dataFingerprint: Fingerprint.of(data.log),
                                            schema: data.schema, serving: config.serving, parameters: config.summary,
                                            metrics: report.headline)
        manifest.parameters["threads"] = "\(config.towers.threads)"
        var files = [ModelBundle.File.towers, ModelBundle.File.index, ModelBundle.File.catalog, ModelBundle.File.metrics]
        if ranker != nil { files.append(ModelBundle.File.ranker) }
        var metrics = report.json(threads: config.towers.threads)
        for (k, v) in extraMetrics { metrics[k] = v }
        let metricsJSON = try JSONSerialization.data(withJSONObject: metrics, options: [.prettyPrinted, .sortedKeys])
        return try ModelBundle.write(to: folder, manifest: manifest, files: files) { file, path in
            switch file {
            case ModelBundle.File.towers: try towers.save(to: path, userIDs: catalog.userIDs, itemIDs: catalog.itemIDs)
            case ModelBundle.File.index: try index.save(to: path)
            case ModelBundle.File.catalog: try catalog.save(to: path)
            case ModelBundle.File.ranker: try ranker!.save(to: path)
            default: try AtomicFile.write(Array(metricsJSON) + [10], to: path)
            }
        }
    }

    /// Writes the bundle into the registry as the next version of `name` (staging).
    public func register(in root: String, name: String) throws -> ModelVersion {
        let incoming = "\(root)/.incoming-\(getpid())-\(UUID().uuidString)"
        let bundle = try writeBundle(to: incoming)
        do {
            return try ModelRegistry(root: root).register(name, from: bundle.folder, dataFingerprint: bundle.manifest.dataFingerprint,
                                                          metrics: report.headline)
        } catch {
            try? FileManager.default.removeItem(atPath: incoming)
            throw error
        }
    }
}

/// The validation score that picks epochs and settings.
public enum ValidationMetric: String, Sendable, CaseIterable {
    /// NDCG over the whole ranking. Every validation user contributes, where NDCG@10 counts
    /// only the few whose item reaches the top 10: on a few hundred users its noise is
    /// about a quarter of NDCG@10's, so epochs and settings are picked on signal, not luck.
    case ndcg
    /// NDCG@10, the headline metric itself.
    case ndcg10 = "ndcg@10"

    public func score(_ m: RetrievalMetrics) -> Double {
        switch self {
        case .ndcg: return m.ndcg
        case .ndcg10: return m.ndcg10
        }
    }

    public var label: String { self == .ndcg ? "NDCG" : "NDCG@10" }
}

extension FunnelTrainer {
    /// Towers with one set of parameters, early-stopped on `selection`: the model
    /// (with its best epoch's weights), every epoch's report, the best epoch's validation
    /// metrics and its number.
    ///
    /// With several ranks in `communicator`, each fits its share of the training pairs in
    /// lockstep (`TwoTowerModel.communicator`) and only rank 0 validates.
    static func fitTowers(_ p: TwoTowerParameters, data: TrainingData, split: LeaveLastOutSplit, validation: [Int32: Int32],
                          selection: ValidationMetric, communicator comm: any Communicator = SingleProcess.shared,
                          checkpoint: String? = nil, progress: @escaping (TrainingEvent) -> Void) throws
        -> (TwoTowerModel, [EpochReport], RetrievalMetrics, Int) {
        let model = TwoTowerModel(userFeatures: data.userFeatures, itemFeatures: data.itemFeatures, parameters: p)
        model.communicator = comm
        let saver = checkpoint.map { TowerCheckpoint(folder: $0) }
        let done = try saver?.resume(model, data: data, parameters: p) ?? 0
        if done > 0 { progress(.note("resuming the towers from the checkpoint in \(checkpoint!) after epoch \(done) of \(p.epochs)")) }
        var checkpointError: Error? = nil
        var rng = SeededGenerator(seed: p.seed &+ UInt64(comm.rank))
        var validationError: Error? = nil
        var best = RetrievalMetrics(), bestEpoch = 0, bestScore = -Double.infinity
        let pairs = comm.size > 1 ? Array(split.train[comm.share(of: split.train.count)]) : split.train
        let epochs = model.fit(pairs, rng: &rng, epochsDone: done, progress: { progress(.batches($0)) }) { r in
            guard comm.isRoot else { return nil }
            if let saver, checkpointError == nil {
                do { try saver.save(model, epoch: r.epoch, data: data, parameters: p) } catch { checkpointError = error }
            }
            do {
                let valid = try model.evaluate(heldOut: validation, exclude: { split.trainItems[Int($0)] })
                progress(.epoch(r, validation: valid))
                let score = selection.score(valid)
                if score > bestScore { bestScore = score; best = valid; bestEpoch = r.epoch }
                return score
            } catch {
                validationError = error
                return nil
            }
        }
        if let validationError { throw validationError }
        if let checkpointError { throw EngineError.invalidData("writing the towers' checkpoint failed: \(checkpointError)") }
        if comm.isRoot { saver?.remove() }
        // Without restoring, the model is the last epoch's.
        if !p.restoreBest, let last = epochs.last { bestEpoch = last.epoch }
        return (model, epochs, best, bestEpoch)
    }
}

/// Trains the whole funnel from any data source: towers on the training part of a
/// leave-last-one-out split (early-stopped on validation), item embeddings into an HNSW
/// index, a GBDT ranker on validation requests replayed as of their time, and an
/// evaluation against popularity and ALS on the same split's test part.
public enum FunnelTrainer {
    /// The part of `train` that a rank other than 0 takes in data-parallel training: the
    /// towers' fit on its share of the training pairs, in lockstep with rank 0, which goes
    /// on alone to the index, the ranker and the bundle. Every rank must load the same data
    /// (the vocabularies and the split must agree) and pass the same configuration.
    public static func trainTowersAsWorker(_ data: TrainingData, config: FunnelTrainingConfig) throws {
        let split = try checkedSplit(data, config)
        _ = try fitTowers(config.towers, data: data, split: split, validation: [:], selection: config.selection,
                          communicator: config.communicator, checkpoint: config.checkpoint, progress: { _ in })
    }

    /// The leave-last-one-out split, after the checks every rank makes alike.
    static func checkedSplit(_ data: TrainingData, _ config: FunnelTrainingConfig) throws -> LeaveLastOutSplit {
        let log = data.log
        guard log.count > 0, log.users.count > 0, log.items.count > 1 else {
            throw EngineError.invalidData("\(data.label): \(log.count) interactions over \(log.items.count) items cannot train a funnel")
        }
        let split = LeaveLastOutSplit(log)
        guard !split.validation.isEmpty else {
            throw EngineError.invalidData("\(data.label): no user has three interactions, so there is nothing to validate or test on")
        }
        if config.communicator.size > 1 {
            guard config.tuning == nil else {
                throw EngineError.invalidData("the towers' validation search runs in one process; data-parallel training takes one setting (no tuning)")
            }
            guard split.train.count >= config.communicator.size else {
                throw EngineError.invalidData("\(split.train.count) training interactions cannot be shared by \(config.communicator.size) ranks")
            }
        }
        return split
    }

    /// - Parameter progress: called on the training thread for every `TrainingEvent`.
    /// - Complexity: towers O(epochs * interactions * width), index O(items log items),
    ///   ranker O(validation users * candidates * trees).
    public static func train(_ data: TrainingData, config: FunnelTrainingConfig = FunnelTrainingConfig(),
                             progress: @escaping (TrainingEvent) -> Void = { _ in }) throws -> TrainedFunnel {
        let comm = config.communicator
        guard comm.isRoot else {
            throw EngineError.invalidData("rank \(comm.rank) trains the towers with FunnelTrainer.trainTowersAsWorker; only rank 0 calls train")
        }
        let log = data.log
        let split = try checkedSplit(data, config)
        progress(.note("\(data.label): \(log.count) interactions, \(log.users.count) users, \(log.items.count) items; "
                       + "\(split.train.count) train, \(split.validation.count) validation, \(split.test.count) test"))
        let p = config.towers
        var report = TrainingReport()
        // Users measured: all, or an even spread of them on large catalogs.
        func spread(_ heldOut: [Int32: Int32]) -> [Int32: Int32] {
            guard heldOut.count > config.maxEvaluationUsers, config.maxEvaluationUsers > 0 else { return heldOut }
            let keys = heldOut.keys.sorted(), step = Double(keys.count) / Double(config.maxEvaluationUsers)
            return Dictionary(uniqueKeysWithValues: (0..<config.maxEvaluationUsers).map { keys[Int(Double($0) * step)] }.map { ($0, heldOut[$0]!) })
        }
        let validationItems = spread(split.validationItems), testItems = spread(split.testItems)
        if testItems.count < split.test.count {
            progress(.note("validation and test metrics on \(testItems.count) of \(split.test.count) users (maxEvaluationUsers)"))
        }

        // Towers: one configuration, or the validation search.
        let t0 = Clock.now()
        var config = config
        let model: TwoTowerModel, epochs: [EpochReport]
        if let tuning = config.tuning {
            let search = try TowerSearch.run(tuning, base: p, data: data, split: split, validation: validationItems,
                                             selection: config.selection, progress: progress)
            model = search.model
            epochs = search.epochs
            config.towers = search.parameters
            report.tuning = search.trials
            report.epochs = search.trials.first(where: \.chosen)?.epochs ?? 0
        } else {
            (model, epochs, _, _) = try fitTowers(p, data: data, split: split, validation: validationItems, selection: config.selection,
                                                  communicator: comm, checkpoint: config.checkpoint, progress: progress)
            if comm.size > 1 { progress(.note("towers trained data-parallel on \(comm.size) ranks")) }
            report.epochs = epochs.count
        }
        report.trainSeconds = Clock.now() - t0
        let pure = epochs.reduce(0.0) { $0 + Double(split.train.count) / max($1.examplesPerSecond, 1e-9) }
        report.examplesPerSecond = Double(epochs.count * split.train.count) / max(pure, 1e-9)
        report.towers = try model.evaluate(heldOut: testItems, exclude: split.seenBeforeTest)
        if config.baselines {
            report.popularity = Baselines.popularity(split, items: log.items.count, test: testItems)
            let a0 = Clock.now()
            let (als, setting) = try Baselines.als(split, users: log.users.count, items: log.items.count, grid: config.alsGrid,
                                                   validation: validationItems, test: testItems)
            report.als = als
            report.alsSetting = setting
            report.alsSeconds = Clock.now() - a0
        }

        // Item embeddings -> index.
        let itemVectors = model.embedAll(model.items), userVectors = model.embedAll(model.users)
        let index = try IndexBuilding.build(itemVectors, parameters: config.index, threads: config.indexThreads, progress: progress)

        // The ranker, on requests replayed as of their time.
        let catalog = try ItemCatalog(data)
        let features = try catalog.rankingFeatures()
        var ranker: GBDTModel? = nil
        var keptRankerData: LabeledData? = nil
        if config.trainRanker {
            let r0 = Clock.now()
            let rankerUsers = config.rankerRequests.map { Array(split.validation.keys.sorted().prefix($0)) }
            var requests = RankerTraining.validationRequests(split, userVectors: userVectors, users: rankerUsers)
            var retrieval = [try RankerTraining.retrieval(index: index, itemVectors: itemVectors, features: features, config: config)]
            if config.rankerHistory > 0 {
                let (early, late) = RankerTraining.historyRequests(log, split: split, last: config.rankerHistory)
                var ep = config.towers
                ep.patience = 0
                let earlyModel = TwoTowerModel(userFeatures: data.userFeatures, itemFeatures: data.itemFeatures, parameters: ep)
                var erng = SeededGenerator(seed: ep.seed)
                earlyModel.fit(early, rng: &erng)
                let ev = earlyModel.embedAll(earlyModel.items), eu = earlyModel.embedAll(earlyModel.users)
                let earlyIndex = try IndexBuilding.build(ev, parameters: config.index, threads: config.indexThreads, progress: progress)
                retrieval.append(try RankerTraining.retrieval(index: earlyIndex, itemVectors: ev, features: features, config: config))
                requests += late.map { q in RankerTraining.Request(query: q, vector: Array(eu.row(q.user)), retrieval: 1) }
            }
            let (model, used, rankerData) = try RankerTraining.train(requests, retrieval: retrieval, features: features,
                                                         candidates: config.rankerCandidates, parameters: config.ranker, progress: progress)
            ranker = model
            keptRankerData = rankerData
            report.rankerTrees = model?.trees.count ?? 0
            report.rankerQueries = used
            report.rankerSeconds = Clock.now() - r0
            if let model {
                progress(.note("ranker: lambdarank, \(model.trees.count) trees over \(features.count) features, on \(used) replayed requests"))
            } else {
                progress(.note("ranker: too few replayed requests held their target among the candidates; serving retrieval order"))
            }
        }
        let funnel = TrainedFunnel(data: data, config: config, split: split, towers: model, userVectors: userVectors, itemVectors: itemVectors,
                                   index: index, ranker: ranker, catalog: catalog, features: features, report: report)
        if config.keepRankerData { funnel.rankerData = keptRankerData }
        return funnel
    }
}

/// The ranker's training data: requests replayed as of their time through retrieval, the
/// one implementation every workflow (train, pipeline evaluation, demo, benchmarks) uses.
public enum RankerTraining {
    /// One replayed request: the query, the user vector retrieval searches with, and which
    /// retrieval pipeline (of the list given to `train`) answers it.
    public struct Request: Sendable {
        public var query: RankerQuery
        public var vector: [Float]
        public var retrieval: Int

        public init(query: RankerQuery, vector: [Float], retrieval: Int = 0) {
            self.query = query
            self.vector = vector
            self.retrieval = retrieval
        }
    }

    /// Every user's validation interaction as a request at its time, training items excluded.
    public static func validationRequests(_ split: LeaveLastOutSplit, userVectors: Matrix, users: [Int32]? = nil) -> [Request] {
        (users ?? split.validation.keys.sorted()).compactMap { u in
            guard let held = split.validation[u] else { return nil }
            return Request(query: RankerQuery(user: Int(u), time: held.time, positives: [held.item], exclude: split.trainItems[Int(u)]),
                           vector: Array(userVectors.row(Int(u))))
        }
    }

    /// Each user's last `last` training interactions as requests at their times (each
    /// excluding what the user touched before it), and the training pairs before them.
    public static func historyRequests(_ log: InteractionLog, split: LeaveLastOutSplit, last: Int)
        -> (early: [(user: Int32, item: Int32)], late: [RankerQuery]) {
        var perUser = [[(time: Int64, item: Int32)]](repeating: [], count: log.users.count)
        for n in 0..<log.count { perUser[Int(log.userIndex[n])].append((log.timestamps[n], log.itemIndex[n])) }
        var early = [(user: Int32, item: Int32)](), late = [RankerQuery]()
        for u in 0..<log.users.count {
            let events = perUser[u].sorted { $0.time != $1.time ? $0.time < $1.time : $0.item < $1.item }
            let train = events.filter { split.trainItems[u].contains($0.item) }
            let cut = max(1, train.count - last)
            for e in train.prefix(cut) { early.append((Int32(u), e.item)) }
            for (j, e) in train.enumerated().dropFirst(cut) {
                late.append(RankerQuery(user: u, time: e.time, positives: [e.item], exclude: Set(train.prefix(j).map(\.item))))
            }
        }
        return (early, late)
    }

    /// A retrieval-only pipeline over an index (stages inline).
    public static func retrieval(index: HNSWIndex, itemVectors: Matrix, features: RankingFeatures,
                                 config: FunnelTrainingConfig) throws -> FunnelPipeline {
        var c = config.serving.pipelineConfig
        c.inline = true
        return try FunnelPipeline(index: index, itemVectors: itemVectors, features: features, ranker: nil, config: c)
    }

    /// Retrieves `candidates` for every request as of its time, labels the items the user
    /// then touched, and trains a ranker on the groups that hold a positive.
    /// - Returns: the ranker (nil when fewer than 10 requests held a positive), how many
    ///   requests it learned from, and its training data (lambdarank groups).
    public static func train(_ requests: [Request], retrieval: [FunnelPipeline], features: RankingFeatures, candidates: Int,
                             parameters: GBDTParameters,
                             progress: @escaping (TrainingEvent) -> Void = { _ in }) throws -> (model: GBDTModel?, queries: Int, data: LabeledData) {
        var position = 0  // build asks for the queries' candidates once each, in order
        let (data, used) = try RankerTrainingData.build(queries: requests.map(\.query), features: features) { q in
            let r = requests[position]
            position += 1
            if position % 256 == 0 || position == requests.count { progress(.stage("ranker requests", done: position, total: requests.count)) }
            return try retrieval[r.retrieval].retrieve(FunnelRequest(user: q.user, vector: r.vector, exclude: q.exclude, asOf: q.time),
                                                       count: candidates)
        }
        guard used >= 10 else { return (nil, used, data) }
        var (model, _) = try GBDTTrainer.train(parameters, train: data, progress: { progress(.stage("ranker rounds", done: $0, total: $1)) })
        progress(.stage("ranker rounds", done: parameters.rounds, total: parameters.rounds))
        model.featureNames = features.names
        return (model, used, data)
    }
}

/// The baselines every model is measured against, on the same split.
public enum Baselines {
    /// Items by training popularity, measured on `test` (default: every user's test item).
    public static func popularity(_ split: LeaveLastOutSplit, items: Int, test: [Int32: Int32]? = nil) -> RetrievalMetrics {
        var counts = [Float](repeating: 0, count: items)
        for pair in split.train { counts[Int(pair.item)] += 1 }
        return RetrievalMetrics.evaluate(heldOut: test ?? split.testItems, exclude: split.seenBeforeTest, scores: { _ in counts })
    }

    /// Implicit ALS (LAPACKE), each setting of `grid` fitted and scored on validation, the best tested.
    public static func als(_ split: LeaveLastOutSplit, users: Int, items: Int, grid: [(regularization: Float, alpha: Float)],
                           validation: [Int32: Int32]? = nil, test: [Int32: Int32]? = nil)
        throws -> (RetrievalMetrics, (regularization: Float, alpha: Float)) {
        var best: (score: Double, x: Matrix, y: Matrix, setting: (regularization: Float, alpha: Float))? = nil
        for setting in grid.isEmpty ? [(1, 10)] : grid {
            let (x, y) = ImplicitALS.fit(pairs: split.train, users: users, items: items,
                                         regularization: setting.regularization, alpha: setting.alpha)
            let v = try RetrievalMetrics.evaluate(users: x, items: y, heldOut: validation ?? split.validationItems, exclude: { split.trainItems[Int($0)] })
            if best == nil || v.ndcg10 > best!.score { best = (v.ndcg10, x, y, setting) }
        }
        let b = best!
        return (try RetrievalMetrics.evaluate(users: b.x, items: b.y, heldOut: test ?? split.testItems, exclude: split.seenBeforeTest), b.setting)
    }
}

/// HNSW builds that report their progress.
public enum IndexBuilding {
    /// An index over `vectors` (ids 0..<rows), built in slices of about 5% so that a
    /// progress bar can move; each slice is inserted on `threads` threads.
    /// - Complexity: O(n log n * efConstruction * M * d).
    public static func build(_ vectors: Matrix, parameters: HNSWIndex.Parameters, threads: Int,
                             progress: (TrainingEvent) -> Void = { _ in }) throws -> HNSWIndex {
        let index = try HNSWIndex(dimension: vectors.columns, parameters: parameters)
        index.reserve(vectors.rows)
        let n = vectors.rows, d = vectors.columns
        // int8 codes learn their ranges from the first vectors added: give them all at once.
        let slice = parameters.quantization == .int8 ? max(1, n) : max(1_000, n / 20)
        var start = 0
        progress(.stage("index", done: 0, total: n))
        while start < n {
            let end = min(n, start + slice)
            let part = try Matrix(rows: end - start, columns: d, storage: Array(vectors.storage[(start * d)..<(end * d)]))
            try index.add(part, ids: (UInt64(start)..<UInt64(end)).map { $0 }, threads: max(1, threads))
            start = end
            progress(.stage("index", done: end, total: n))
        }
        return index
    }
}

extension IndexBuilding {
    /// An index over the vectors of a file (ids 0..<rows), read `slice` rows at a time:
    /// peak memory is the index and one slice, never the whole file. int8 codes take their
    /// ranges from a first pass over the file.
    /// - Complexity: O(n log n * efConstruction * M * d), plus one more read for int8.
    public static func build(streaming path: String, parameters: HNSWIndex.Parameters, threads: Int, slice: Int = 65_536,
                             progress: (TrainingEvent) -> Void = { _ in }) throws -> HNSWIndex {
        var reader = try VectorFileReader(path: path)
        let n = reader.rows, d = reader.columns
        let index = try HNSWIndex(dimension: d, parameters: parameters)
        index.reserve(n)
        if parameters.quantization == .int8 {
            var lo = [Float](repeating: .infinity, count: d), hi = [Float](repeating: -.infinity, count: d)
            while var part = try reader.next(maxRows: slice) {
                if parameters.metric == .cosine { part.normalizeRows() }
                part.storage.withUnsafeBufferPointer { p in
                    for r in 0..<part.rows {
                        for j in 0..<d {
                            lo[j] = min(lo[j], p[r * d + j])
                            hi[j] = max(hi[j], p[r * d + j])
                        }
                    }
                }
            }
            try index.setQuantizer(ScalarQuantizer(minimums: lo, maximums: hi))
            reader = try VectorFileReader(path: path)
        }
        progress(.stage("index", done: 0, total: n))
        while let part = try reader.next(maxRows: slice) {
            let start = reader.position - part.rows
            try index.add(part, ids: (UInt64(start)..<UInt64(reader.position)).map { $0 }, threads: max(1, threads))
            progress(.stage("index", done: reader.position, total: n))
        }
        return index
    }
}

/// Which data a model saw: CRC-32C of an interaction log's users, items and times.
public enum Fingerprint {
    public static func of(_ log: InteractionLog) -> String {
        var crc: UInt32 = 0
        log.userIndex.withUnsafeBytes { crc = CRC32C.update(crc, $0) }
        log.itemIndex.withUnsafeBytes { crc = CRC32C.update(crc, $0) }
        log.timestamps.withUnsafeBytes { crc = CRC32C.update(crc, $0) }
        return String(format: "crc32c:%08x/%d", crc, log.count)
    }
}

/// Wall-clock seconds, monotonic.
enum Clock {
    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
}
