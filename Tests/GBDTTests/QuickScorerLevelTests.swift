import Foundation
import Testing
import GBDT
import LinearAlgebra
import _FunnelKernels

@Suite("QuickScorer at every kernel level", .serialized)
struct QuickScorerLevelTests {
    /// Every level this CPU runs (scalar, AVX2+FMA, AVX-512), forced on this thread.
    static let levels = Array(0...Int(fk_simd_detected()))

    @Test("batch predictions equal walking each tree, exactly, for every block shape", arguments: levels)
    func againstTreeWalk(level: Int) throws {
        // Missing values and zeros in the rows: the per-node rules of both kinds are taken.
        let (data, model) = try regressionWithMissing(2000, 7, seed: 23, rounds: 40, leaves: 31, minData: 10) { x in
            sin(x[0] * 3) + x[1] * x[2] - abs(x[3]) + (x[5] > 0 ? 1 : 0)
        }
        fk_force_level(Int32(level))
        defer { fk_force_level(-1) }
        #expect(fk_simd_level() == Int32(level))
        let predictor = GBDTPredictor(model)
        // Row counts around every block: 32-row blocks, the padded block, 8-row blocks, single rows.
        for rows in [1, 7, 8, 9, 31, 32, 33, 40, 41, 63, 64, 65, 100, 500] {
            var out = [Double](repeating: 0, count: rows)
            data.features.storage.withUnsafeBufferPointer { xp in
                out.withUnsafeMutableBufferPointer { predictor.predict(xp.baseAddress!, rows: rows, stride: 7, raw: true, into: $0.baseAddress!) }
            }
            for r in 0..<rows {
                let walked = model.trees.reduce(model.initScore) { s, t in data.features.row(r).withUnsafeBufferPointer { s + t.predict($0.baseAddress!) } }
                #expect(out[r] == walked, "level \(level), \(rows) rows, row \(r)")
            }
        }
    }
}
