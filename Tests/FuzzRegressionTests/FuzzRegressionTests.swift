import Foundation
import Testing
import _FuzzTargets

/// The committed fuzz corpora replayed through their targets (what `tools/fuzz` found and
/// kept). Every input must come back as an answer, never a crash; each `seed-*`, written
/// by this build's own writers, must still be accepted (a target whose seeds are refused
/// has gone stale: its mutations no longer reach the decoder behind the first check). A
/// `crash-*` file is an input that once crashed: it must now come back as an answer.
@Suite("Fuzz corpora") struct FuzzRegressionTests {
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

    @Test("every corpus input is answered, and seeds are accepted",
          arguments: FuzzTargets.all.map(\.name))
    func replay(_ name: String) throws {
        let target = try #require(FuzzTargets.target(named: name))
        for file in Self.files(name) {
            let data = Array(try Data(contentsOf: URL(fileURLWithPath: file)))
            var reason = ""
            let accepted = FuzzTargets.run(target, data) { reason = "\($0)" }
            let base = URL(fileURLWithPath: file).lastPathComponent
            if base.hasPrefix("seed-") { #expect(accepted, "\(name)/\(base) refused: \(reason)") }
        }
    }
}
