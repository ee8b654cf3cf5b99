import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The `funnel` binary against the inputs of the hardening issue, as an operator would give
/// them: each must end in a clear error naming what is wrong, with exit status 1 (a failed
/// command) or 64 (a bad flag), never a trap, an abort, a hang or a silent success.
@Suite("CLI: bad input gets a clear error", .serialized) struct CLIHardeningTests {
    /// The funnel executable built beside this test runner.
    static let funnel: String = {
        let runner = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).resolvingSymlinksInPath()
        var dir = runner.deletingLastPathComponent()
        for _ in 0..<3 {
            let candidate = dir.appendingPathComponent("funnel").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return runner.deletingLastPathComponent().appendingPathComponent("funnel").path
    }()

    struct Outcome {
        let status: Int32
        let exited: Bool
        let output: String
    }

    static func run(_ args: [String], in dir: String, timeout: Double = 120) throws -> Outcome {
        try run(executable: funnel, args, in: dir, timeout: timeout)
    }

    /// Runs `executable` with `args` in `dir` (stdout and stderr together), killed after `timeout`.
    static func run(executable: String, _ args: [String], in dir: String, environment: [String: String]? = nil,
                    timeout: Double = 120) throws -> Outcome {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        if let environment { p.environment = environment }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning { p.terminate(); p.waitUntilExit() }
        return Outcome(status: p.terminationStatus, exited: p.terminationReason == .exit, output: String(decoding: data, as: UTF8.self))
    }

    /// A folder with a small trained model (`reg/shop/v1`) and a second one (`other`).
    final class World: @unchecked Sendable {
        let dir: String
        init() throws {
            dir = NSTemporaryDirectory() + "funnel-cli-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for (seed, users) in [(1, 60), (2, 70)] {
                let cat = "cat\(seed)"
                let g = try run(["generate", "catalog", "--users", "\(users)", "--items", "120", "--interactions", "2500", "--out", cat], in: dir)
                guard g.status == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: ["out": g.output]) }
                let t = try run(["train", "--interactions", "\(cat)/interactions.csv", "--items", "\(cat)/items.csv", "--users", "\(cat)/users.csv",
                                 "--schema", "\(cat)/schema.json", "--name", seed == 1 ? "shop" : "other", "--registry", "reg",
                                 "--epochs", "1", "--no-als", "--no-tune", "--seed", "\(seed)"], in: dir)
                guard t.status == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: ["out": t.output]) }
            }
        }
        func write(_ name: String, _ text: String) { FileManager.default.createFile(atPath: "\(dir)/\(name)", contents: Data(text.utf8)) }
        func write(_ name: String, _ bytes: [UInt8]) { FileManager.default.createFile(atPath: "\(dir)/\(name)", contents: Data(bytes)) }
        deinit { try? FileManager.default.removeItem(atPath: dir) }
    }

    static let world: World? = try? World()

    static func texmex<T: FixedWidthInteger>(_ rows: [[T]]) -> [UInt8] {
        var out = [UInt8]()
        for r in rows {
            withUnsafeBytes(of: Int32(r.count).littleEndian) { out += $0 }
            for v in r { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        }
        return out
    }

    static func fvecs(_ rows: [[Float]]) -> [UInt8] { texmex(rows.map { $0.map(\.bitPattern) }) }

    /// (arguments, what the error must say).
    static func cases(_ w: World) -> [([String], String)] {
        w.write("huge-index.svm", String(repeating: "1 qid:1 16777215:1\n", count: 40))
        w.write("wide.svm", String(repeating: "1 qid:1 1048575:1\n", count: 400))
        w.write("ok.svm", "1 qid:1 1:0.5 2:1\n0 qid:1 1:1\n")
        w.write("max.query", "9223372036854775807\n")
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../GBDTTests/Fixtures/lgb_nan.model.txt").path
        let lgb = (try? String(contentsOfFile: fixture, encoding: .utf8)) ?? ""
        w.write("lgb-huge.txt", lgb.replacingOccurrences(of: "max_feature_idx=5", with: "max_feature_idx=9223372036854775807"))
        w.write("lgb-nan.txt", lgb.replacingOccurrences(of: "sigmoid:1", with: "sigmoid:nan"))
        mkfifo("\(w.dir)/fifo.svm", 0o600)
        mkfifo("\(w.dir)/fifo.fvecs", 0o600)
        w.write("base.fvecs", fvecs((0..<10).map { i in (0..<4).map { Float(i * 4 + $0) } }))
        w.write("query.fvecs", fvecs([[0, 1, 2, 3], [4, 5, 6, 7]]))
        w.write("gt.ivecs", texmex([[Int32(0), 50], [1, 2]]))
        // A bundle whose index comes from another model; a registry whose manifest is a FIFO.
        let fm = FileManager.default
        try? fm.copyItem(atPath: "\(w.dir)/reg/shop/v1", toPath: "\(w.dir)/swapped")
        try? fm.removeItem(atPath: "\(w.dir)/swapped/items.hnsw")
        try? fm.copyItem(atPath: "\(w.dir)/reg/other/v1/items.hnsw", toPath: "\(w.dir)/swapped/items.hnsw")
        try? fm.createDirectory(atPath: "\(w.dir)/fiforeg", withIntermediateDirectories: true)
        mkfifo("\(w.dir)/fiforeg/registry.fnl", 0o600)
        let train = ["gbdt", "train", "--train", "ok.svm", "--out", "m.gbdt"]
        let trainCatalog = ["train", "--interactions", "cat1/interactions.csv", "--items", "cat1/items.csv", "--users", "cat1/users.csv",
                            "--schema", "cat1/schema.json", "--epochs", "1", "--no-als", "--no-tune"]
        let bench = ["ann-bench", "--base", "base.fvecs", "--query", "query.fvecs"]
        return [
            (["gbdt", "train", "--train", "huge-index.svm", "--out", "m.gbdt"], "feature index 16777215 is over the limit"),
            (["gbdt", "train", "--train", "wide.svm", "--out", "m.gbdt"], "cells per value"),
            (["gbdt", "predict", "--model", "reg/shop/v1/ranker.gbdt", "--data", "huge-index.svm"], "over the limit"),
            (["gbdt", "train", "--train", "ok.svm", "--query", "max.query", "--out", "m.gbdt"], "group size '9223372036854775807'"),
            (["gbdt", "predict", "--model", "lgb-huge.txt", "--data", "ok.svm"], "max_feature_idx 9223372036854775807 is outside"),
            (["gbdt", "predict", "--model", "lgb-nan.txt", "--data", "ok.svm"], "sigmoid:nan"),
            (train + ["--learning-rate", "inf"], "learning rate must be positive and finite"),
            (train + ["--lambda-l2", "inf"], "lambda_l2 must be non-negative and finite"),
            (train + ["--min-sum-hessian-in-leaf", "nan"], "min_sum_hessian_in_leaf"),
            (train + ["--threads", "0"], "--threads must be in 1...1024, got 0"),
            (train + ["--delimiter", ""], "delimiter"),
            (["gbdt", "train", "--train", "fifo.svm", "--out", "m.gbdt"], "not a regular file"),
            (["recommend", "--model", "reg/shop/v1", "--user", "u1", "--k", "1000000000"], "k must be in 1...10000"),
            (["recommend", "--model", "reg/shop/v1", "--user", "u1", "--k", "0"], "k must be in 1...10000"),
            (["similar", "--model", "reg/shop/v1", "--item", "i1", "--k", "1000000000"], "k must be in 1...10000"),
            (["recommend", "--model", "swapped", "--user", "u1"], "items.hnsw"),
            (["registry", "list", "--registry", "/no/such"], "no registry at /no/such"),
            (["registry", "list", "--registry", "fiforeg"], "not a regular file"),
            (["serve", "--model", "shop", "--registry", "reg", "--port", "99999"], "port must be in 1...65535, got 99999"),
            (bench + ["--ef", "16,abc"], "--ef must be a comma-separated list"),
            (bench + ["--ef", "0"], "--ef must be a comma-separated list"),
            (bench + ["--k", "1000000000"], "--k must be in 1...10000"),
            (bench + ["--threads", "0"], "--threads must be in 1...1024"),
            (bench + ["--gt", "gt.ivecs", "--k", "2"], "50"),
            (["ann-bench", "--base", "fifo.fvecs", "--query", "query.fvecs"], "not a regular file"),
            // Destinations are checked before any work (no training output before the error).
            (trainCatalog + ["--name", "bad/name", "--registry", "reg"], "model name 'bad/name'"),
            (trainCatalog + ["--out", "reg/shop/v1"], "--out reg/shop/v1 exists already"),
            (["retrain", "--model", "shop", "--registry", "reg", "--interactions", "cat1/interactions.csv", "--out", "reg/shop/v1"], "exists already"),
        ]
    }

    @Test("each bad input of the issue ends in a clear error, never a trap or a silent success")
    func badInputs() throws {
        let w = try #require(Self.world, "could not train the test models with \(Self.funnel)")
        for (args, expected) in Self.cases(w) {
            let r = try Self.run(args, in: w.dir, timeout: 60)
            let shown = "funnel \(args.joined(separator: " ")) -> exit \(r.status): \(r.output.suffix(300))"
            #expect(r.exited, "killed by a signal: \(shown)")
            #expect(r.status == 1 || r.status == 64, "\(shown)")
            #expect(r.output.contains(expected), "expected '\(expected)' in: \(shown)")
            #expect(!r.output.contains("HR@10"), "the error came after the work: \(shown)")
        }
    }
}
