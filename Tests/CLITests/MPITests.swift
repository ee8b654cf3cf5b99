import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The funnel binary under Open MPI's mpirun on this machine (`--oversubscribe -np 1|2|4`):
/// the collectives against known results, and data-parallel training against one process.
@Suite("MPI: mpirun -np 1, 2, 4 on localhost", .serialized) struct MPITests {
    static let mpirun: String? = {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let p = "\(dir)/mpirun"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }()

    /// Runs `mpirun -np ranks funnel args`; root is allowed (CI runs as root), leak
    /// reports are off (MPI's own allocations outlive MPI_Finalize under ASan).
    static func mpi(_ ranks: Int, _ args: [String], in dir: String, timeout: Double = 300) throws -> CLIHardeningTests.Outcome {
        guard let mpirun else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSLocalizedDescriptionKey: "mpirun not found on PATH: tools/setup installs Open MPI (openmpi-bin)"])
        }
        return try CLIHardeningTests.run(executable: mpirun, ["--oversubscribe", "-np", "\(ranks)", CLIHardeningTests.funnel] + args,
                                         in: dir, environment: environment, timeout: timeout)
    }

    /// This process's environment with root allowed and leak reports off.
    static var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        env["ASAN_OPTIONS"] = (env["ASAN_OPTIONS"].map { $0 + ":" } ?? "") + "detect_leaks=0"
        return env
    }

    static func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "funnel-mpi-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test("mpi-check: sums, gathers, exchanges and broadcasts are right on every rank", arguments: [1, 2, 4])
    func collectives(ranks: Int) throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try Self.mpi(ranks, ["mpi-check"], in: dir)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("\(ranks) ranks over MPI"), "\(r.output)")
    }

    /// SVMlight ranking data: 90 queries, a feature with missing values, a discrete one.
    static func rankingFile(_ path: String) {
        var state: UInt64 = 7
        func next() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) / Double(1 << 53)
        }
        var text = ""
        for q in 0..<90 {
            for _ in 0..<(4 + Int(next() * 20)) {
                let x0 = next() * 2 - 1, x1 = next() * 2 - 1, x2 = Double(Int(next() * 4)), missing = next() < 0.15
                let label = max(0, min(4, Int((x0 + (missing ? 0.3 : x1) * 0.8 - 0.2 * x2 + next() * 0.4 + 1.2) * 1.5)))
                text += "\(label) qid:\(q) 0:\(x0) 1:\(missing ? "nan" : "\(x1)") 2:\(x2) 3:\(next())\n"
            }
        }
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
    }

    @Test("gbdt train on 2 and 4 ranks writes the model one process writes, byte for byte")
    func gbdtRanksEqualOneProcess() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        Self.rankingFile("\(dir)/rank.svm")
        let args = ["gbdt", "train", "--train", "rank.svm", "--rounds", "20", "--num-leaves", "15", "--min-data-in-leaf", "8",
                    "--feature-fraction", "0.75", "--seed", "5"]
        let one = try CLIHardeningTests.run(args + ["--out", "one.fgb"], in: dir)
        #expect(one.status == 0, "\(one.output)")
        let reference = FileManager.default.contents(atPath: "\(dir)/one.fgb")
        #expect(reference != nil)
        for ranks in [2, 4] {
            let r = try Self.mpi(ranks, args + ["--out", "mpi\(ranks).fgb"], in: dir)
            #expect(r.status == 0, "\(r.output)")
            #expect(r.output.contains("\(ranks) ranks"), "\(r.output)")
            #expect(FileManager.default.contents(atPath: "\(dir)/mpi\(ranks).fgb") == reference, "\(ranks) ranks wrote a different model")
        }
    }

    @Test("funnel train with the towers on 2 ranks: a bundle whose test HR@10 is within 0.05 of one process's")
    func towersOnTwoRanks() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let g = try CLIHardeningTests.run(["generate", "catalog", "--users", "300", "--items", "200", "--interactions", "12000", "--out", "cat"], in: dir)
        #expect(g.status == 0, "\(g.output)")
        let args = ["train", "--interactions", "cat/interactions.csv", "--items", "cat/items.csv", "--users", "cat/users.csv",
                    "--schema", "cat/schema.json", "--epochs", "4", "--no-als", "--no-tune", "--no-ranker"]
        let one = try CLIHardeningTests.run(args + ["--json", "one.json", "--out", "one"], in: dir, timeout: 300)
        #expect(one.status == 0, "\(one.output)")
        let two = try Self.mpi(2, args + ["--json", "two.json", "--out", "two"], in: dir)
        #expect(two.status == 0, "\(two.output)")
        #expect(two.output.contains("towers trained data-parallel on 2 ranks"), "\(two.output)")
        #expect(FileManager.default.fileExists(atPath: "\(dir)/two/manifest.json") || FileManager.default.fileExists(atPath: "\(dir)/two"))
        func hr(_ file: String) throws -> Double {
            let data = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(file)"))
            let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any]
            return obj?["HR@10"] as? Double ?? -1
        }
        let (a, b) = (try hr("one.json"), try hr("two.json"))
        #expect(a > 0.05 && b > 0.05, "HR@10 \(a) and \(b): the towers did not learn")
        #expect(abs(a - b) <= 0.05, "HR@10 one process \(a), two ranks \(b)")
    }

    @Test("kill -9 of a 2-rank training job after a checkpoint: the same command resumes after the saved epoch and finishes")
    func checkpointSurvivesKill() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let g = try CLIHardeningTests.run(["generate", "catalog", "--users", "1500", "--items", "600", "--interactions", "60000", "--out", "cat"], in: dir)
        #expect(g.status == 0, "\(g.output)")
        guard let mpirun = Self.mpirun else { Issue.record("mpirun not found on PATH: tools/setup installs Open MPI"); return }
        let args = ["--oversubscribe", "-np", "2", CLIHardeningTests.funnel, "train", "--interactions", "cat/interactions.csv",
                    "--items", "cat/items.csv", "--users", "cat/users.csv", "--schema", "cat/schema.json", "--epochs", "12", "--patience", "0",
                    "--no-als", "--no-tune", "--no-ranker", "--checkpoint", "ck", "--out", "bundle"]
        let env = Self.environment
        let job = Process()
        job.executableURL = URL(fileURLWithPath: mpirun)
        job.arguments = args
        job.currentDirectoryURL = URL(fileURLWithPath: dir)
        job.environment = env
        job.standardOutput = FileHandle.nullDevice
        job.standardError = FileHandle.nullDevice
        try job.run()
        let state = "\(dir)/ck/towers.json"
        let deadline = Date().addingTimeInterval(240)
        while !FileManager.default.fileExists(atPath: state) && job.isRunning && Date() < deadline { usleep(50_000) }
        #expect(FileManager.default.fileExists(atPath: state), "no checkpoint appeared")
        // The ranks are mpirun's children: kill them first, then mpirun, all with SIGKILL.
        let ranks = Process()
        ranks.executableURL = URL(fileURLWithPath: "/usr/bin/pkill")
        ranks.arguments = ["-KILL", "-P", "\(job.processIdentifier)"]
        try ranks.run()
        ranks.waitUntilExit()
        kill(job.processIdentifier, SIGKILL)
        job.waitUntilExit()
        #expect(job.terminationReason == .uncaughtSignal, "the job ended before it was killed")
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/bundle/manifest.json"))
        let again = try CLIHardeningTests.run(executable: mpirun, args, in: dir, environment: env, timeout: 400)
        #expect(again.status == 0, "\(again.output)")
        #expect(again.output.contains("resuming the towers from the checkpoint in ck after epoch"), "\(again.output)")
        #expect(!FileManager.default.fileExists(atPath: state), "the finished run left its checkpoint")
        #expect(FileManager.default.fileExists(atPath: "\(dir)/bundle"))
    }

    @Test("one rank's error ends the whole job with that error, instead of leaving the others waiting")
    func oneRankFailingEndsTheJob() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        Self.rankingFile("\(dir)/rank.svm")
        try FileManager.default.createDirectory(atPath: "\(dir)/taken", withIntermediateDirectories: true)
        // Rank 0 alone checks the destination and fails; rank 1 has gone on to load the data.
        let g = try CLIHardeningTests.run(["generate", "catalog", "--users", "100", "--items", "80", "--interactions", "3000", "--out", "cat"], in: dir)
        #expect(g.status == 0, "\(g.output)")
        let t0 = Date()
        let r = try Self.mpi(2, ["train", "--interactions", "cat/interactions.csv", "--epochs", "1", "--no-tune", "--out", "taken"], in: dir, timeout: 120)
        #expect(r.exited && r.status != 0, "\(r.output)")
        #expect(r.output.contains("exists already"), "\(r.output)")
        #expect(Date().timeIntervalSince(t0) < 100, "the job hung until the timeout")
    }
}
