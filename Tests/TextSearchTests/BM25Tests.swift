import Foundation
import Testing
import TextSearch

@Suite("BM25 and rank fusion")
struct BM25Tests {
    @Test("scores equal the BM25 formula computed by hand")
    func byHand() {
        var index = BM25Index()
        index.add("the quick brown fox")           // 4 tokens
        index.add("the lazy dog, the lazy cat")    // 6 tokens
        index.add("quick quick fox jumps")         // 4 tokens
        let avg = 14.0 / 3, k1 = 1.2, b = 0.75
        func idf(_ df: Double) -> Double { log(1 + (3 - df + 0.5) / (df + 0.5)) }
        func term(_ tf: Double, _ len: Double, _ df: Double) -> Double {
            idf(df) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg))
        }
        let r = index.search("Quick FOX", k: 3)
        let doc0 = term(1, 4, 2) + term(1, 4, 2)   // quick (df 2), fox (df 2)
        let doc2 = term(2, 4, 2) + term(1, 4, 2)
        #expect(r.map(\.id) == [2, 0])
        #expect(abs(r[0].score - doc2) < 1e-12 && abs(r[1].score - doc0) < 1e-12)
        #expect(index.search("lazy", k: 5).map(\.id) == [1])
        #expect(index.search("unknown words", k: 5).isEmpty)
        #expect(abs(index.idf("the") - idf(2)) < 1e-12 && index.idf("zebra") == 0)
    }

    @Test("reciprocal rank fusion sums 1/(k + rank) over lists")
    func rrf() {
        let fused = reciprocalRankFusion([[1, 2, 3], [3, 1, 4]], k: 60, limit: 4)
        let s1 = 1 / 61.0 + 1 / 62.0, s3 = 1 / 63.0 + 1 / 61.0, s2 = 1 / 62.0, s4 = 1 / 63.0
        #expect(fused.map(\.id) == [1, 3, 2, 4])
        #expect(abs(fused[0].score - s1) < 1e-15 && abs(fused[1].score - s3) < 1e-15)
        #expect(abs(fused[2].score - s2) < 1e-15 && abs(fused[3].score - s4) < 1e-15)
    }
}
