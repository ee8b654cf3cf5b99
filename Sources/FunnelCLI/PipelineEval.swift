import ArgumentParser
import Foundation
import Funnel

/// `funnel pipeline-eval`: the whole funnel stage by stage on the leave-last-one-out split
/// (see `FunnelEvaluation`): of a trained bundle (`--model`), or trained here on a data
/// source with the ranker also learning from each user's last training interactions.
struct PipelineEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline-eval",
        abstract: "Retrieval alone vs + GBDT ranking vs + re-ranking, with an MMR lambda sweep, on a bundle or on data trained here.")

    @OptionGroup var source: TrainingSource
    @Option(help: "A model bundle folder or registry name to evaluate (instead of training on a data source).") var model: String?
    @Option(help: "Registry root.") var registry: String = "indexes"
    @Option var epochs: Int = 20
    @Option(help: "Candidates retrieval hands to the ranker.") var candidates: Int = 200
    @Option(help: "HNSW beam width.") var ef: Int = 128
    @Option var k: Int = 10
    @Option(help: "MMR lambdas to sweep (comma-separated).") var lambdas: String = "1.0,0.9,0.7,0.5"
    @Option(help: "MMR re-orders the ranker's top N.") var mmrPool: Int = 150
    @Option(help: "Freshness half-life in days (0: no freshness).") var halfLifeDays: Double = 365
    @Option(help: "Weight of freshness in the blended score.") var freshnessWeight: Double = 0.1
    @Option(help: "At most this many items per (first) category; 0: no cap.") var maxPerCategory: Int = 3
    @Option(help: "GBDT boosting rounds.") var rounds: Int = 200
    @Option(help: "GBDT leaves per tree.") var numLeaves: Int = 7
    @Option(name: .customLong("leaves"), help: .hidden) var leavesAlias: Int?
    @Option(help: "GBDT minimum rows per leaf.") var minDataInLeaf: Int = 200
    @Option(help: "GBDT learning rate.") var learningRate: Double = 0.05
    @Option(help: "Replay each user's last N training interactions as extra ranker requests, scored by towers trained without them (0: validation requests only).")
    var rankerHistory: Int = 5
    @Option var seed: UInt64 = 42
    @Option(help: "Write the table as JSON.") var json: String?

    func run() throws {
        let lambdaList = try lambdas.split(separator: ",").map { s -> Double in
            guard let v = Double(s.trimmingCharacters(in: .whitespaces)), v >= 0, v <= 1 else {
                throw ValidationError("--lambdas: '\(s)' is not a number in [0, 1]")
            }
            return v
        }
        guard k >= 1, k <= Engine.maxK else { throw ValidationError("--k must be in 1...\(Engine.maxK)") }
        let t = now()
        let report: OfflineEvaluation.Report, users: Int, rankerQueries: Int?
        if let model {
            let engine = try ModelOptions.parse(["--model", model, "--registry", registry]).engine(inline: true)
            print("bundle \(engine.bundle.folder): \(engine.itemCount) items, trained on \(engine.bundle.manifest.dataLabel)")
            (report, users) = try FunnelEvaluation.run(engine, k: k, lambdas: lambdaList)
            rankerQueries = nil
        } else {
            guard source.given else { throw ValidationError("give --model NAME, or a data source (--interactions ... or --movielens DIR)") }
            var c = FunnelTrainingConfig()
            c.towers.epochs = epochs
            c.towers.seed = seed
            c.rankerCandidates = candidates
            c.rankerHistory = rankerHistory
            c.ranker.rounds = rounds
            c.ranker.numLeaves = leavesAlias ?? numLeaves
            c.ranker.minDataInLeaf = minDataInLeaf
            c.ranker.learningRate = learningRate
            c.ranker.seed = seed
            c.baselines = false
            c.serving.candidates = candidates
            c.serving.ef = ef
            c.serving.mmrPool = mmrPool
            c.serving.freshnessHalfLifeDays = halfLifeDays > 0 ? halfLifeDays : nil
            c.serving.freshnessWeight = freshnessWeight
            c.serving.maxPerCategory = maxPerCategory > 0 ? maxPerCategory : nil
            let funnel = try FunnelTrainer.train(try source.load(), config: c, progress: { if case .note(let s) = $0 { print(s) } })
            if let ranker = funnel.ranker {
                let importance = ranker.importance(byGain: true)
                let total = max(importance.reduce(0, +), 1e-12)
                print("  gain share: " + zip(funnel.features.names, importance).sorted { $0.1 > $1.1 }
                    .map { "\($0.0) \(fmt($0.1 / total * 100, 1))%" }.joined(separator: ", "))
            }
            (report, users) = try FunnelEvaluation.run(funnel, k: k, lambdas: lambdaList)
            rankerQueries = funnel.report.rankerQueries
        }
        print("test: \(users) users, last interaction, full catalog minus earlier items, each request as of its time (\(fmt(now() - t, 1)) s)")
        var rows: [(String, FunnelQuality)] = [("retrieval (two-tower + HNSW)", report.retrieval), ("+ GBDT ranking", report.ranked)]
        rows += report.reranked.map { ("+ MMR \($0.lambda), freshness, category cap", $0.quality) }
        printAligned(header: ["stage", "HR@\(k)", "NDCG@\(k)", "diversity", "coverage"], rows: rows.map {
            [$0.0, fmt($0.1.hr, 4), fmt($0.1.ndcg, 4), fmt($0.1.diversity, 3), fmt($0.1.coverage, 3)]
        })
        if let base = report.reranked.first(where: { $0.lambda == 1 })?.quality {
            for (lambda, q) in report.reranked where lambda < 1 {
                print("MMR \(lambda) vs 1.0: diversity \(String(format: "%+.1f", (q.diversity / max(base.diversity, 1e-12) - 1) * 100))%, "
                      + "NDCG@\(k) \(String(format: "%+.1f", (q.ndcg / max(base.ndcg, 1e-12) - 1) * 100))%")
            }
        }
        if let json {
            func obj(_ q: FunnelQuality) -> [String: Double] { ["HR@\(k)": q.hr, "NDCG@\(k)": q.ndcg, "diversity": q.diversity, "coverage": q.coverage] }
            var out: [String: Any] = [
                "retrieval": obj(report.retrieval), "ranked": obj(report.ranked),
                "reranked": report.reranked.map { ["lambda": $0.lambda, "metrics": obj($0.quality)] as [String: Any] }, "users": users,
            ]
            if let rankerQueries { out["ranker_queries"] = rankerQueries }
            let bytes = try JSONSerialization.data(withJSONObject: out, options: [.prettyPrinted, .sortedKeys])
            try AtomicFile.write(Array(bytes) + [10], to: json)
        }
    }
}
