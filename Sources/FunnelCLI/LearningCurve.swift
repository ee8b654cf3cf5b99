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
    @Option(help: "Write an SVG chart of NDCG@10 and HR@10 against the fraction.") var plot: String?

    func run() throws {
        try FunnelCLI.run {
            let fs = fractions.split(separator: ",").compactMap { Double($0) }.filter { $0 > 0 && $0 <= 1 }
            guard !fs.isEmpty else { throw ValidationError("--fractions needs values in (0, 1]") }
            var p = TwoTowerParameters()
            p.epochs = epochs
            p.seed = seed
            let curve = try Protocols.learningCurve(try source.load(), fractions: fs, parameters: p) { point in
                print("fraction \(fmt(point.fraction, 2)): \(point.test)  (\(fmt(point.seconds, 1)) s)")
            }
            let rows = curve.map { c in
                [fmt(c.fraction * 100, 0) + "%", String(c.interactions), fmt(c.test.hr10, 4), fmt(c.test.ndcg10, 4), fmt(c.test.hr50, 4), fmt(c.seconds, 1)]
            }
            let points = curve.map { ($0.fraction, $0.test.ndcg10, $0.test.hr10) }
            printAligned(header: ["train data", "interactions", "HR@10", "NDCG@10", "HR@50", "train s"], rows: rows)
            if let plot { try AtomicFile.write(Array(svg(points).utf8), to: plot) }
        }
    }

    func svg(_ pts: [(Double, Double, Double)]) -> String {
        let w = 640.0, h = 400.0, l = 70.0, r = 20.0, t = 40.0, b = 50.0
        let maxY = max(0.01, pts.map { max($0.1, $0.2) }.max() ?? 0.1) * 1.1
        func x(_ f: Double) -> Double { l + f * (w - l - r) }
        func y(_ v: Double) -> Double { h - b - v / maxY * (h - t - b) }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"12\">"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/><text x=\"\(w / 2)\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">Learning curve (test, leave-last-one-out)</text>"
        s += "<line x1=\"\(l)\" y1=\"\(h - b)\" x2=\"\(w - r)\" y2=\"\(h - b)\" stroke=\"black\"/><line x1=\"\(l)\" y1=\"\(t)\" x2=\"\(l)\" y2=\"\(h - b)\" stroke=\"black\"/>"
        for f in [0.0, 0.25, 0.5, 0.75, 1.0] { s += "<text x=\"\(x(f))\" y=\"\(h - b + 18)\" text-anchor=\"middle\">\(Int(f * 100))%</text>" }
        for i in 0...4 { let v = maxY * Double(i) / 4; s += "<text x=\"\(l - 6)\" y=\"\(y(v) + 4)\" text-anchor=\"end\">\(String(format: "%.3f", v))</text>" }
        for (name, color, key) in [("NDCG@10", "#1f77b4", 1), ("HR@10", "#d62728", 2)] {
            let path = pts.map { "\(x($0.0)),\(y(key == 1 ? $0.1 : $0.2))" }.joined(separator: " ")
            s += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>"
            if let last = pts.last { s += "<text x=\"\(x(last.0) - 4)\" y=\"\(y(key == 1 ? last.1 : last.2) - 8)\" text-anchor=\"end\" fill=\"\(color)\">\(name)</text>" }
        }
        return s + "<text x=\"\(w / 2)\" y=\"\(h - 12)\" text-anchor=\"middle\">fraction of training interactions</text></svg>\n"
    }
}
