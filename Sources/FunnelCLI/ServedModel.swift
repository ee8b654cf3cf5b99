import ArgumentParser
import Foundation
import Funnel

/// A trained MovieLens model folder turned into the whole funnel: the user tower's
/// embeddings, the HNSW index, the GBDT ranker (when the folder has one) and the ranking
/// features computed from the interaction log, behind a `FunnelPipeline` with budgets,
/// fallbacks and explanations.
final class ServedModel: @unchecked Sendable {
    let folder: String
    let userIDs: [String]
    /// Row of each user id (a request's lookup, O(1)).
    let userRows: [String: Int]
    let itemIDs: [String]
    let titles: [String]?
    let userVectors: Matrix
    let pipeline: FunnelPipeline
    let features: RankingFeatures

    /// - Parameter version: the name its metrics carry (`version="..."`), when several serve.
    init(folder: String, movielens ml: MovieLens, explanations: Int = 3, version: String? = nil) throws {
        self.folder = folder
        let m = try ModelFolder(folder)
        guard m.userIDs == ml.users.keys.keys, m.itemIDs == ml.items.keys.keys else {
            if m.userIDs.starts(with: ml.users.keys.keys), m.itemIDs.starts(with: ml.items.keys.keys) {
                throw ValidationError("\(folder): the model knows \(m.userIDs.count - ml.users.count) users and \(m.itemIDs.count - ml.items.count) items "
                                      + "the data does not describe (added by retrain); ranking needs their attributes: use `funnel recommend` without --movielens")
            }
            throw ValidationError("\(folder): the model's users or items differ from the data's")
        }
        userIDs = m.userIDs
        userRows = Dictionary(m.userIDs.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        itemIDs = m.itemIDs
        if case .text(let t)? = ml.items.columns["title"] { titles = t } else { titles = nil }
        userVectors = m.model.embedAll(m.model.users)
        let itemVectors = m.model.embedAll(m.model.items)
        features = try TrainCommand.movieLensRankingFeatures(ml)
        let rankerPath = "\(folder)/ranker.gbdt"
        var ranker: GBDTModel? = nil
        if FileManager.default.fileExists(atPath: rankerPath) {
            do { ranker = try GBDTModel.load(from: rankerPath) } catch {
                // A corrupt ranker must not take the service down: serve retrieval order, say why.
                FileHandle.standardError.write(Data("warning: \(error); serving without a ranker\n".utf8))
            }
        }
        var config = PipelineConfig()
        config.candidates = 200
        config.mmrPool = 150
        config.freshness = .exponential(halfLife: 365 * 86_400)
        config.freshnessWeight = 0.1
        config.explanations = explanations
        pipeline = try FunnelPipeline(index: m.index, itemVectors: itemVectors, features: features, ranker: ranker, config: config,
                                      metrics: StageMetrics(label: "funnel", dimensions: version.map { [("version", $0)] } ?? []))
    }

    /// The funnel's answer for a known user, everything they have seen left out.
    func recommend(user: String, k: Int) throws -> Recommendation {
        guard let u = userRows[user] else { throw ValidationError("unknown user '\(user)'") }
        let seen = Set(features.statistics.history(u, before: features.now &+ 1))
        return try pipeline.recommend(FunnelRequest(user: u, vector: Array(userVectors.row(u)), exclude: seen), k: k)
    }

    func name(_ item: Int) -> String { titles.map { "\(itemIDs[item]) \($0[item])" } ?? itemIDs[item] }

    /// The answer as JSON-ready values, each item with why it is there.
    func json(_ r: Recommendation, user: String, version: String) -> [String: Any] {
        [
            "user": user, "model": version, "path": r.path,
            "latency_us": r.totalSeconds * 1e6,
            "stages_us": Dictionary(uniqueKeysWithValues: r.stageSeconds.map { ($0.stage, $0.seconds * 1e6) }),
            "items": r.items.map { item -> [String: Any] in
                var o: [String: Any] = ["item": itemIDs[item.id], "score": item.score]
                if let t = titles?[item.id] { o["title"] = t }
                if let c = item.category, c < features.items.categoryNames.count { o["category"] = features.items.categoryNames[c] }
                if let r = item.retrievalRank { o["retrieval_rank"] = r + 1 }
                if let s = item.retrievalScore { o["retrieval_score"] = s }
                if let s = item.rankerScore { o["ranker_score"] = s }
                if !item.contributions.isEmpty {
                    o["ranker_contributions"] = Dictionary(uniqueKeysWithValues: item.contributions.map { ($0.feature, $0.value) })
                }
                if !item.explanation.isEmpty { o["rules"] = item.explanation }
                return o
            },
        ]
    }
}
