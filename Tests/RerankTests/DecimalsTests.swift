import Foundation
import Testing
import Rerank
import LinearAlgebra

@Suite("Fixed-point text")
struct DecimalsTests {
    /// Values where a naive `(x * 1000).rounded()` goes wrong: exact binary ties (0.0625),
    /// decimal "ties" that are not ties in binary (0.0015 is stored just below), a product
    /// that rounds onto a tie, signed zeros and negatives that round to zero.
    static let hard: [Double] = [0, -0.0, 0.0625, 0.1875, -0.0625, 0.0015, 0.0025, 1.0005, 2.0005, 0.9995, 0.0005, -0.0005,
                                 -0.0001, 1e-9, -1e-9, 0.5, 1.5, 2.5, 123.4565, 999.9995, 1e11 + 0.0005, 0.30000000000000004]

    @Test("equals String(format: %.Nf) on hard cases and random values of every magnitude", arguments: [0, 1, 2, 3, 6])
    func againstPrintf(places: Int) {
        var rng = SeededGenerator(seed: UInt64(places) + 11)
        var values = Self.hard
        for _ in 0..<20_000 {
            let magnitude = Double(Int(rng.next() % 16)) - 6  // 1e-6 ... 1e9
            var x = Double(rng.nextUnit()) * pow(10, magnitude)
            if rng.next() % 2 == 0 { x = -x }
            values.append(x)
            // Decimal ties at this precision (k + 0.5) / 10^places and their neighbours.
            let tie = (Double(Int(rng.next() % 100_000)) + 0.5) / pow(10, Double(places))
            values += [tie, tie.nextUp, tie.nextDown]
        }
        for x in values {
            #expect(Decimals.fixed(x, places: places) == String(format: "%.\(places)f", x), "x = \(x)")
        }
    }

    @Test("leaves what it cannot do exactly to C: huge and non-finite values")
    func outsideRange() {
        for x in [1e300, -1e17, Double.infinity, -Double.infinity, Double.nan] {
            #expect(Decimals.fixed(x, places: 3) == String(format: "%.3f", x))
        }
    }
}
