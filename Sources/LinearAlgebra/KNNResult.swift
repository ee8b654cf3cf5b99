/// The k nearest neighbors of a batch of queries, stored flat: query `q`'s results
/// occupy `ids[q*k ..< (q+1)*k]` and `distances[...]`, nearest first.
///
/// When fewer than `k` items exist (or pass a filter), the tail is padded with id -1
/// and distance +infinity.
public struct KNNResult: Sendable, Equatable {
    public let queryCount: Int
    public let k: Int
    public var ids: [Int32]
    public var distances: [Float]

    public init(queryCount: Int, k: Int) {
        self.queryCount = queryCount
        self.k = k
        ids = [Int32](repeating: -1, count: queryCount * k)
        distances = [Float](repeating: .infinity, count: queryCount * k)
    }

    /// The results of query `q`, nearest first, without padding.
    public func neighbors(of q: Int) -> [Neighbor] {
        precondition(q >= 0 && q < queryCount, "query \(q) out of range 0..<\(queryCount)")
        var out = [Neighbor]()
        for j in 0..<k where ids[q * k + j] >= 0 {
            out.append(Neighbor(id: Int(ids[q * k + j]), distance: distances[q * k + j]))
        }
        return out
    }
}
