import Foundation

/// A recall-vs-QPS chart as a self-contained SVG (log-scaled QPS axis).
enum RecallPlot {
    static func svg(_ r: BenchReport) -> String {
        let w = 720.0, h = 480.0, left = 80.0, right = 30.0, top = 50.0, bottom = 60.0
        let pts = r.points.compactMap { p -> (Double, Double, Int?)? in
            guard let q = p.qps, q > 0 else { return nil }
            return (p.recall, q, p.ef)
        }
        let recalls = pts.map(\.0), qps = pts.map(\.1)
        let rMin = max(0, (recalls.min() ?? 0) - 0.02), rMax = min(1.0, (recalls.max() ?? 1) + 0.01)
        let lqMin = log10(max(1, (qps.min() ?? 1) * 0.8)), lqMax = log10(max(10, (qps.max() ?? 10) * 1.2))
        func x(_ recall: Double) -> Double { left + (recall - rMin) / max(1e-9, rMax - rMin) * (w - left - right) }
        func y(_ q: Double) -> Double { h - bottom - (log10(q) - lqMin) / max(1e-9, lqMax - lqMin) * (h - top - bottom) }
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(w))" height="\(Int(h))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(w / 2)" y="25" text-anchor="middle" font-size="15">\(r.engine): recall@\(r.k) vs QPS (\(r.dataset.n) x \(r.dataset.dim), \(r.dataset.metric), 1 thread)</text>
        <line x1="\(left)" y1="\(h - bottom)" x2="\(w - right)" y2="\(h - bottom)" stroke="black"/>
        <line x1="\(left)" y1="\(top)" x2="\(left)" y2="\(h - bottom)" stroke="black"/>
        <text x="\(w / 2)" y="\(h - 15)" text-anchor="middle">recall@\(r.k)</text>
        <text x="20" y="\(h / 2)" text-anchor="middle" transform="rotate(-90 20 \(h / 2))">queries per second (log)</text>

        """
        for i in 0...5 {
            let rv = rMin + (rMax - rMin) * Double(i) / 5
            s += "<text x=\"\(x(rv))\" y=\"\(h - bottom + 18)\" text-anchor=\"middle\">\(String(format: "%.3f", rv))</text>\n"
        }
        var e = floor(lqMin)
        while e <= lqMax {
            for m in [1.0, 2.0, 5.0] {
                let v = m * pow(10, e)
                if log10(v) >= lqMin && log10(v) <= lqMax {
                    s += "<line x1=\"\(left)\" y1=\"\(y(v))\" x2=\"\(w - right)\" y2=\"\(y(v))\" stroke=\"#ddd\"/>"
                    s += "<text x=\"\(left - 6)\" y=\"\(y(v) + 4)\" text-anchor=\"end\">\(Int(v))</text>\n"
                }
            }
            e += 1
        }
        let path = pts.sorted { $0.0 < $1.0 }.map { "\(x($0.0)),\(y($0.1))" }.joined(separator: " ")
        s += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n"
        for p in pts {
            s += "<circle cx=\"\(x(p.0))\" cy=\"\(y(p.1))\" r=\"3.5\" fill=\"#1f77b4\"/>"
            if let ef = p.2 { s += "<text x=\"\(x(p.0) + 5)\" y=\"\(y(p.1) - 6)\" font-size=\"10\">ef \(ef)</text>" }
            s += "\n"
        }
        return s + "</svg>\n"
    }
}
