import Foundation
import LinearAlgebra

/// A lexical inverted index scored with Okapi BM25: the second candidate generator of the
/// funnel, for queries typed as words.
///
/// score(q, d) = sum over query terms t of idf(t) * tf(t,d) * (k1 + 1) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl)),
/// with idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5)) (always positive).
///
/// - Complexity: indexing O(total tokens); a query O(sum of its terms' posting lengths + n log k).
public struct BM25Index: Sendable {
    public let k1: Double
    public let b: Double
    private var vocabulary: [String: Int] = [:]
    /// postings[term] = (document, term frequency), documents ascending.
    private var postings: [[(doc: Int32, tf: Int32)]] = []
    private var lengths: [Int32] = []
    private var totalLength = 0

    public init(k1: Double = 1.2, b: Double = 0.75) {
        self.k1 = k1
        self.b = b
    }

    /// Lower-cased runs of letters and digits.
    public static func tokenize(_ text: String) -> [String] {
        text.lowercased().split { !$0.isLetter && !$0.isNumber }.map(String.init)
    }

    public var documentCount: Int { lengths.count }

    /// Adds a document; its id is its position (0, 1, 2, ...).
    @discardableResult
    public mutating func add(_ text: String) -> Int {
        let doc = Int32(lengths.count)
        let tokens = Self.tokenize(text)
        var counts = [Int: Int32]()
        for t in tokens {
            let id: Int
            if let existing = vocabulary[t] { id = existing } else {
                id = postings.count
                vocabulary[t] = id
                postings.append([])
            }
            counts[id, default: 0] += 1
        }
        for (term, tf) in counts { postings[term].append((doc, tf)) }
        lengths.append(Int32(tokens.count))
        totalLength += tokens.count
        return Int(doc)
    }

    /// The inverse document frequency of a term (0 for an unknown term).
    public func idf(_ term: String) -> Double {
        guard let id = vocabulary[term] else { return 0 }
        let n = Double(documentCount), df = Double(postings[id].count)
        return log(1 + (n - df + 0.5) / (df + 0.5))
    }

    /// The `k` best documents for `query`, best first, as (id, score).
    public func search(_ query: String, k: Int) -> [(id: Int, score: Double)] {
        guard documentCount > 0, k > 0 else { return [] }
        let avg = Double(totalLength) / Double(documentCount)
        var scores = [Int32: Double]()
        for term in Set(Self.tokenize(query)) {
            guard let id = vocabulary[term] else { continue }
            let w = idf(term)
            for (doc, tf) in postings[id] {
                let f = Double(tf)
                let norm = k1 * (1 - b + b * Double(lengths[Int(doc)]) / avg)
                scores[doc, default: 0] += w * f * (k1 + 1) / (f + norm)
            }
        }
        let heap = TopK(k: k)
        for (doc, s) in scores { heap.push(Float(-s), doc) }
        // Re-read exact Double scores for the winners (the heap ranks by Float).
        return heap.drainSorted().map { (id: $0.id, score: scores[Int32($0.id)]!) }
    }
}

/// Reciprocal rank fusion (Cormack et al., 2009): sum over lists of 1 / (k + rank), rank 1-based.
/// Items missing from a list contribute nothing for it. Ties break by smaller id.
public func reciprocalRankFusion(_ lists: [[Int]], k: Double = 60, limit: Int) -> [(id: Int, score: Double)] {
    var fused = [Int: Double]()
    for list in lists {
        var seen = Set<Int>()
        for (r, id) in list.enumerated() where seen.insert(id).inserted {
            fused[id, default: 0] += 1 / (k + Double(r + 1))
        }
    }
    return fused.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(limit).map { ($0.key, $0.value) }
}
