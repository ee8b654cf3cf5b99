import Foundation
import Testing
import _FuzzTargets

/// The committed fuzz corpora replayed through their targets (what `tools/fuzz` found and
/// kept). Every input must come back as an answer, never a crash; each `seed-*`, written
/// by this build's own writers, must still be accepted (a target whose seeds are refused
/// has gone stale: its mutations no longer reach the decoder behind the first check). A
/// `crash-*` file is an input that once crashed: it must now come back as an answer.
/// Async, through `FuzzTargets.answer`: the `http` target's blocking form waits for a task
/// of the pool it would be holding a thread of. Serialized: one bundle loaded at a time.
@Suite("Fuzz corpora", .serialized) struct FuzzRegressionTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../Fuzz/corpus").standardized.path

    static func files(_ target: String) -> [String] {
        let dir = "\(corpus)/\(target)"
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted().map { "\(dir)/\($0)" }
    }

    @Test("every target has committed seeds, and every corpus folder is a target")
    func coverage() throws {
        let folders = Set(try FileManager.default.contentsOfDirectory(atPath: Self.corpus))
        let names = Set(FuzzTargets.all.map(\.name))
        #expect(folders == names, "corpus folders without a target: \(folders.subtracting(names)); targets without a corpus: \(names.subtracting(folders))")
        for name in names {
            #expect(Self.files(name).contains { $0.hasPrefix("\(Self.corpus)/\(name)/seed-") }, "\(name) has no seed")
        }
    }

    /// Targets whose seeds hold checksums of trained files: the template bundle is trained
    /// by this process, and its floats differ with the BLAS kernels of the machine, so a
    /// committed seed may name other bytes. Their seeds as this build writes them here
    /// must be accepted instead.
    static let trainedBytes: Set<String> = ["bundle-manifest"]

    @Test("every corpus input is answered, and seeds are accepted",
          arguments: FuzzTargets.all.map(\.name))
    func replay(_ name: String) async throws {
        let target = try #require(FuzzTargets.target(named: name))
        for file in Self.files(name) {
            let data = Array(try Data(contentsOf: URL(fileURLWithPath: file)))
            var reason = ""
            let accepted = await FuzzTargets.answer(target, data) { reason = "\($0)" }
            let base = URL(fileURLWithPath: file).lastPathComponent
            if base.hasPrefix("seed-") && !Self.trainedBytes.contains(name) { #expect(accepted, "\(name)/\(base) refused: \(reason)") }
        }
    }

    /// Written once per process: the writers share scratch files.
    static let fresh = Result { try FuzzSeeds.all() }

    @Test("the seeds this build writes are accepted by their targets", arguments: FuzzTargets.all.map(\.name))
    func freshSeeds(_ name: String) async throws {
        let target = try #require(FuzzTargets.target(named: name))
        let seeds = try #require(try Self.fresh.get().first { $0.0 == name }?.1, "no seeds written for \(name)")
        #expect(!seeds.isEmpty)
        for (i, seed) in seeds.enumerated() {
            var reason = ""
            let accepted = await FuzzTargets.answer(target, seed) { reason = "\($0)" }
            #expect(accepted, "\(name) seed \(i + 1) refused: \(reason)")
        }
    }
}
