import Foundation
import Testing
import Engine
import LinearAlgebra

@Suite("Answer JSON")
struct AnswerJSONTests {
    /// Strings with everything JSON escapes (quotes, backslashes, slashes, every control
    /// character), non-ASCII text and emoji.
    static func text(_ rng: inout SeededGenerator) -> String {
        let pieces = ["a", "Zz", "\"", "\\", "/", "é", "😀", "\u{2028}", "\u{7f}", " ", "日本", "x/y"]
            + (0..<0x20).map { String(UnicodeScalar(UInt8($0))) }
        return (0..<Int(rng.next() % 8)).map { _ in pieces[Int(rng.next() % UInt64(pieces.count))] }.joined()
    }

    static func number(_ rng: inout SeededGenerator) -> Double {
        switch rng.next() % 6 {
        case 0: return Double(Int(rng.next() % 2000)) - 1000  // integral: written without ".0"
        case 1: return Double(Float(rng.nextUnit()))  // a Float widened, as scores are
        case 2: return Double(rng.nextUnit()) * pow(10, Double(Int(rng.next() % 40)) - 20)
        case 3: return -0.0
        case 4: return 1e16 * Double(rng.next() % 1000)
        default: return -Double(rng.nextUnit())
        }
    }

    static func answer(_ rng: inout SeededGenerator) -> EngineAnswer {
        func maybe<T>(_ make: () -> T) -> T? { rng.next() % 3 == 0 ? nil : make() }
        let items = (0..<Int(rng.next() % 6)).map { _ in
            ServedItem(item: text(&rng), title: maybe { text(&rng) }, category: maybe { text(&rng) }, score: number(&rng),
                       rankerScore: maybe { number(&rng) },
                       explanation: .init(retrievalRank: maybe { Int(rng.next() % 1000) }, retrievalScore: maybe { number(&rng) },
                                          lexicalRank: maybe { Int(rng.next() % 50) },
                                          rankerContributions: maybe { (0..<Int(rng.next() % 4)).map { _ in .init(feature: text(&rng), value: number(&rng)) } },
                                          rules: maybe { (0..<Int(rng.next() % 3)).map { _ in text(&rng) } }))
        }
        var stages = [String: Double]()
        for _ in 0..<Int(rng.next() % 5) { stages[text(&rng)] = number(&rng) }
        return EngineAnswer(model: maybe { text(&rng) }, version: maybe { text(&rng) }, user: maybe { text(&rng) }, query: maybe { text(&rng) },
                            path: (0..<Int(rng.next() % 4)).map { _ in text(&rng) }, latencyUs: number(&rng), stagesUs: stages, items: items)
    }

    @Test("is byte for byte what JSONEncoder with sorted keys writes, on generated answers")
    func againstJSONEncoder() throws {
        var rng = SeededGenerator(seed: 41)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        for _ in 0..<3000 {
            let a = Self.answer(&rng)
            let expected = try encoder.encode(a)
            let got = try a.jsonBytes()
            guard got == Array(expected) else {
                Issue.record("\(String(decoding: got, as: UTF8.self)) is not JSONEncoder's \(String(decoding: expected, as: UTF8.self))")
                return
            }
        }
    }

    @Test("refuses a non-finite number, as JSONEncoder does")
    func nonFinite() {
        for bad in [Double.nan, .infinity, -.infinity] {
            let a = EngineAnswer(model: nil, version: nil, user: "u", query: nil, path: [], latencyUs: bad, stagesUs: [:], items: [])
            #expect(throws: EncodingError.self) { try a.jsonBytes() }
        }
    }
}
