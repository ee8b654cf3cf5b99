import ArgumentParser
import Foundation
import Funnel

struct GBDTCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gbdt",
        abstract: "Train, evaluate and apply gradient-boosted tree rankers and classifiers.",
        subcommands: [Train.self, Eval.self, Predict.self, Explain.self, Importance.self, Dump.self, Bench.self]
    )

    /// Data options shared by the subcommands.
    struct DataOptions: ParsableArguments {
        @Option(help: "Data file: SVMlight/LibSVM (label [qid:] idx:val ...) or, with --delimiter, delimited text.")
        var data: String?
        @Option(help: "LightGBM query file (group sizes), when the data has no qid: tokens.") var query: String?
        @Option(help: "Weight file (one per row).") var weight: String?
        @Option(help: "Read delimited text with this delimiter (tab, comma) instead of SVMlight.") var delimiter: String?
        @Option(help: "Label column of delimited text (0-based).") var labelColumn: Int = 0

        func load(_ path: String, query: String?, weight: String?, featureCount: Int? = nil) throws -> LabeledData {
            if let delimiter {
                let name = delimiter == "tab" || delimiter == "\\t" ? "\t" : (delimiter == "comma" ? "," : delimiter)
                guard name.count == 1, let d = name.first, d.isASCII, d != "\"", d != "\n" else {
                    throw ValidationError("--delimiter must be one ASCII character (or tab, comma), not '\(delimiter)'")
                }
                return try LabeledData.readDelimited(path, labelColumn: labelColumn, delimiter: d, queryFile: query, weightFile: weight)
            }
            return try LabeledData.readSVMLight(path, queryFile: query, weightFile: weight, featureCount: featureCount)
        }
    }

    static func loadModel(_ path: String) throws -> GBDTModel {
        if let head = FileManager.default.contents(atPath: path)?.prefix(5), head == Data("tree\n".utf8) {
            return try GBDTModel.loadLightGBM(path)
        }
        return try GBDTModel.load(from: path)
    }

    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Train a model; LightGBM's defaults and names.",
            discussion: "Under mpirun (mpirun -np 4 funnel gbdt train ...) the ranks train data-parallel: each keeps its block of queries, histograms are summed with MPI_Allreduce, and rank 0 writes the model.")
        @Option(help: "Training data.") var train: String
        @Option(help: "Training query file.") var query: String?
        @Option(help: "Training weight file.") var weight: String?
        @Option(help: "Validation data (evaluated every round; early stopping).") var valid: String?
        @Option(help: "Validation query file.") var validQuery: String?
        @Option(help: "Validation weight file.") var validWeight: String?
        @Option(help: "Read delimited text with this delimiter (tab, comma) instead of SVMlight.") var delimiter: String?
        @Option(help: "Label column of delimited text (0-based).") var labelColumn: Int = 0
        @Option(help: "lambdarank, binary or regression.") var objective: String = "lambdarank"
        @Option var numLeaves: Int = 31
        @Option var learningRate: Double = 0.1
        @Option var rounds: Int = 100
        @Option var minDataInLeaf: Int = 20
        @Option var minSumHessianInLeaf: Double = 1e-3
        @Option var maxBin: Int = 255
        @Option var maxDepth: Int = -1
        @Option var lambdaL2: Double = 0
        @Option var featureFraction: Double = 1
        @Option var baggingFraction: Double = 1
        @Option var baggingFreq: Int = 0
        @Option var earlyStoppingRounds: Int = 0
        @Option var seed: UInt64 = 0
        @Option(help: "Threads (default 1; histogram building splits across features).") var threads: Int = 1
        @Option(help: "Where to write the model.") var out: String
        @Option(help: "Write training statistics and validation metrics as JSON.") var json: String?

        func validate() throws { try checkThreads(threads) }

        func run() throws {
            try FunnelCLI.run {
                guard let obj = Objective(name: objective) else { throw ValidationError("--objective must be lambdarank, binary or regression") }
                var p = GBDTParameters()
                p.objective = obj
                p.numLeaves = numLeaves
                p.learningRate = learningRate
                p.rounds = rounds
                p.minDataInLeaf = minDataInLeaf
                p.minSumHessianInLeaf = minSumHessianInLeaf
                p.maxBin = maxBin
                p.maxDepth = maxDepth
                p.lambdaL2 = lambdaL2
                p.featureFraction = featureFraction
                p.baggingFraction = baggingFraction
                p.baggingFrequency = baggingFreq
                p.earlyStoppingRounds = earlyStoppingRounds
                p.seed = seed
                p.threads = threads
                var opts = DataOptions()
                opts.delimiter = delimiter
                opts.labelColumn = labelColumn
                // Under mpirun every rank trains on its block of queries (data-parallel, as
                // LightGBM's tree_learner=data); rank 0 writes and prints.
                let comm = try defaultCommunicator()
                let t0 = now()
                let allData = try opts.load(train, query: query, weight: weight)
                let trainData = comm.size > 1 ? allData.part(comm.rank, of: comm.size) : allData
                let validData = try valid.map { try opts.load($0, query: validQuery, weight: validWeight, featureCount: trainData.featureCount) }
                let loadSeconds = now() - t0
                let t1 = now()
                let (model, history) = try GBDTTrainer.train(p, train: trainData, valid: validData, communicator: comm) {
                    if comm.isRoot { print($0) }
                }
                let trainSeconds = now() - t1
                guard comm.isRoot else { return }
                try model.save(to: out)
                let ranks = comm.size > 1 ? "\(comm.size) ranks x " : ""
                print("trained \(model.trees.count) trees on \(allData.rowCount) rows x \(trainData.featureCount) features "
                      + "in \(fmt(trainSeconds, 3)) s (\(ranks)\(p.threads) threads; loading took \(fmt(loadSeconds, 2)) s); wrote \(out)")
                if let last = history.last {
                    print("validation: " + last.values.map { "\($0.name) \(fmt($0.value, 5))" }.joined(separator: "  "))
                }
                if let json {
                    var obj: [String: Double] = ["train_seconds": trainSeconds, "trees": Double(model.trees.count),
                                                 "threads": Double(p.threads), "rows": Double(allData.rowCount), "ranks": Double(comm.size)]
                    for (k, v) in history.last?.values ?? [] { obj[k] = v }
                    let bytes = try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
                    try AtomicFile.write(Array(bytes) + [10], to: json)
                }
            }
        }
    }

    struct Eval: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Evaluate a model (Funnel's or LightGBM's model.txt) on data.")
        @Option(help: "Model file.") var model: String
        @OptionGroup var data: DataOptions
        @Option(help: "NDCG/MAP positions.") var evalAt: String = "1,3,5,10"
        @Option(help: "Write metrics as JSON.") var json: String?

        func run() throws {
            try FunnelCLI.run {
                guard let path = data.data else { throw ValidationError("--data is required") }
                let m = try GBDTCommand.loadModel(model)
                let d = try data.load(path, query: data.query, weight: data.weight, featureCount: m.featureCount)
                let raw = try m.predict(d.features, raw: true, threads: 1)
                let ks = evalAt.split(separator: ",").compactMap { Int($0) }
                let metrics = GBDTTrainer.evaluate(m.objective, scores: raw, data: d, evalAt: ks, sigmoid: m.sigmoid)
                printAligned(header: ["metric", "value"], rows: metrics.map { [$0.name, fmt($0.value, 6)] })
                if let json {
                    var obj = [String: Double]()
                    for (k, v) in metrics { obj[k] = v }
                    let bytes = try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
                    try AtomicFile.write(Array(bytes) + [10], to: json)
                }
            }
        }
    }

    struct Predict: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write one prediction per row.")
        @Option(help: "Model file.") var model: String
        @OptionGroup var data: DataOptions
        @Flag(help: "Raw scores (no sigmoid for binary).") var raw = false
        @Option(help: "Output file (default: standard output).") var out: String?

        func run() throws {
            try FunnelCLI.run {
                guard let path = data.data else { throw ValidationError("--data is required") }
                let m = try GBDTCommand.loadModel(model)
                let d = try data.load(path, query: nil, weight: nil, featureCount: m.featureCount)
                let p = try m.predict(d.features, raw: raw)
                let text = p.map { String(format: "%.9g", $0) }.joined(separator: "\n") + "\n"
                if let out { try AtomicFile.write(Array(text.utf8), to: out) } else { print(text, terminator: "") }
            }
        }
    }

    struct Explain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Per-row TreeSHAP contributions: the expected value plus the top features, which sum to the raw score.")
        @Option(help: "Model file.") var model: String
        @OptionGroup var data: DataOptions
        @Option(help: "Explain the first N rows.") var rows: Int = 5
        @Option(help: "Contributions shown per row.") var top: Int = 5

        func run() throws {
            try FunnelCLI.run {
                guard let path = data.data else { throw ValidationError("--data is required") }
                let m = try GBDTCommand.loadModel(model)
                let d = try data.load(path, query: nil, weight: nil, featureCount: m.featureCount)
                for r in 0..<min(rows, d.rowCount) {
                    let row = d.features.row(r)
                    let e = try m.explain(row)
                    let raw = row.withUnsafeBufferPointer { m.rawScore($0.baseAddress!) }
                    let parts = e.top(top).map { "\(m.featureNames[$0.feature])=\(fmt(Double(row[$0.feature]), 3)): \(String(format: "%+.4f", $0.contribution))" }
                    print("row \(r): raw \(fmt(raw, 4)) = expected \(fmt(e.expectedValue, 4)) + " + parts.joined(separator: ", ")
                          + (m.featureCount > top ? ", ..." : ""))
                }
            }
        }
    }

    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Prediction throughput on one thread: rows per second in batches of 1 and of 1,000 (median of repeats).")
        @Option(help: "Model file.") var model: String
        @OptionGroup var data: DataOptions
        @Option(help: "Repeats (the median is reported).") var repeats: Int = 5
        @Option(help: "Write the figures as JSON.") var json: String?

        func run() throws {
            try FunnelCLI.run {
                guard let path = data.data else { throw ValidationError("--data is required") }
                let m = try GBDTCommand.loadModel(model)
                let d = try data.load(path, query: nil, weight: nil, featureCount: m.featureCount)
                let predictor = GBDTPredictor(m)
                let cols = d.featureCount, n = d.rowCount
                var out = [Double](repeating: 0, count: n)
                var single = [Double](), batch = [Double]()
                var checksum = 0.0
                d.features.storage.withUnsafeBufferPointer { xp in
                    out.withUnsafeMutableBufferPointer { op in
                        let xp = xp.baseAddress!, op = op.baseAddress!
                        for _ in 0..<max(1, repeats) {
                            var t = now()
                            for r in 0..<n { op[r] = predictor.predict(xp + r * cols) }
                            single.append(Double(n) / (now() - t))
                            checksum += op[n - 1]
                            t = now()
                            var lo = 0
                            while lo < n {
                                let hi = min(n, lo + 1000)
                                predictor.predict(xp + lo * cols, rows: hi - lo, stride: cols, into: op + lo)
                                lo = hi
                            }
                            batch.append(Double(n) / (now() - t))
                            checksum += op[n - 1]
                        }
                    }
                }
                single.sort()
                batch.sort()
                let s1 = single[single.count / 2], b1 = batch[batch.count / 2]
                print("\(m.trees.count) trees, \(n) rows: batch 1: \(fmt(s1, 0)) rows/s   batch 1000: \(fmt(b1, 0)) rows/s   (checksum \(fmt(checksum, 3)))")
                if let json {
                    let obj: [String: Double] = ["rows_per_second_batch1": s1, "rows_per_second_batch1000": b1, "trees": Double(m.trees.count)]
                    let bytes = try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
                    try AtomicFile.write(Array(bytes) + [10], to: json)
                }
            }
        }
    }

    struct Dump: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print trees as text: one line per node.")
        @Option(help: "Model file.") var model: String
        @Option(help: "Only this tree (0-based).") var tree: Int?

        func run() throws {
            try FunnelCLI.run {
                let m = try GBDTCommand.loadModel(model)
                print("objective \(m.objective.rawValue)  init \(m.initScore)  trees \(m.trees.count)  features \(m.featureCount)")
                for (ti, t) in m.trees.enumerated() where tree == nil || tree == ti {
                    print("tree \(ti): \(t.leafValue.count) leaves")
                    func show(_ n: Int32, _ indent: String) {
                        if n < 0 {
                            print("\(indent)leaf \(~n): \(t.leafValue[Int(~n)])  (n=\(Int(t.leafCount[Int(~n)])))")
                            return
                        }
                        let i = Int(n)
                        print("\(indent)\(m.featureNames[Int(t.feature[i])]) <= \(t.threshold[i])  gain \(t.gain[i])  n=\(Int(t.internalCount[i]))"
                              + (t.defaultLeft[i] ? "  missing left" : ""))
                        show(t.left[i], indent + "  ")
                        show(t.right[i], indent + "  ")
                    }
                    show(t.isLeafOnly ? -1 : 0, "  ")
                }
            }
        }
    }

    struct Importance: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Feature importance by split count and by gain.")
        @Option(help: "Model file.") var model: String
        @Option(help: "Show the top N features.") var top: Int = 20

        func run() throws {
            try FunnelCLI.run {
                let m = try GBDTCommand.loadModel(model)
                let splits = m.importance(), gains = m.importance(byGain: true)
                let order = (0..<m.featureCount).sorted { gains[$0] > gains[$1] }.prefix(top)
                printAligned(header: ["feature", "splits", "gain"], rows: order.map { [m.featureNames[$0], String(Int(splits[$0])), fmt(gains[$0], 2)] })
            }
        }
    }
}
