import ArgumentParser
import Foundation
import Funnel

/// `funnel pipeline-eval`: the whole funnel on MovieLens, stage by stage, on the
/// leave-last-one-out split of PROTOCOLS.md section 2. The towers train on the training
/// interactions; the ranker on each user's validation interaction replayed as of its time;
/// every stage is then measured on the test interactions (also replayed as of their time,
/// so no feature sees the future).
struct PipelineEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline-eval",
        abstract: "Retrieval alone vs + GBDT ranking vs + re-ranking on MovieLens, with an MMR lambda sweep.")

    @Option(help: "MovieLens ml-100k folder.") var movielens: String
    @Option(help: "Towers from a model folder written by `funnel train` (default: train them here).") var model: String?
    @Option var epochs: Int = 20
    @Option(help: "Candidates retrieval hands to the ranker.") var candidates: Int = 200
    @Option(help: "HNSW beam width.") var ef: Int = 128
    @Option var k: Int = 10
    @Option(help: "MMR lambdas to sweep (comma-separated).") var lambdas: String = "1.0,0.9,0.7,0.5"
    @Option(help: "MMR re-orders the ranker's top N.") var mmrPool: Int = 150
    @Option(help: "Freshness half-life in days (0: no freshness).") var halfLifeDays: Double = 365
    @Option(help: "Weight of freshness in the blended score.") var freshnessWeight: Double = 0.1
    @Option(help: "At most this many items per (first) genre; 0: no cap.") var maxPerCategory: Int = 3
    @Option(help: "GBDT boosting rounds.") var rounds: Int = 200
    @Option(help: "GBDT leaves per tree.") var leaves: Int = 7
    @Option(help: "GBDT minimum rows per leaf.") var minDataInLeaf: Int = 200
    @Option(help: "GBDT learning rate.") var learningRate: Double = 0.05
    @Option(help: "Replay each user's last N training interactions as extra ranker requests, scored by towers trained without them (0: validation requests only).")
    var rankerHistory: Int = 5
    @Option var seed: UInt64 = 42
    @Option(help: "Write the table as JSON.") var json: String?

    func run() throws {
        try FunnelCLI.run {
            let lambdaList = try lambdas.split(separator: ",").map { s -> Double in
                guard let v = Double(s.trimmingCharacters(in: .whitespaces)), v >= 0, v <= 1 else {
                    throw ValidationError("--lambdas: '\(s)' is not a number in [0, 1]")
                }
                return v
            }
            let ml = try MovieLens.load(directory: movielens)
            let split = LeaveLastOutSplit(ml.interactions)
            var t = now()
            let towers: TwoTowerModel
            if let model {
                let (m, users, items) = try TwoTowerModel.load(from: "\(model)/towers.fnl")
                guard users == ml.users.keys.keys, items == ml.items.keys.keys else {
                    throw ValidationError("\(model): the model's users or items differ from the data's")
                }
                towers = m
            } else {
                towers = try trainTowers(ml, pairs: split.train, split: split)
            }
            let userVectors = towers.embedAll(towers.users), itemVectors = towers.embedAll(towers.items)
            print("towers ready in \(fmt(now() - t, 1)) s")
            let index = try HNSWIndex(dimension: itemVectors.columns, parameters: .init(metric: .cosine, M: 16, efConstruction: 200))
            try index.add(itemVectors)
            let features = try TrainCommand.movieLensRankingFeatures(ml)
            var config = PipelineConfig()
            config.candidates = candidates
            config.ef = ef
            config.mmrPool = mmrPool
            config.freshness = halfLifeDays > 0 ? .exponential(halfLife: halfLifeDays * 86_400) : nil
            config.freshnessWeight = freshnessWeight
            config.rules = BusinessRules()
            config.rules.maxPerCategory = maxPerCategory > 0 ? maxPerCategory : nil
            config.inline = true
            func request(_ u: Int32, exclude: Set<Int32>, asOf: Int64) -> FunnelRequest {
                FunnelRequest(user: Int(u), vector: Array(userVectors.row(Int(u))), exclude: exclude, asOf: asOf)
            }

            // Ranker requests: every user's validation interaction, and (with --ranker-history)
            // the last training interactions, each replayed as of its time and scored by towers
            // that never saw it: the ranker learns from tower scores as they are at serving.
            let retrieval = try FunnelPipeline(index: index, itemVectors: itemVectors, features: features, ranker: nil, config: config)
            var queries = split.validation.keys.sorted().map {
                RankerQuery(user: Int($0), time: split.validationTime[$0]!, positives: [split.validation[$0]!], exclude: split.trainItems[Int($0)])
            }
            t = now()
            var (data, used) = try RankerTrainingData.build(queries: queries, features: features) { q in
                try retrieval.retrieve(request(Int32(q.user), exclude: q.exclude, asOf: q.time), count: candidates)
            }
            if rankerHistory > 0 {
                // Per user, training events in split order; the last N become requests.
                var perUser = [[(time: Int64, item: Int32)]](repeating: [], count: ml.users.count)
                let log = ml.interactions
                for n in 0..<log.count { perUser[Int(log.userIndex[n])].append((log.timestamps[n], log.itemIndex[n])) }
                var early = [(user: Int32, item: Int32)](), late = [RankerQuery]()
                for u in 0..<ml.users.count {
                    let events = perUser[u].sorted { $0.time != $1.time ? $0.time < $1.time : $0.item < $1.item }
                    let train = events.filter { split.trainItems[u].contains($0.item) }
                    let cut = max(1, train.count - rankerHistory)
                    for e in train.prefix(cut) { early.append((Int32(u), e.item)) }
                    for (j, e) in train.enumerated().dropFirst(cut) {
                        late.append(RankerQuery(user: u, time: e.time, positives: [e.item], exclude: Set(train.prefix(j).map(\.item))))
                    }
                }
                let earlyTowers = try trainTowers(ml, pairs: early, split: nil)
                let eu = earlyTowers.embedAll(earlyTowers.users), ev = earlyTowers.embedAll(earlyTowers.items)
                let earlyIndex = try HNSWIndex(dimension: ev.columns, parameters: .init(metric: .cosine, M: 16, efConstruction: 200))
                try earlyIndex.add(ev)
                let earlyRetrieval = try FunnelPipeline(index: earlyIndex, itemVectors: ev, features: features, ranker: nil, config: config)
                let (more, moreUsed) = try RankerTrainingData.build(queries: late, features: features) { q in
                    try earlyRetrieval.retrieve(FunnelRequest(user: q.user, vector: Array(eu.row(q.user)), exclude: q.exclude, asOf: q.time),
                                                count: candidates)
                }
                data = try LabeledData.concatenate([data, more])
                used += moreUsed
                queries += late
            }
            var gp = GBDTParameters()
            gp.objective = .lambdarank
            gp.rounds = rounds
            gp.numLeaves = leaves
            gp.minDataInLeaf = minDataInLeaf
            gp.learningRate = learningRate
            gp.seed = seed
            var (ranker, _) = try GBDTTrainer.train(gp, train: data)
            ranker.featureNames = features.names
            print("ranker: lambdarank, \(ranker.trees.count) trees over \(features.count) features (\(features.names.joined(separator: ", "))), "
                  + "trained on \(used) of \(queries.count) replayed requests with the target among \(candidates) candidates, in \(fmt(now() - t, 2)) s")
            let importance = ranker.importance(byGain: true)
            let total = max(importance.reduce(0, +), 1e-12)
            print("  gain share: " + zip(features.names, importance).sorted { $0.1 > $1.1 }.map { "\($0.0) \(fmt($0.1 / total * 100, 1))%" }.joined(separator: ", "))

            let pipeline = try FunnelPipeline(index: index, itemVectors: itemVectors, features: features, ranker: ranker, config: config)
            let requests = split.test.keys.sorted().map {
                (request: request($0, exclude: split.seenBeforeTest($0), asOf: split.testTime[$0]!), target: split.test[$0]!)
            }
            t = now()
            let report = try OfflineEvaluation.run(pipeline, requests: requests, k: k, lambdas: lambdaList)
            let rules = [halfLifeDays > 0 ? "freshness (half-life \(fmt(halfLifeDays, 0)) d, weight \(freshnessWeight))" : nil,
                         maxPerCategory > 0 ? "<= \(maxPerCategory) per genre" : nil].compactMap { $0 }.joined(separator: ", ")
            print("test: \(requests.count) users, last interaction, full catalog minus earlier items, each request as of its time (\(fmt(now() - t, 1)) s)")
            var rows: [(String, FunnelQuality)] = [("retrieval (two-tower + HNSW)", report.retrieval), ("+ GBDT ranking", report.ranked)]
            rows += report.reranked.map { ("+ MMR \($0.lambda)" + (rules.isEmpty ? "" : ", " + rules), $0.quality) }
            printAligned(header: ["stage", "HR@\(k)", "NDCG@\(k)", "diversity", "coverage"], rows: rows.map {
                [$0.0, fmt($0.1.hr, 4), fmt($0.1.ndcg, 4), fmt($0.1.diversity, 3), fmt($0.1.coverage, 3)]
            })
            if let base = report.reranked.first(where: { $0.lambda == 1 })?.quality {
                for (lambda, q) in report.reranked where lambda < 1 {
                    print("MMR \(lambda) vs 1.0: diversity \(String(format: "%+.1f", (q.diversity / base.diversity - 1) * 100))%, "
                          + "NDCG@\(k) \(String(format: "%+.1f", (q.ndcg / max(base.ndcg, 1e-12) - 1) * 100))%")
                }
            }
            if let json {
                func obj(_ q: FunnelQuality) -> [String: Double] {
                    ["HR@\(k)": q.hr, "NDCG@\(k)": q.ndcg, "diversity": q.diversity, "coverage": q.coverage]
                }
                let out: [String: Any] = [
                    "retrieval": obj(report.retrieval), "ranked": obj(report.ranked),
                    "reranked": report.reranked.map { ["lambda": $0.lambda, "metrics": obj($0.quality)] as [String: Any] },
                    "users": requests.count, "candidates": candidates, "ranker_queries": used,
                ]
                let bytes = try JSONSerialization.data(withJSONObject: out, options: [.prettyPrinted, .sortedKeys])
                try AtomicFile.write(Array(bytes) + [10], to: json)
            }
        }
    }

    /// Towers with the features and defaults of `funnel train`, early-stopped on validation
    /// when a split is given.
    func trainTowers(_ ml: MovieLens, pairs: [(user: Int32, item: Int32)], split: LeaveLastOutSplit?) throws -> TwoTowerModel {
        let (userFeatures, itemFeatures) = try TrainCommand.movieLensFeatures(ml)
        var p = TwoTowerParameters()
        p.epochs = epochs
        p.seed = seed
        if split == nil { p.patience = 0 }
        let towers = TwoTowerModel(userFeatures: userFeatures, itemFeatures: itemFeatures, parameters: p)
        var rng = SeededGenerator(seed: seed)
        towers.fit(pairs, rng: &rng) { _ in
            guard let split else { return nil }
            return (try? towers.evaluate(heldOut: split.validation, exclude: { split.trainItems[Int($0)] }))?.ndcg10
        }
        return towers
    }
}
