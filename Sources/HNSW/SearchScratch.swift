import Foundation
import LinearAlgebra

/// Which distance a `NodeHeap` keeps on top.
@usableFromInline
protocol HeapOrder {
    static func above(_ a: Float, _ b: Float) -> Bool
}

/// Smallest distance on top: the candidates still to expand.
@usableFromInline
enum Nearest: HeapOrder {
    @inline(__always) @usableFromInline static func above(_ a: Float, _ b: Float) -> Bool { a < b }
}

/// Largest distance on top: the bounded set of best results, worst first out.
@usableFromInline
enum Farthest: HeapOrder {
    @inline(__always) @usableFromInline static func above(_ a: Float, _ b: Float) -> Bool { a > b }
}

/// A binary heap of (distance, node) on reusable storage; the order is a type parameter,
/// so each use is specialized with no runtime branch on it.
@usableFromInline
struct NodeHeap<Order: HeapOrder> {
    @usableFromInline var dist: UnsafeMutablePointer<Float>
    @usableFromInline var node: UnsafeMutablePointer<UInt32>
    @usableFromInline var capacity: Int
    @usableFromInline var count = 0

    init(capacity: Int) {
        self.capacity = max(16, capacity)
        dist = .allocate(capacity: self.capacity)
        node = .allocate(capacity: self.capacity)
    }

    func free() {
        dist.deallocate()
        node.deallocate()
    }

    @inline(__always) var topDistance: Float { dist[0] }
    @inline(__always) var topNode: UInt32 { node[0] }

    @inline(__always)
    mutating func push(_ d: Float, _ n: UInt32) {
        if count == capacity { growStorage() }
        var i = count
        count += 1
        while i > 0 {
            let p = (i - 1) >> 1
            if !Order.above(d, dist[p]) { break }
            dist[i] = dist[p]
            node[i] = node[p]
            i = p
        }
        dist[i] = d
        node[i] = n
    }

    @inline(__always)
    mutating func pop() {
        count -= 1
        guard count > 0 else { return }
        let d = dist[count], n = node[count]
        var i = 0
        while true {
            let l = 2 * i + 1
            if l >= count { break }
            var c = l
            if l + 1 < count && Order.above(dist[l + 1], dist[l]) { c = l + 1 }
            if !Order.above(dist[c], d) { break }
            dist[i] = dist[c]
            node[i] = node[c]
            i = c
        }
        dist[i] = d
        node[i] = n
    }

    @inline(never)
    mutating func growStorage() {
        let newCap = capacity * 2
        let d = UnsafeMutablePointer<Float>.allocate(capacity: newCap)
        let n = UnsafeMutablePointer<UInt32>.allocate(capacity: newCap)
        d.update(from: dist, count: count)
        n.update(from: node, count: count)
        dist.deallocate()
        node.deallocate()
        dist = d
        node = n
        capacity = newCap
    }
}

typealias MinHeap = NodeHeap<Nearest>
typealias MaxHeap = NodeHeap<Farthest>

/// Per-search buffers: a visited set with epoch tags (no clearing between searches),
/// the two heaps, a sorted-candidates buffer and room for a quantized query.
final class SearchScratch {
    var visited: UnsafeMutablePointer<UInt16>
    var visitedCapacity: Int
    var epoch: UInt16 = 0
    var candidates: MinHeap
    var results: MaxHeap
    /// Sorted output of a layer search: (distance, node), nearest first.
    var sortedDist: UnsafeMutablePointer<Float>
    var sortedNode: UnsafeMutablePointer<UInt32>
    var sortedCapacity: Int
    /// Unvisited neighbors of one node and their distances (at most 2M <= 1024).
    let batchIds: UnsafeMutablePointer<UInt32>
    let batchDist: UnsafeMutablePointer<Float>
    /// Re-scoring heap for quantized searches.
    let rescore = TopK(k: 16)
    var rescoreIds = UnsafeMutablePointer<Int32>.allocate(capacity: 64)
    var rescoreDist = UnsafeMutablePointer<Float>.allocate(capacity: 64)
    var rescoreCapacity = 64

    func ensureRescore(_ k: Int) {
        guard k > rescoreCapacity else { return }
        rescoreIds.deallocate()
        rescoreDist.deallocate()
        rescoreCapacity = k
        rescoreIds = .allocate(capacity: k)
        rescoreDist = .allocate(capacity: k)
    }
    /// The query times the quantizer's per-dimension scales (int8 storage).
    var queryScaled: UnsafeMutablePointer<Int16>
    /// The query's outlier dimensions and weights (int8 storage; `ScalarQuantizer.maxOutliers + 1`).
    var outlierDims: UnsafeMutablePointer<Int32>
    var outlierWeights: UnsafeMutablePointer<Float>
    var queryFloats: UnsafeMutablePointer<Float>
    let dimension: Int

    init(dimension: Int) {
        visitedCapacity = 1
        visited = .allocate(capacity: visitedCapacity)
        visited.initialize(repeating: 0, count: visitedCapacity)
        candidates = MinHeap(capacity: 256)
        results = MaxHeap(capacity: 256)
        sortedCapacity = 256
        sortedDist = .allocate(capacity: sortedCapacity)
        sortedNode = .allocate(capacity: sortedCapacity)
        self.dimension = dimension
        queryScaled = .allocate(capacity: dimension)
        outlierDims = .allocate(capacity: ScalarQuantizer.maxOutliers + 1)
        outlierWeights = .allocate(capacity: ScalarQuantizer.maxOutliers + 1)
        batchIds = .allocate(capacity: 1024)
        batchDist = .allocate(capacity: 1024)
        queryFloats = .allocate(capacity: dimension)
    }

    deinit {
        visited.deallocate()
        candidates.free()
        results.free()
        sortedDist.deallocate()
        sortedNode.deallocate()
        queryScaled.deallocate()
        outlierDims.deallocate()
        outlierWeights.deallocate()
        queryFloats.deallocate()
        batchIds.deallocate()
        batchDist.deallocate()
        rescoreIds.deallocate()
        rescoreDist.deallocate()
    }

    /// Starts a new search over `capacity` slots.
    @inline(__always)
    func beginSearch(capacity: Int) {
        if capacity > visitedCapacity {
            visited.deallocate()
            visitedCapacity = capacity + capacity / 2
            visited = .allocate(capacity: visitedCapacity)
            visited.initialize(repeating: 0, count: visitedCapacity)
            epoch = 0
        }
        epoch &+= 1
        if epoch == 0 {
            visited.update(repeating: 0, count: visitedCapacity)
            epoch = 1
        }
        candidates.count = 0
        results.count = 0
    }

    func ensureSorted(_ n: Int) {
        guard n > sortedCapacity else { return }
        sortedDist.deallocate()
        sortedNode.deallocate()
        sortedCapacity = n * 2
        sortedDist = .allocate(capacity: sortedCapacity)
        sortedNode = .allocate(capacity: sortedCapacity)
    }

    /// Moves the result heap into the sorted buffers, nearest first; returns the count.
    func drainResultsSorted() -> Int {
        let n = results.count
        ensureSorted(n)
        var i = n - 1
        while results.count > 0 {
            sortedDist[i] = results.topDistance
            sortedNode[i] = results.topNode
            results.pop()
            i -= 1
        }
        return n
    }
}

/// Reusable scratch buffers shared by searches on any thread.
final class ScratchPool: @unchecked Sendable {
    private var free: [SearchScratch] = []
    private let lock = NSLock()

    /// A scratch for `dimension`-d queries; its visited set is sized by `beginSearch`, under
    /// the index lock, so taking one reads nothing the writers change.
    func take(dimension: Int) -> SearchScratch {
        lock.lock()
        let s = free.popLast()
        lock.unlock()
        return s ?? SearchScratch(dimension: dimension)
    }

    func give(_ s: SearchScratch) {
        lock.lock()
        if free.count < 64 { free.append(s) }
        lock.unlock()
    }
}
