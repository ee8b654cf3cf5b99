import ArgumentParser
import Foundation
import Funnel

/// Trains the towers on growing fractions of the training data and reports test quality
/// and training time per fraction: if quality still climbs at 100%, more data is the next
/// step; if it flattens early, a bigger model (or better features) is.
struct LearningCurve: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "learning-curve", abstract: "Quality and training time on growing fractions of the training data.")
    @OptionGroup var source: TrainingSource
    @Option(help: "Comma-separated fractions of the training interactions.") var fractions: String = "0.1,0.25,0.5,1"
    @Option var epochs: Int = 8
    @Option var seed: UInt64 = 42
    @Option(help: "Write an SVG chart of NDCG@10 against the fraction: towers, implicit ALS and popularity.") var plot: String?
    @Flag(help: "Leave out popularity and ALS.") var noBaselines = false

    func run() throws {
        try FunnelCLI.run {
            let fs = fractions.split(separator: ",").compactMap { Double($0) }.filter { $0 > 0 && $0 <= 1 }
            guard !fs.isEmpty else { throw ValidationError("--fractions needs values in (0, 1]") }
            var p = TwoTowerParameters()
            p.epochs = epochs
            p.seed = seed
            let curve = try Protocols.learningCurve(try source.load(), fractions: fs, parameters: p, baselines: !noBaselines) { point in
                print("fraction \(fmt(point.fraction, 2)): \(point.test)  (\(fmt(point.seconds, 1)) s)")
            }
            func pair(_ m: RetrievalMetrics?) -> String { m.map { "\(fmt($0.hr10, 4)) / \(fmt($0.ndcg10, 4))" } ?? "-" }
            let rows = curve.map { c in
                [fmt(c.fraction * 100, 0) + "%", String(c.interactions), pair(c.test), fmt(c.test.hr50, 4), fmt(c.seconds, 1), pair(c.als), pair(c.popularity)]
            }
            printAligned(header: ["train data", "interactions", "towers HR@10 / NDCG@10", "towers HR@50", "train s", "ALS", "popularity"], rows: rows)
            var series = [("two-tower", "#1f77b4", curve.map { ($0.fraction, $0.test.ndcg10) })]
            if !noBaselines {
                series.append(("implicit ALS", "#2ca02c", curve.compactMap { c in c.als.map { (c.fraction, $0.ndcg10) } }))
                series.append(("popularity", "#7f7f7f", curve.compactMap { c in c.popularity.map { (c.fraction, $0.ndcg10) } }))
            }
            if let plot { try AtomicFile.write(Array(svg(series).utf8), to: plot) }
        }
    }

    /// NDCG@10 of each series against the fraction of training data, one line each.
    func svg(_ series: [(name: String, color: String, points: [(Double, Double)])]) -> String {
        let w = 640.0, h = 400.0, l = 70.0, r = 120.0, t = 40.0, b = 50.0
        let maxY = max(0.01, series.flatMap { $0.points.map(\.1) }.max() ?? 0.1) * 1.1
        func x(_ f: Double) -> Double { l + f * (w - l - r) }
        func y(_ v: Double) -> Double { h - b - v / maxY * (h - t - b) }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"12\">"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/><text x=\"\(w / 2)\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">Learning curve: test NDCG@10 (leave-last-one-out)</text>"
        s += "<line x1=\"\(l)\" y1=\"\(h - b)\" x2=\"\(w - r)\" y2=\"\(h - b)\" stroke=\"black\"/><line x1=\"\(l)\" y1=\"\(t)\" x2=\"\(l)\" y2=\"\(h - b)\" stroke=\"black\"/>"
        for f in [0.0, 0.25, 0.5, 0.75, 1.0] { s += "<text x=\"\(x(f))\" y=\"\(h - b + 18)\" text-anchor=\"middle\">\(Int(f * 100))%</text>" }
        for i in 0...4 { let v = maxY * Double(i) / 4; s += "<text x=\"\(l - 6)\" y=\"\(y(v) + 4)\" text-anchor=\"end\">\(String(format: "%.3f", v))</text>" }
        for (name, color, pts) in series where !pts.isEmpty {
            let path = pts.map { "\(x($0.0)),\(y($0.1))" }.joined(separator: " ")
            s += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>"
            for p in pts { s += "<circle cx=\"\(x(p.0))\" cy=\"\(y(p.1))\" r=\"3\" fill=\"\(color)\"/>" }
            if let last = pts.last { s += "<text x=\"\(x(last.0) + 8)\" y=\"\(y(last.1) + 4)\" fill=\"\(color)\">\(name)</text>" }
        }
        return s + "<text x=\"\(w / 2)\" y=\"\(h - 12)\" text-anchor=\"middle\">fraction of training interactions</text></svg>\n"
    }
}
