import ArgumentParser
import Foundation
import Funnel

/// An index the bench can drive: build once, then search one query or a batch.
protocol BenchEngine {
    var name: String { get }
    var bytesPerVector: Int { get }
    /// The search-time knob values to sweep (nil: the engine has none).
    var sweep: [Int?] { get }
    func search(_ query: UnsafeBufferPointer<Float>, k: Int, knob: Int?, into out: UnsafeMutablePointer<Int32>)
    func searchBatch(_ queries: Matrix, k: Int, knob: Int?, threads: Int) throws -> KNNResult
}

final class ExactEngine: BenchEngine {
    let index: ExactIndex
    init(index: ExactIndex) { self.index = index }
    var name: String { "exact" }
    var bytesPerVector: Int { index.bytesPerVector }
    var sweep: [Int?] { [nil] }
    func search(_ query: UnsafeBufferPointer<Float>, k: Int, knob: Int?, into out: UnsafeMutablePointer<Int32>) {
        let r = try! index.search(Array(query), k: k)
        for j in 0..<k { out[j] = j < r.count ? Int32(r[j].id) : -1 }
    }
    func searchBatch(_ queries: Matrix, k: Int, knob: Int?, threads: Int) throws -> KNNResult {
        try index.search(queries, k: k, threads: threads)
    }
}

final class HNSWEngine: BenchEngine {
    let index: HNSWIndex
    let efs: [Int]
    init(index: HNSWIndex, efs: [Int]) {
        self.index = index
        self.efs = efs
    }
    var name: String { index.parameters.quantization == .none ? "hnsw" : "hnsw-\(index.parameters.quantization.rawValue)" }
    var bytesPerVector: Int { Int(index.bytesPerVector.rounded()) }
    var sweep: [Int?] { efs.map { $0 } }
    func search(_ query: UnsafeBufferPointer<Float>, k: Int, knob: Int?, into out: UnsafeMutablePointer<Int32>) {
        withUnsafeTemporaryAllocation(of: Int64.self, capacity: k) { ids in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: k) { d in
                index.search(query.baseAddress!, k: k, ef: knob ?? 64, ids: ids.baseAddress!, distances: d.baseAddress!)
                for j in 0..<k { out[j] = Int32(truncatingIfNeeded: ids[j]) }
            }
        }
    }
    func searchBatch(_ queries: Matrix, k: Int, knob: Int?, threads: Int) throws -> KNNResult {
        try index.search(queries, k: k, ef: knob ?? 64, threads: threads)
    }
}

struct BenchPoint: Encodable {
    var ef: Int?
    var recall: Double
    var qps: Double?
    var p50_us: Double?
    var p99_us: Double?
    var batch_qps: Double

    enum CodingKeys: String, CodingKey { case ef, recall, qps, p50_us, p99_us, batch_qps }
    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        if let ef { try c.encode(ef, forKey: .ef) } else { try c.encodeNil(forKey: .ef) }
        try c.encode(recall, forKey: .recall)
        // Unmeasured figures are written as null, never left out.
        for (value, key) in [(qps, CodingKeys.qps), (p50_us, .p50_us), (p99_us, .p99_us)] {
            if let value { try c.encode(value, forKey: key) } else { try c.encodeNil(forKey: key) }
        }
        try c.encode(batch_qps, forKey: .batch_qps)
    }
}

struct BenchReport: Encodable {
    struct DatasetInfo: Encodable {
        var n: Int
        var dim: Int
        var queries: Int
        var metric: String
    }
    var engine: String
    var dataset: DatasetInfo
    var threads: Int
    var k: Int
    var build_seconds: Double
    var bytes_per_vector: Int
    var ground_truth_seconds: Double?
    var points: [BenchPoint]
    /// Whether recall counts ties at the k-th distance (it needs the base in memory;
    /// --stream and --index count ids only).
    var recall_counts_ties = true
    /// Peak resident memory of the process (VmHWM) after the build, and at the end.
    var build_peak_rss_bytes: Int?
    var peak_rss_bytes: Int?
    var save_seconds: Double?
    var load_seconds: Double?
    var file_bytes: Int?
    var machine = MachineReport.current
}

struct AnnBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ann-bench",
        abstract: "Measure recall@k against latency and throughput for an index engine.",
        discussion: """
        Base and query files may be .fvecs, .bvecs, .npy or IDX. Without --gt, the ground
        truth is computed with the exact engine. Recall counts ties at the k-th distance as
        hits. Latency is one query at a time on one thread; batch QPS searches all queries
        in one call on --threads threads.
        """
    )

    @Option(help: "Base vectors file (or --model).") var base: String?
    @Option(help: "Query vectors file (with --model: default the funnel bundle's user vectors).") var query: String?
    @Option(help: "Measure a bundle's own index instead (a registry name or a bundle folder): its item vectors, its HNSW graph.")
    var model: String?
    @Option(help: "Registry root for --model.") var registry: String = "indexes"
    @Option(help: "Ground-truth ids (.ivecs, nearest first).") var gt: String?
    @Option(help: "l2, ip or cosine.") var metric: String = "l2"
    @Option(help: "Neighbors per query.") var k: Int = 10
    @Option(help: "Index engine: exact or hnsw.") var engine: String = "exact"
    @Option(name: .customLong("m"), help: "HNSW: links per node (2M on layer 0).") var m: Int = 16
    @Option(help: "HNSW: beam width while building.") var efConstruction: Int = 200
    @Option(help: "HNSW: comma-separated beam widths to sweep.") var ef: String = "10,16,24,32,48,64,96,128,192,256,384,512"
    @Option(help: "HNSW: vector storage: none (float32), int8 (codes for traversal, float re-scoring) or fp16 (half precision, no float copy).") var quantization: String = "none"
    @Option(help: "Write the recall-vs-QPS curve as an SVG.") var plot: String?
    @Option(help: "Threads for build and batch search (default: all cores).") var threads: Int?
    @Option(help: "Use only the first N queries.") var maxQueries: Int?
    @Option(help: "Use only the first N base vectors.") var maxBase: Int?
    @Option(help: "Queries timed one at a time for QPS and latency (default: all; 0 skips, and recall comes from the batch).")
    var singleQueries: Int?
    @Option(help: "Write the report as JSON to this file.") var json: String?
    @Option(help: "Exact engine: queries per sgemm block.") var queryBlock: Int?
    @Option(help: "Exact engine: base vectors per sgemm block.") var baseBlock: Int?
    @Flag(help: "HNSW: build from --base read a slice at a time, never holding the base in memory (needs --gt; recall counts ids, not ties).")
    var stream = false
    @Option(help: "HNSW: save the built index to this file (streamed to disk, atomic).") var save: String?
    @Option(help: "HNSW: measure an index file written by --save instead of building one (with --query and --gt).")
    var index: String?
    @Flag(help: "With --index: map the file read-only instead of copying it into memory.") var mmap = false
    @Option(help: "With --index of an fp16 index: re-score each search's candidates with the float vectors of this .fvecs file (mapped, read as touched).")
    var rescore: String?

    func validate() throws {
        try checkThreads(threads)
        guard (1...10_000).contains(k) else { throw ValidationError("--k must be in 1...10000") }
        guard ef.split(separator: ",").allSatisfy({ Int($0.trimmingCharacters(in: .whitespaces)).map { (1...100_000).contains($0) } ?? false }) else {
            throw ValidationError("--ef must be a comma-separated list of integers in 1...100000, got '\(ef)'")
        }
        guard Metric(name: metric) != nil else { throw ValidationError("--metric must be l2, ip or cosine, got '\(metric)'") }
        if let index {
            guard base == nil, model == nil, query != nil, gt != nil else {
                throw ValidationError("--index \(index) is measured with --query and --gt (and no --base or --model)")
            }
        } else {
            guard (model == nil) == (base != nil) else { throw ValidationError("give --base and --query, or --model") }
            if model == nil, query == nil { throw ValidationError("--query is needed with --base") }
        }
        if stream {
            guard engine == "hnsw", base != nil, gt != nil, maxBase == nil else {
                throw ValidationError("--stream builds an HNSW index from --base (with --engine hnsw and --gt, without --max-base)")
            }
        }
        if mmap, index == nil { throw ValidationError("--mmap maps an --index file") }
        if rescore != nil, index == nil { throw ValidationError("--rescore re-scores an --index file's searches") }
        if save != nil, engine != "hnsw" || model != nil || index != nil {
            throw ValidationError("--save writes an HNSW index this run builds (--engine hnsw with --base)")
        }
        if let m = maxQueries, m < 1 { throw ValidationError("--max-queries must be at least 1") }
        if let t = threads, t < 1 { throw ValidationError("--threads must be at least 1") }
        guard ["exact", "hnsw"].contains(engine) else { throw ValidationError("--engine must be exact or hnsw, got '\(engine)'") }
        guard HNSWIndex.Quantization(rawValue: quantization) != nil else {
            throw ValidationError("--quantization must be none, int8 or fp16, got '\(quantization)'")
        }
        guard !efList.isEmpty, efList.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--ef must be a comma-separated list of positive integers") }
    }

    var efList: [Int] { ef.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func run() throws {
        if stream || index != nil { return try runLarge() }
        try FunnelCLI.run {
            var metric = Metric(name: metric)!
            let threads = threads ?? Parallel.availableCores
            var baseM: Matrix, queries: Matrix
            var bundleIndex: HNSWIndex? = nil
            if let model {
                // The bundle's own index and vectors: what it serves is what is measured.
                let options = try ModelOptions.parse(["--model", model, "--registry", registry])
                if try options.kind() == .index {
                    let v = try options.vectorIndex()
                    (baseM, bundleIndex) = (v.vectors, v.index)
                    guard let query else { throw ValidationError("an index bundle is measured with --query FILE") }
                    queries = try VectorFile.readMatrix(query, limit: maxQueries)
                } else {
                    let e = try options.engine(inline: true)
                    (baseM, bundleIndex) = (e.pipeline.itemVectors, e.index)
                    if let query { queries = try VectorFile.readMatrix(query, limit: maxQueries) } else {
                        let n = min(e.userVectors.rows, maxQueries ?? 1_000)
                        queries = try Matrix(rows: n, columns: e.userVectors.columns, storage: Array(e.userVectors.storage.prefix(n * e.userVectors.columns)))
                    }
                }
                metric = bundleIndex!.parameters.metric
                print("bundle \(try options.resolve().folder): its HNSW index (M \(bundleIndex!.parameters.M), \(bundleIndex!.parameters.quantization.rawValue))")
            } else {
                baseM = try VectorFile.readMatrix(base!, limit: maxBase)
                queries = try VectorFile.readMatrix(query!, limit: maxQueries)
            }
            guard queries.columns == baseM.columns else {
                throw ExactSearchError.dimensionMismatch(expected: baseM.columns, got: queries.columns)
            }
            print("base \(baseM.rows) x \(baseM.columns), queries \(queries.rows), metric \(metric.rawValue), k \(k), threads \(threads)")

            // Build (the exact engine doubles as the ground-truth oracle).
            let b0 = now()
            let exact = try ExactIndex(vectors: baseM, metric: metric)
            let exactBuild = now() - b0
            if let queryBlock { exact.queryBlock = max(1, queryBlock) }
            if let baseBlock { exact.baseBlock = max(1, baseBlock) }
            let engineImpl: BenchEngine
            let buildSeconds: Double
            switch engine {
            case _ where bundleIndex != nil:
                engineImpl = HNSWEngine(index: bundleIndex!, efs: efList)
                buildSeconds = 0
            case "hnsw":
                let params = HNSWIndex.Parameters(metric: metric, M: m, efConstruction: efConstruction,
                                                  quantization: HNSWIndex.Quantization(rawValue: quantization)!)
                let h0 = now()
                let index = try HNSWIndex(dimension: baseM.columns, parameters: params)
                index.reserve(baseM.rows)
                try index.add(baseM, ids: (0..<UInt64(baseM.rows)).map { $0 }, threads: threads)
                buildSeconds = now() - h0
                engineImpl = HNSWEngine(index: index, efs: efList)
                print("built HNSW (M \(m), efConstruction \(efConstruction), \(quantization)) in \(fmt(buildSeconds, 2)) s on \(threads) threads")
                if let save {
                    let s0 = now()
                    try index.save(to: save)
                    print("saved \(save) in \(fmt(now() - s0, 2)) s")
                }
            default:
                engineImpl = ExactEngine(index: exact)
                buildSeconds = exactBuild
            }

            // Ground truth.
            let truth: [Int32]
            let truthColumns: Int
            var gtSeconds: Double? = nil
            if let gt {
                if maxBase != nil {
                    throw ValidationError("--gt cannot be combined with --max-base (its ids would name vectors not loaded)")
                }
                let g = try VectorFile.read(gt, format: .ivecs)
                guard g.rows >= queries.rows, g.columns >= k, let ids = g.int32Values() else {
                    throw DatasetError.badFormat(path: gt, reason: "ground truth has \(g.rows) rows of \(g.columns) ids; need \(queries.rows) rows of at least \(k)")
                }
                truth = ids
                truthColumns = g.columns
            } else {
                let t0 = now()
                let bar = ProgressBar()
                bar.stage("ground truth", done: 0, total: queries.rows)
                truth = try exact.search(queries, k: k, threads: threads).ids
                bar.stage("ground truth", done: queries.rows, total: queries.rows)
                truthColumns = k
                gtSeconds = now() - t0
            }
            if metric == .cosine {
                baseM.normalizeRows()
                queries.normalizeRows()
            }

            let points = try sweep(engineImpl, queries: queries, threads: threads) { result in
                try Recall.atK(k, result: result, truth: truth, truthColumns: truthColumns, base: baseM, queries: queries, metric: metric)
            }

            let report = BenchReport(
                engine: engineImpl.name,
                dataset: .init(n: baseM.rows, dim: baseM.columns, queries: queries.rows, metric: metric.rawValue),
                threads: threads, k: k, build_seconds: buildSeconds, bytes_per_vector: engineImpl.bytesPerVector,
                ground_truth_seconds: gtSeconds, points: points)
            try publish(report)
        }
    }

    /// Prints the report and writes the plot and JSON asked for.
    func publish(_ report: BenchReport) throws {
        printTable(report)
        if let plot {
            try AtomicFile.write(Array(RecallPlot.svg(report).utf8), to: plot)
            print("wrote \(plot)")
        }
        if let json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            let data = try enc.encode(report)
            try AtomicFile.write(Array(data) + [10], to: json)
            print("wrote \(json)")
        }
    }

    /// Every knob of `engine`: recall, batch QPS on `threads` threads, and QPS and latency
    /// one query at a time on one thread.
    func sweep(_ engineImpl: BenchEngine, queries: Matrix, threads: Int,
               recallOf: (KNNResult) throws -> Double) throws -> [BenchPoint] {
        var points = [BenchPoint]()
        let timed = min(queries.rows, singleQueries ?? queries.rows)
        for knob in engineImpl.sweep {
            // Batch, all threads.
            let bs = now()
            let batch = try engineImpl.searchBatch(queries, k: k, knob: knob, threads: threads)
            let batchSeconds = now() - bs
            var recall = try recallOf(batch)
            var point = BenchPoint(ef: knob, recall: recall, qps: nil, p50_us: nil, p99_us: nil,
                                   batch_qps: Double(queries.rows) / batchSeconds)
            if timed > 0 {
                // One query at a time, one thread.
                var lat = [Double]()
                lat.reserveCapacity(timed)
                var single = KNNResult(queryCount: timed, k: k)
                let wall0 = now()
                queries.storage.withUnsafeBufferPointer { qp in
                    single.ids.withUnsafeMutableBufferPointer { out in
                        BLAS.withThreads(1) {
                            for q in 0..<timed {
                                let qv = UnsafeBufferPointer(rebasing: qp[(q * queries.columns)..<((q + 1) * queries.columns)])
                                let s = now()
                                engineImpl.search(qv, k: k, knob: knob, into: out.baseAddress! + q * k)
                                lat.append(now() - s)
                            }
                        }
                    }
                }
                let wall = now() - wall0
                lat.sort()
                recall = try recallOf(single)
                if timed == queries.rows && abs(recall - point.recall) > 0.01 {
                    print("note: single-query recall \(fmt(recall, 4)) differs from batch recall \(fmt(point.recall, 4))")
                }
                point.recall = recall
                point.qps = Double(timed) / wall
                point.p50_us = quantile(lat, 0.5) * 1e6
                point.p99_us = quantile(lat, 0.99) * 1e6
            }
            points.append(point)
        }
        return points
    }

    /// An index too large to hold twice: built from --base a slice at a time (--stream),
    /// or loaded from an --index file (--mmap maps it). The base never enters memory, so
    /// recall counts ids against the ground truth.
    func runLarge() throws {
        try FunnelCLI.run {
            var queries = try VectorFile.readMatrix(query!, limit: maxQueries)
            let threads = threads ?? Parallel.availableCores
            var report = BenchReport(engine: "", dataset: .init(n: 0, dim: queries.columns, queries: queries.rows, metric: metric),
                                     threads: threads, k: k, build_seconds: 0, bytes_per_vector: 0, ground_truth_seconds: nil, points: [])
            report.recall_counts_ties = false
            let hnsw: HNSWIndex
            if let index {
                let l0 = now()
                hnsw = try HNSWIndex.load(from: index, mmap: mmap)
                report.load_seconds = now() - l0
                report.file_bytes = fileSize(index)
                print("loaded \(index) (\(hnsw.count) items, M \(hnsw.parameters.M), \(hnsw.parameters.quantization.rawValue)\(mmap ? ", mapped" : "")) in \(fmt(report.load_seconds!, 2)) s")
                if let rescore {
                    try hnsw.rescore(with: RescoreSource(fvecs: rescore))
                    print("re-scoring with the float vectors of \(rescore) (mapped)")
                }
            } else {
                let params = HNSWIndex.Parameters(metric: Metric(name: metric)!, M: m, efConstruction: efConstruction,
                                                  quantization: HNSWIndex.Quantization(rawValue: quantization)!)
                let bar = ProgressBar()
                let h0 = now()
                hnsw = try IndexBuilding.build(streaming: base!, parameters: params, threads: threads) { event in
                    if case .stage(let name, let done, let total) = event { bar.stage(name, done: done, total: total) }
                }
                report.build_seconds = now() - h0
                report.build_peak_rss_bytes = ProcessMemory.peakResidentBytes
                print("built HNSW (M \(m), efConstruction \(efConstruction), \(quantization)) from \(base!) a slice at a time in \(fmt(report.build_seconds, 2)) s on \(threads) threads")
                if let save {
                    let s0 = now()
                    try hnsw.save(to: save)
                    report.save_seconds = now() - s0
                    report.file_bytes = fileSize(save)
                    print("saved \(save) in \(fmt(report.save_seconds!, 2)) s")
                }
            }
            guard hnsw.dimension == queries.columns else {
                throw ExactSearchError.dimensionMismatch(expected: hnsw.dimension, got: queries.columns)
            }
            let metric = hnsw.parameters.metric
            if metric == .cosine { queries.normalizeRows() }
            let g = try VectorFile.read(gt!, format: .ivecs)
            guard g.rows >= queries.rows, g.columns >= k, let truth = g.int32Values() else {
                throw DatasetError.badFormat(path: gt!, reason: "ground truth has \(g.rows) rows of \(g.columns) ids; need \(queries.rows) rows of at least \(k)")
            }
            let engineImpl = HNSWEngine(index: hnsw, efs: efList)
            report.engine = engineImpl.name + (rescore != nil ? "+rescore" : "")
            report.dataset = .init(n: hnsw.count, dim: hnsw.dimension, queries: queries.rows, metric: metric.rawValue)
            report.bytes_per_vector = engineImpl.bytesPerVector
            print("index \(hnsw.count) x \(hnsw.dimension), queries \(queries.rows), metric \(metric.rawValue), k \(k), threads \(threads)")
            report.points = try sweep(engineImpl, queries: queries, threads: threads) { result in
                try Recall.ofIDs(k, result: result, truth: truth, truthColumns: g.columns, baseCount: hnsw.count)
            }
            report.peak_rss_bytes = ProcessMemory.peakResidentBytes
            try publish(report)
            if let p = report.peak_rss_bytes { print("peak resident memory \(fmt(Double(p) / 1_073_741_824, 2)) GiB") }
        }
    }

    func fileSize(_ path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue
    }

    func printTable(_ r: BenchReport) {
        print("engine \(r.engine)  build \(fmt(r.build_seconds, 3)) s  \(r.bytes_per_vector) bytes/vector"
              + (r.ground_truth_seconds.map { "  ground truth \(fmt($0, 3)) s" } ?? ""))
        let header = ["ef", "recall@\(r.k)", "QPS (1 thr)", "p50 us", "p99 us", "batch QPS (\(r.threads) thr)"]
        let rows = r.points.map { p in
            [p.ef.map(String.init) ?? "-", fmt(p.recall, 4), fmt(p.qps ?? .nan, 1), fmt(p.p50_us ?? .nan, 1),
             fmt(p.p99_us ?? .nan, 1), fmt(p.batch_qps, 1)]
        }
        printAligned(header: header, rows: rows)
    }
}

/// Prints right-aligned columns under a header.
func printAligned(header: [String], rows: [[String]]) {
    var widths = header.map(\.count)
    for row in rows { for (i, c) in row.enumerated() { widths[i] = max(widths[i], c.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { String(repeating: " ", count: widths[$0.offset] - $0.element.count) + $0.element }
            .joined(separator: "  ")
    }
    print(line(header))
    print(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  "))
    for row in rows { print(line(row)) }
}
