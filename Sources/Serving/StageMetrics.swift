import CoreMetrics

/// Per-stage latency timers and fallback counters of a `Recommender`, through swift-metrics:
/// `<label>_stage_seconds{stage=retrieval|ranking|rerank}`, `<label>_request_seconds` and
/// `<label>_fallbacks_total{kind=...}`. With no metrics backend bootstrapped they cost nothing;
/// `funnel serve` bootstraps Prometheus and exposes them on `/metrics`.
///
/// Timers are created once, from the factory given (by default the one bootstrapped when
/// the recommender is made): bootstrap the backend before building recommenders.
public struct StageMetrics: Sendable {
    public let label: String
    /// Added to every metric, e.g. [("version", "v3")] when several model versions serve side by side.
    public let dimensions: [(String, String)]
    let factory: MetricsFactory
    let stageTimers: [String: CoreMetrics.Timer]
    let requestTimer: CoreMetrics.Timer

    public init(label: String, dimensions: [(String, String)] = [], factory: MetricsFactory = MetricsSystem.factory) {
        self.label = label
        self.dimensions = dimensions
        self.factory = factory
        var timers = [String: CoreMetrics.Timer]()
        for stage in ["retrieval", "ranking", "rerank"] {
            timers[stage] = CoreMetrics.Timer(label: "\(label)_stage_seconds", dimensions: [("stage", stage)] + dimensions, factory: factory)
        }
        stageTimers = timers
        requestTimer = CoreMetrics.Timer(label: "\(label)_request_seconds", dimensions: dimensions, factory: factory)
    }

    func record(stages: [(String, Double)], total: Double) {
        for (stage, seconds) in stages {
            (stageTimers[stage] ?? CoreMetrics.Timer(label: "\(label)_stage_seconds", dimensions: [("stage", stage)] + dimensions, factory: factory))
                .recordNanoseconds(Int64(seconds * 1e9))
        }
        requestTimer.recordNanoseconds(Int64(total * 1e9))
    }

    /// Counts one fallback, e.g. kind "retrieval:timeout".
    func fallback(_ kind: String) {
        Counter(label: "\(label)_fallbacks_total", dimensions: [("kind", kind)] + dimensions, factory: factory).increment()
    }
}
