import Benchmark
import Funnel

// Exact and HNSW search on a generated clustered set (20,000 x 64, L2), one query per
// iteration: throughput, wall-clock percentiles and allocations per search (the HNSW
// raw-pointer search allocates nothing in steady state).
let benchmarks: @Sendable () -> Void = {
    let n = 20_000, d = 64
    let mixture = GaussianMixture(dimension: d, clusters: 100, spread: 0.3, seed: 42)
    let base = mixture.sample(n, stream: 1)
    let queries = mixture.sample(256, stream: 2)
    let exact = try! ExactIndex(vectors: base, metric: .l2)
    let hnsw = try! HNSWIndex(dimension: d, parameters: .init(metric: .l2, M: 16, efConstruction: 200))
    try! hnsw.add(base, threads: Parallel.availableCores)
    let hnsw8 = try! HNSWIndex(dimension: d, parameters: .init(metric: .l2, M: 16, efConstruction: 200, quantization: .int8))
    try! hnsw8.add(base, threads: Parallel.availableCores)

    let metrics: [BenchmarkMetric] = [.throughput, .wallClock, .mallocCountTotal]
    Benchmark.defaultConfiguration = .init(metrics: metrics, maxDuration: .seconds(3), maxIterations: 100_000)

    Benchmark("Exact.search.single") { benchmark in
        for i in benchmark.scaledIterations {
            blackHole(try exact.search(queries.row(i % 256), k: 10))
        }
    }

    Benchmark("Exact.search.batch256") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try exact.search(queries, k: 10, threads: 1))
        }
    }

    for (name, index) in [("HNSW.float", hnsw), ("HNSW.int8", hnsw8)] {
        for ef in [16, 64] {
            Benchmark("\(name).search.ef\(ef)") { benchmark in
                let ids = UnsafeMutablePointer<Int64>.allocate(capacity: 10)
                let dist = UnsafeMutablePointer<Float>.allocate(capacity: 10)
                defer { ids.deallocate(); dist.deallocate() }
                queries.storage.withUnsafeBufferPointer { q in
                    benchmark.startMeasurement()
                    for i in benchmark.scaledIterations {
                        blackHole(index.search(q.baseAddress! + (i % 256) * d, k: 10, ef: ef, ids: ids, distances: dist))
                    }
                    benchmark.stopMeasurement()
                }
            }
        }
    }

    Benchmark("HNSW.build.5000", configuration: .init(metrics: [.wallClock, .throughput], maxDuration: .seconds(5), maxIterations: 5)) { benchmark in
        let small = base.rows(0..<5000)
        for _ in benchmark.scaledIterations {
            let index = try HNSWIndex(dimension: d, parameters: .init(M: 16, efConstruction: 200))
            try index.add(small, threads: 1)
            blackHole(index)
        }
    }
}
