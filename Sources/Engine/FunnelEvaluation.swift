import Foundation
import LinearAlgebra
import Serving
import TwoTower

/// The whole funnel measured stage by stage on held-out requests: retrieval alone, after
/// GBDT ranking, and after re-ranking for each MMR lambda (PROTOCOLS.md section 2's
/// split: each user's last interaction, replayed as of its time so no feature sees the
/// future, the full catalog minus what the user touched before it).
public enum FunnelEvaluation {
    /// Each user's test interaction as a request at its time (a repeat of an item the user
    /// touched before is left out, as in `RetrievalMetrics`: serving never returns it).
    public static func testRequests(_ split: LeaveLastOutSplit, userVectors: Matrix) -> [(request: FunnelRequest, target: Int32)] {
        split.test.keys.sorted().compactMap { u in
            guard let held = split.test[u] else { return nil }
            let seen = split.seenBeforeTest(u)
            guard !seen.contains(held.item) else { return nil }
            return (FunnelRequest(user: Int(u), vector: Array(userVectors.row(Int(u))), exclude: seen, asOf: held.time), held.item)
        }
    }

    /// Evaluates a trained funnel on its own split's test requests.
    public static func run(_ funnel: TrainedFunnel, k: Int = 10, lambdas: [Double] = [1.0, 0.9, 0.7, 0.5]) throws
        -> (report: OfflineEvaluation.Report, requests: Int) {
        let requests = testRequests(funnel.split, userVectors: funnel.userVectors)
        return (try OfflineEvaluation.run(try funnel.pipeline(), requests: requests, k: k, lambdas: lambdas), requests.count)
    }

    /// Evaluates a loaded bundle on the leave-last-one-out split of the log it carries
    /// (the split its towers and ranker were trained on, for a bundle `funnel train` wrote).
    public static func run(_ engine: Engine, k: Int = 10, lambdas: [Double] = [1.0, 0.9, 0.7, 0.5]) throws
        -> (report: OfflineEvaluation.Report, requests: Int) {
        let split = LeaveLastOutSplit(engine.catalog.log)
        let requests = testRequests(split, userVectors: engine.userVectors)
        return (try OfflineEvaluation.run(engine.pipeline, requests: requests, k: k, lambdas: lambdas), requests.count)
    }
}
