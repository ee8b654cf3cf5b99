import Benchmark
import Funnel

// GBDT training and the per-request ranking path: scoring 500 candidates with 200 trees.
let benchmarks: @Sendable () -> Void = {
    var rng = SeededGenerator(seed: 1)
    let n = 5_000, d = 20
    var x = Matrix(rows: n, columns: d)
    var y = [Float]()
    for r in 0..<n {
        for c in 0..<d { x[r, c] = rng.nextGaussian() }
        y.append(Float(max(0, min(4, Int((x[r, 0] + x[r, 1] * x[r, 2]) * 1.5 + 2)))))
    }
    let data = LabeledData(features: x, labels: y, groups: Array(stride(from: 0, through: n, by: 50)))
    var p = GBDTParameters()
    p.rounds = 200
    p.minDataInLeaf = 20
    let model = try! GBDTTrainer.train(p, train: data).model
    let predictor = GBDTPredictor(model)
    let candidates = x.rows(0..<500)

    Benchmark.defaultConfiguration = .init(metrics: [.throughput, .wallClock, .mallocCountTotal], maxDuration: .seconds(3))

    Benchmark("GBDT.score.500x200trees") { benchmark in
        var out = [Double](repeating: 0, count: 500)
        candidates.storage.withUnsafeBufferPointer { cp in
            out.withUnsafeMutableBufferPointer { op in
                benchmark.startMeasurement()
                for _ in benchmark.scaledIterations {
                    predictor.predict(cp.baseAddress!, rows: 500, stride: d, into: op.baseAddress!)
                    blackHole(op[499])
                }
                benchmark.stopMeasurement()
            }
        }
    }

    Benchmark("GBDT.train.lambdarank.50rounds", configuration: .init(metrics: [.wallClock], maxDuration: .seconds(5), maxIterations: 5)) { benchmark in
        var q = p
        q.rounds = 50
        for _ in benchmark.scaledIterations { blackHole(try GBDTTrainer.train(q, train: data).model) }
    }
}
