/// One search result: a position (or id) and its distance to the query (smaller is nearer).
public struct Neighbor: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var id: Int
    public var distance: Float

    @inlinable
    public init(id: Int, distance: Float) {
        self.id = id
        self.distance = distance
    }

    public var description: String { "(\(id), \(distance))" }
}

/// A bounded selection of the `k` smallest distances: a binary max-heap on
/// preallocated storage, reused across queries without allocating.
///
/// Ties at equal distance keep the smaller id, so results are deterministic
/// whatever order candidates arrive in.
/// - Complexity: `push` is O(1) when the candidate is rejected, O(log k) otherwise.
public final class TopK {
    /// The capacity: how many of the nearest are kept.
    @usableFromInline var _k: Int
    @inlinable public var k: Int { _k }
    /// How many are held now (at most `k`).
    @usableFromInline var _count: Int = 0
    @inlinable public var count: Int { _count }
    @usableFromInline var dist: UnsafeMutablePointer<Float>
    @usableFromInline var ids: UnsafeMutablePointer<Int32>

    public init(k: Int) {
        precondition(k >= 0, "k must be non-negative")
        self._k = k
        dist = .allocate(capacity: max(k, 1))
        ids = .allocate(capacity: max(k, 1))
    }

    deinit {
        dist.deallocate()
        ids.deallocate()
    }

    /// Empties the heap, optionally with a new capacity.
    public func reset(k newK: Int? = nil) {
        if let newK, newK != k {
            precondition(newK >= 0, "k must be non-negative")
            dist.deallocate()
            ids.deallocate()
            _k = newK
            dist = .allocate(capacity: max(newK, 1))
            ids = .allocate(capacity: max(newK, 1))
        }
        _count = 0
    }

    /// The distance a candidate must beat to enter: the current k-th best, or +infinity
    /// while fewer than `k` are held.
    @inlinable
    public var threshold: Float {
        count < k ? .infinity : dist[0]
    }

    /// The k-th best distance held (the worst kept), or nil when empty.
    public var worst: Float? { count == 0 ? nil : dist[0] }

    @inlinable @inline(__always)
    static func worse(_ d1: Float, _ i1: Int32, than d2: Float, _ i2: Int32) -> Bool {
        d1 > d2 || (d1 == d2 && i1 > i2)
    }

    /// Offers a candidate; it is kept when it is among the `k` nearest seen so far.
    @inlinable
    public func push(_ d: Float, _ id: Int32) {
        if count < k {
            // Sift up.
            var i = count
            _count += 1
            while i > 0 {
                let parent = (i - 1) >> 1
                if !TopK.worse(d, id, than: dist[parent], ids[parent]) { break }
                dist[i] = dist[parent]
                ids[i] = ids[parent]
                i = parent
            }
            dist[i] = d
            ids[i] = id
            return
        }
        guard k > 0, TopK.worse(dist[0], ids[0], than: d, id) else { return }
        siftDownFromRoot(d, id)
    }

    @inlinable
    func siftDownFromRoot(_ d: Float, _ id: Int32) {
        var i = 0
        let n = count
        while true {
            let l = 2 * i + 1
            if l >= n { break }
            var c = l
            let r = l + 1
            if r < n && TopK.worse(dist[r], ids[r], than: dist[l], ids[l]) { c = r }
            if !TopK.worse(dist[c], ids[c], than: d, id) { break }
            dist[i] = dist[c]
            ids[i] = ids[c]
            i = c
        }
        dist[i] = d
        ids[i] = id
    }

    /// Removes and returns the worst element held.
    @discardableResult
    public func popWorst() -> Neighbor? {
        guard count > 0 else { return nil }
        let top = Neighbor(id: Int(ids[0]), distance: dist[0])
        _count -= 1
        if count > 0 { siftDownFromRoot(dist[count], ids[count]) }
        return top
    }

    /// Writes the held elements nearest-first into `outIds`/`outDist` (length >= k),
    /// pads the rest of the k slots with id -1 and distance +infinity, and empties the heap.
    public func drainSorted(ids outIds: UnsafeMutablePointer<Int32>, distances outDist: UnsafeMutablePointer<Float>) {
        let n = count
        for j in n..<k {
            outIds[j] = -1
            outDist[j] = .infinity
        }
        var j = n - 1
        while count > 0 {
            outIds[j] = ids[0]
            outDist[j] = dist[0]
            _count -= 1
            if count > 0 { siftDownFromRoot(dist[count], ids[count]) }
            j -= 1
        }
    }

    /// The held elements nearest-first; empties the heap.
    public func drainSorted() -> [Neighbor] {
        var out = [Neighbor]()
        out.reserveCapacity(count)
        while let n = popWorst() { out.append(n) }
        return out.reversed()
    }

    /// The indices of the `k` smallest values, nearest first (ties by index).
    /// - Complexity: O(n log k).
    public static func smallest(_ k: Int, of values: [Float]) -> [Neighbor] {
        let heap = TopK(k: k)
        for (i, v) in values.enumerated() { heap.push(v, Int32(truncatingIfNeeded: i)) }
        return heap.drainSorted()
    }
}
