import Foundation
import LinearAlgebra
import TwoTower

/// The towers' validation search: the settings that matter most, tried one axis at a time
/// (a coordinate search from `FunnelTrainingConfig.towers`), each trial trained with early
/// stopping on the validation score (`FunnelTrainingConfig.selection`) and its best epoch
/// kept, the best trial chosen by that same score. The chosen model is the trial's own (it is not trained again).
///
/// Axes, in order: id dropout, the id embeddings' width, the embedding optimizer with its
/// rate, the temperature.
/// An axis with one value is fixed (a setting the caller chose is not searched).
/// About as much search as a PyTorch user spends on a grid of 8: 1 + (values - 1) per axis.
public struct TowerTuning: Sendable {
    public var idDropout: [Float] = [0.1, 0]
    /// Id embedding widths (nil: the features' own, the schema's or the fourth-root rule's).
    public var idWidth: [Int?] = [nil, 64]
    public var embedding: [EmbeddingSetting] = [.init(.adagrad, 0.05), .init(.adagrad, 0.02), .init(.lazyAdam, 0.003)]
    public var temperature: [Float] = [0.05, 0.1]
    /// No trial starts after this many seconds of search (the first always runs).
    public var budgetSeconds: Double = 900

    public init() {}

    public struct EmbeddingSetting: Sendable, Equatable, CustomStringConvertible {
        public var optimizer: EmbeddingOptimizer
        public var learningRate: Float
        public init(_ optimizer: EmbeddingOptimizer, _ learningRate: Float) {
            self.optimizer = optimizer
            self.learningRate = learningRate
        }
        public var description: String { "\(optimizer.rawValue) \(learningRate)" }
    }

    /// The number of trials the search runs when the budget allows.
    public var trials: Int {
        1 + max(0, idDropout.count - 1) + max(0, idWidth.count - 1) + max(0, embedding.count - 1) + max(0, temperature.count - 1)
    }
}

/// One trial of the search.
public struct TuningTrial: Sendable {
    public var idDropout: Float
    /// nil: the features' own width.
    public var idWidth: Int?
    public var embedding: TowerTuning.EmbeddingSetting
    public var temperature: Float
    /// Validation metrics of the trial's kept epoch.
    public var validation: RetrievalMetrics
    public var bestEpoch: Int
    public var epochs: Int
    public var seconds: Double
    public var chosen = false

    public var settings: String {
        "id dropout \(idDropout), id width \(idWidth.map(String.init) ?? "rule"), \(embedding), temperature \(temperature)"
    }

    public var json: [String: Any] {
        ["id_dropout": Double(idDropout), "id_width": idWidth.map { "\($0)" } ?? "rule", "embedding_optimizer": embedding.optimizer.rawValue,
         "embedding_learning_rate": Double(embedding.learningRate), "temperature": Double(temperature),
         "validation_NDCG": validation.ndcg, "validation_NDCG@10": validation.ndcg10, "validation_HR@10": validation.hr10,
         "best_epoch": bestEpoch, "epochs": epochs, "seconds": seconds, "chosen": chosen]
    }
}

extension TwoTowerParameters {
    /// These parameters with one trial's settings.
    func with(idDropout: Float, idWidth: Int?, embedding: TowerTuning.EmbeddingSetting, temperature: Float) -> TwoTowerParameters {
        var p = self
        p.idDropout = idDropout
        p.idWidth = idWidth
        p.embeddingOptimizer = embedding.optimizer
        p.embeddingLearningRate = embedding.learningRate
        p.temperature = temperature
        return p
    }

    /// The settings a bundle's manifest records (`FunnelTrainingConfig.summary`) applied to
    /// these parameters, so that a retrain continues with the settings that were chosen.
    public func applying(summary: [String: String]) -> TwoTowerParameters {
        var p = self
        if let v = summary["learning_rate"].flatMap(Float.init), v.isFinite, v > 0 { p.learningRate = v }
        if let v = summary["embedding_optimizer"].flatMap(EmbeddingOptimizer.init(rawValue:)) { p.embeddingOptimizer = v }
        if let v = summary["embedding_learning_rate"].flatMap(Float.init), v.isFinite, v > 0 { p.embeddingLearningRate = v }
        if let v = summary["id_dropout"].flatMap(Float.init), (0..<1).contains(v) { p.idDropout = v }
        if let v = summary["id_width"].flatMap(Int.init), (1...4096).contains(v) { p.idWidth = v }
        if let v = summary["logq"].flatMap(Bool.init) { p.logQCorrection = v }
        if let v = summary["logq_estimate"].flatMap(LogQEstimate.init(rawValue:)) { p.logQEstimate = v }
        if let v = summary["batch_size"].flatMap(Int.init), v > 0 { p.batchSize = v }
        return p
    }
}

enum TowerSearch {
    /// Runs the search; returns the chosen trial's model, parameters, the trials and every
    /// epoch report of every trial (for the training speed).
    static func run(_ tuning: TowerTuning, base: TwoTowerParameters, data: TrainingData, split: LeaveLastOutSplit,
                    validation: [Int32: Int32], selection: ValidationMetric, progress: @escaping (TrainingEvent) -> Void) throws
        -> (model: TwoTowerModel, parameters: TwoTowerParameters, trials: [TuningTrial], epochs: [EpochReport]) {
        let t0 = Clock.now()
        var trials = [TuningTrial](), reports = [EpochReport]()
        var best: (model: TwoTowerModel, parameters: TwoTowerParameters, score: Double, trial: Int)? = nil
        // The current point of the coordinate search.
        var dropout = tuning.idDropout.first ?? base.idDropout
        var width = tuning.idWidth.first ?? base.idWidth
        var embedding = tuning.embedding.first ?? .init(base.embeddingOptimizer, base.embeddingLearningRate)
        var temperature = tuning.temperature.first ?? base.temperature
        var outOfBudget = false

        func trial(_ d: Float, _ w: Int?, _ e: TowerTuning.EmbeddingSetting, _ t: Float) throws -> Bool {
            if !trials.isEmpty && Clock.now() - t0 > tuning.budgetSeconds {
                if !outOfBudget { progress(.note("tuning: the \(Int(tuning.budgetSeconds)) s budget is spent; \(trials.count) of \(tuning.trials) trials ran")) }
                outOfBudget = true
                return false
            }
            let p = base.with(idDropout: d, idWidth: w, embedding: e, temperature: t)
            let s0 = Clock.now()
            let (model, epochs, valid, bestEpoch) = try FunnelTrainer.fitTowers(p, data: data, split: split, validation: validation,
                                                                               selection: selection, progress: progress)
            reports += epochs
            let score = selection.score(valid)
            let tr = TuningTrial(idDropout: d, idWidth: w, embedding: e, temperature: t, validation: valid, bestEpoch: bestEpoch,
                                 epochs: epochs.count, seconds: Clock.now() - s0)
            let better = best.map { score > $0.score } ?? true
            if better { best = (model, p, score, trials.count) }
            trials.append(tr)
            progress(.note(String(format: "tuning %d/%d: %@ -> validation NDCG %.4f NDCG@10 %.4f HR@10 %.4f (best epoch %d of %d, %.1f s)%@",
                                  trials.count, tuning.trials, tr.settings, valid.ndcg, valid.ndcg10, valid.hr10, bestEpoch, epochs.count,
                                  tr.seconds, better && trials.count > 1 ? ", best so far" : "")))
            return better
        }

        _ = try trial(dropout, width, embedding, temperature)
        for d in tuning.idDropout.dropFirst() {
            if try trial(d, width, embedding, temperature) { dropout = d }
        }
        for w in tuning.idWidth.dropFirst() {
            if try trial(dropout, w, embedding, temperature) { width = w }
        }
        for e in tuning.embedding.dropFirst() {
            if try trial(dropout, width, e, temperature) { embedding = e }
        }
        for t in tuning.temperature.dropFirst() {
            if try trial(dropout, width, embedding, t) { temperature = t }
        }
        guard let chosen = best else { throw EngineError.invalidData("the towers' search ran no trial") }
        trials[chosen.trial].chosen = true
        progress(.note("tuning: chose \(trials[chosen.trial].settings) (\(trials.count) trials, \(String(format: "%.1f", Clock.now() - t0)) s)"))
        return (chosen.model, chosen.parameters, trials, reports)
    }
}
