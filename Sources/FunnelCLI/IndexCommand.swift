import ArgumentParser
import Foundation
import Funnel

/// `funnel index`: index-only bundles over vectors a user brings (their own embeddings).
struct IndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Index your own vectors (an index-only bundle) and search them by vector or by id, with attribute filters.",
        subcommands: [Build.self, SearchIndex.self])

    struct Build: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Build an HNSW index bundle over vectors (.fvecs, .bvecs, .npy, IDX or CSV).")
        @Option(help: "The vectors: .fvecs, .bvecs, .npy, IDX, or CSV (a header column 'id' names them).") var vectors: String
        @Option(help: "Ids, one per line, in the vectors' order (default: the CSV's id column, else 0, 1, ...).") var ids: String?
        @Option(help: "Item attributes CSV keyed by the same ids (titles, categories, creation times, numeric columns for filters).")
        var attributes: String?
        @Option(help: "Key column of --attributes.") var key: String = "id"
        @Option(help: "Column of --attributes that names an item.") var title: String?
        @Option(help: "Column of --attributes with categories ('|'-separated values).") var category: String?
        @Option(help: "Column of --attributes with creation times.") var createdAt: String?
        @Option(help: "Comma-separated numeric columns of --attributes (filterable).") var numeric: String?
        @Option(help: "l2, ip or cosine.") var metric: String = "cosine"
        @Option(help: "Vector storage: none (float), fp16 or int8.") var quantization: String = "none"
        @Option(name: .customLong("m"), help: "Links per node.") var m: Int = 16
        @Option(help: "Beam width while building.") var efConstruction: Int = 200
        @Option(help: "Default beam width when searching.") var ef: Int = 128
        @Option(help: "Build threads (default: all cores).") var threads: Int?

        func validate() throws { try checkThreads(threads) }
        @Option(help: "Registry name of the bundle.") var name: String?
        @Option(help: "Registry root.") var registry: String = "indexes"
        @Option(help: "Write the bundle to this new folder instead of registering it.") var out: String?

        func run() throws {
            guard let metric = Metric(name: metric) else { throw ValidationError("--metric must be l2, ip or cosine, not '\(self.metric)'") }
            guard let q = HNSWIndex.Quantization(rawValue: quantization) else { throw ValidationError("--quantization must be none, fp16 or int8") }
            guard (2...512).contains(m), (1...100_000).contains(efConstruction), (1...100_000).contains(ef) else {
                throw ValidationError("--m in 2...512, --ef-construction and --ef in 1...100000")
            }
            guard out != nil || name != nil else { throw ValidationError("give --name (to register the bundle) or --out DIR") }
            // Binary vector files stream (a slice at a time); CSV is parsed into memory.
            let streamed = [.fvecs, .bvecs, .npy].contains(VectorFormat.infer(fromPath: vectors))
            var (matrix, fileIDs) = streamed ? (Matrix(rows: 0, columns: 0), nil) : try VectorIndex.readVectors(vectors)
            if let ids {
                let lines = try String(contentsOfFile: ids, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: true)
                    .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
                fileIDs = lines
            }
            var table: AttributeTable? = nil
            if let attributes {
                var specs = [ColumnSpec]()
                if let title { specs.append(ColumnSpec(title, .text)) }
                if let category { specs.append(ColumnSpec(category, .multiCategorical(separator: "|"))) }
                if let createdAt { specs.append(ColumnSpec(createdAt, .timestamp)) }
                for c in (numeric ?? "").split(separator: ",") { specs.append(ColumnSpec(c.trimmingCharacters(in: .whitespaces), .numeric)) }
                table = try AttributeTable.readCSV(attributes, key: key, columns: specs)
            } else if title != nil || category != nil || createdAt != nil || numeric != nil {
                throw ValidationError("--title, --category, --created-at and --numeric name columns of --attributes")
            }
            var options = VectorIndex.BuildOptions()
            options.parameters = HNSWIndex.Parameters(metric: metric, M: m, efConstruction: efConstruction, quantization: q)
            options.threads = threads ?? Parallel.availableCores
            options.ef = ef
            let target = out ?? "\(registry)/.incoming-\(UUID().uuidString)"
            let bar = ProgressBar()
            let t0 = now()
            let label = (vectors as NSString).lastPathComponent
            let show: (TrainingEvent) -> Void = { if case let .stage(n, d, t) = $0 { bar.stage(n, done: d, total: t) } }
            let bundle = streamed
                ? try VectorIndex.build(vectorFile: vectors, ids: fileIDs, attributes: table, title: title, category: category,
                                        createdAt: createdAt, options: options, dataLabel: label, to: target, progress: show)
                : try VectorIndex.build(vectors: matrix, ids: fileIDs, attributes: table, title: title, category: category,
                                        createdAt: createdAt, options: options, dataLabel: label, to: target, progress: show)
            let dim = bundle.manifest.parameters["dimension"] ?? "?"
            print("indexed \(bundle.manifest.dataFingerprint.split(separator: "/").last ?? "?") vectors of dimension \(dim) (\(metric.rawValue), \(q.rawValue)) in \(fmt(now() - t0, 2)) s")
            matrix = Matrix(rows: 0, columns: 0)
            if let name, out == nil {
                let v = try ModelRegistry(root: registry).register(name, from: bundle.folder, dataFingerprint: bundle.manifest.dataFingerprint)
                print("registered \(name) v\(v.version) (staging) in \(registry)/\(v.path)")
            } else {
                print("bundle: \(bundle.folder)/")
            }
        }
    }

    struct SearchIndex: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "search", abstract: "Nearest items of an index bundle to query vectors, or to an item.")
        @OptionGroup var modelOptions: ModelOptions
        @Option(help: "Query vectors (.fvecs, .npy, IDX or CSV).") var queries: String?
        @Option(help: "Instead of --queries: the items nearest to this item id.") var item: String?
        @Option var k: Int = 10
        @Option(help: "Beam width (default: the bundle's).") var ef: Int?
        @Option(help: "A filter clause: category=A|B, category!=A, NAME>=X, NAME<=X, created>=DATE (repeatable).") var filter: [String] = []
        @Option(help: "Queries printed (all are written to --json).") var show: Int = 3
        @Option(help: "Write the answers as JSON (a list, one per query).") var json: String?

        func run() throws {
            let index = try modelOptions.vectorIndex()
            let filter = try ItemFilter.parse(filter)
            var answers = [EngineAnswer]()
            switch (queries, item) {
            case (let file?, nil):
                let (q, _) = try VectorIndex.readVectors(file)
                let allowed = try index.allowed(filter)
                for r in 0..<q.rows { answers.append(try index.search(vector: Array(q.row(r)), k: k, ef: ef, allowed: allowed)) }
            case (nil, let id?):
                answers.append(try index.similar(item: id, k: k, ef: ef, filter: filter))
            default:
                throw ValidationError("give --queries FILE or --item ID")
            }
            for (n, a) in answers.prefix(max(0, show)).enumerated() {
                try FunnelCLI.show(a, header: item.map { "items like \($0)" } ?? "query \(n)", json: nil)
            }
            if let json { try writeJSON(answers, to: json) }
        }
    }
}

extension ModelOptions {
    /// The index bundle for the model.
    func vectorIndex() throws -> VectorIndex {
        let (folder, name, version) = try resolve()
        return try VectorIndex(folder: folder, name: name, version: version)
    }
}
