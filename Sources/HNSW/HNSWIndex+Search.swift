import _FunnelKernels
import LinearAlgebra
import ExactSearch

/// Which items a search may return, decided by id inside the graph traversal.
public struct SearchFilter: @unchecked Sendable {
    let allows: (UInt64) -> Bool

    /// Items whose id satisfies `predicate`.
    public init(_ predicate: @escaping (UInt64) -> Bool) {
        allows = predicate
    }

    /// Items whose id is in `ids`.
    public static func allowing(_ ids: Set<UInt64>) -> SearchFilter { SearchFilter { ids.contains($0) } }
}

extension HNSWIndex {
    // MARK: - Public search

    /// The `k` nearest live items to `query`, nearest first, as (id, distance).
    ///
    /// - Parameters:
    ///   - ef: beam width (raised to k when smaller); larger is slower and more accurate.
    ///   - filter: only items it allows are returned; the traversal still walks through
    ///     the others. When it allows few items (estimated from a sample), the search
    ///     scans exactly those instead, so the answer stays exact and complete.
    /// - Returns: k results whenever at least k live items pass the filter.
    /// - Complexity: O(ef * M * d * log n) expected.
    public func search(_ query: [Float], k: Int, ef: Int = 64, filter: SearchFilter? = nil) throws -> [Neighbor] {
        guard query.count == dimension else { throw HNSWError.dimensionMismatch(expected: dimension, got: query.count) }
        if let c = query.firstIndex(where: { !$0.isFinite }) { throw HNSWError.nonFinite(row: 0, column: c) }
        guard k >= 1 else { throw HNSWError.invalidParameter("k must be at least 1, got \(k)") }
        var ids = [Int64](repeating: -1, count: k)
        var dist = [Float](repeating: .infinity, count: k)
        let found = query.withUnsafeBufferPointer { q in
            ids.withUnsafeMutableBufferPointer { ip in
                dist.withUnsafeMutableBufferPointer { dp in
                    search(q.baseAddress!, k: k, ef: ef, filter: filter, ids: ip.baseAddress!, distances: dp.baseAddress!)
                }
            }
        }
        return (0..<found).map { Neighbor(id: Int(ids[$0]), distance: dist[$0]) }
    }

    /// The raw search: writes up to k ids and distances, returns how many were found
    /// (the rest are -1 / +infinity). The query must have `dimension` finite values.
    /// Allocates nothing in steady state.
    @discardableResult
    public func search(_ query: UnsafePointer<Float>, k: Int, ef: Int, filter: SearchFilter? = nil,
                       ids: UnsafeMutablePointer<Int64>, distances: UnsafeMutablePointer<Float>) -> Int {
        let scratch = scratchPool.take(dimension: dimension)
        defer { scratchPool.give(scratch) }
        return readLocked { searchLocked(query, k: k, ef: ef, filter: filter, scratch: scratch, ids: ids, distances: distances) }
    }

    /// Searches every row of `queries` on `threads` threads.
    /// - Returns: ids are the items' labels (as Int32 when they fit; use `searchLabels` otherwise).
    public func search(_ queries: Matrix, k: Int, ef: Int = 64, filter: SearchFilter? = nil,
                       threads: Int = Parallel.availableCores) throws -> KNNResult {
        let labels = try searchLabels(queries, k: k, ef: ef, filter: filter, threads: threads)
        var result = KNNResult(queryCount: queries.rows, k: k)
        for i in 0..<labels.ids.count {
            result.ids[i] = labels.ids[i] < 0 ? -1 : Int32(truncatingIfNeeded: labels.ids[i])
            result.distances[i] = labels.distances[i]
        }
        return result
    }

    /// Batch search returning 64-bit labels, `k` per query, padded with -1.
    public func searchLabels(_ queries: Matrix, k: Int, ef: Int = 64, filter: SearchFilter? = nil,
                             threads: Int = Parallel.availableCores) throws -> (ids: [Int64], distances: [Float]) {
        guard queries.columns == dimension else { throw HNSWError.dimensionMismatch(expected: dimension, got: queries.columns) }
        if let bad = queries.firstNonFinite() { throw HNSWError.nonFinite(row: bad.row, column: bad.column) }
        guard k >= 1 else { throw HNSWError.invalidParameter("k must be at least 1, got \(k)") }
        var ids = [Int64](repeating: -1, count: queries.rows * k)
        var dist = [Float](repeating: .infinity, count: queries.rows * k)
        let d = dimension
        let block = 64
        let blocks = (queries.rows + block - 1) / block
        queries.storage.withUnsafeBufferPointer { qp in
            ids.withUnsafeMutableBufferPointer { ip in
                dist.withUnsafeMutableBufferPointer { dp in
                    let qp = qp.baseAddress!, ip = ip.baseAddress!, dp = dp.baseAddress!
                    Parallel.forEach(blocks: blocks, threads: threads) { b, _ in
                        let scratch = scratchPool.take(dimension: d)
                        defer { scratchPool.give(scratch) }
                        for q in (b * block)..<min(queries.rows, (b + 1) * block) {
                            readLocked {
                                _ = searchLocked(qp + q * d, k: k, ef: ef, filter: filter, scratch: scratch,
                                                 ids: ip + q * k, distances: dp + q * k)
                            }
                        }
                    }
                }
            }
        }
        return (ids, dist)
    }

    // MARK: - Internals (caller holds the read lock)

    func searchLocked(_ query: UnsafePointer<Float>, k: Int, ef: Int, filter: SearchFilter?, scratch: SearchScratch,
                      ids: UnsafeMutablePointer<Int64>, distances: UnsafeMutablePointer<Float>) -> Int {
        for j in 0..<k {
            ids[j] = -1
            distances[j] = .infinity
        }
        guard let (ep, top) = loadEntry() else { return 0 }
        let q = prepare(query, scratch: scratch)
        if let filter, filterIsSelective(filter, k: k, ef: ef) {
            return exactScan(q, k: k, filter: filter, ids: ids, distances: distances)
        }
        var cur = ep
        var curDist = distance(q, cur)
        if top > 0 {
            for level in stride(from: top, to: 0, by: -1) {
                greedy(q, node: &cur, dist: &curDist, level: level)
            }
        }
        let width = max(ef, k)
        let deletedNone = deletedCount == 0
        searchBaseLayer(q, entry: cur, entryDist: curDist, ef: width, scratch: scratch,
                        filter: filter, skipDeleted: !deletedNone)
        let n = scratch.drainResultsSorted()
        if quantizer != nil || rescoreSource != nil {
            // Re-score the beam with the float vectors, in the index (int8) or outside it
            // (fp16 with a `RescoreSource`); the scratch's heap: no allocation.
            let heap = scratch.rescore
            heap.reset(k: k)
            for i in 0..<n {
                let node = Int(scratch.sortedNode[i])
                heap.push(exactDistance(q, node), Int32(node))
            }
            let out = heap.count
            scratch.ensureRescore(k)
            heap.drainSorted(ids: scratch.rescoreIds, distances: scratch.rescoreDist)
            for j in 0..<out {
                ids[j] = Int64(bitPattern: labels[Int(scratch.rescoreIds[j])])
                distances[j] = scratch.rescoreDist[j]
            }
            return finish(out, q, k: k, filter: filter, ids: ids, distances: distances)
        }
        let m = min(n, k)
        for i in 0..<m {
            ids[i] = Int64(bitPattern: labels[Int(scratch.sortedNode[i])])
            distances[i] = scratch.sortedDist[i]
        }
        return finish(m, q, k: k, filter: filter, ids: ids, distances: distances)
    }

    /// When the graph walk found fewer than k items but more may exist (after many
    /// deletes, or a filter), fall back to an exact scan so the answer is complete.
    @inline(__always)
    func finish(_ found: Int, _ q: PreparedQuery, k: Int, filter: SearchFilter?,
                ids: UnsafeMutablePointer<Int64>, distances: UnsafeMutablePointer<Float>) -> Int {
        if found >= k { return found }
        if filter == nil && slotCount - deletedCount <= found { return found }
        return exactScan(q, k: k, filter: filter, ids: ids, distances: distances)
    }

    /// Greedy descent on an upper layer.
    @inline(__always)
    func greedy(_ q: PreparedQuery, node cur: inout Int, dist curDist: inout Float, level: Int) {
        var changed = true
        while changed {
            changed = false
            let l = links(cur, level: level)
            let n = Int(fk_load_acquire_u32(l))
            for i in 1..<(n + 1) {
                let nb = Int(fk_load_u32(l + i))
                let d = distance(q, nb)
                if d < curDist {
                    curDist = d
                    cur = nb
                    changed = true
                }
            }
        }
    }

    /// Beam search on layer 0; leaves the best `ef` accepted nodes in `scratch.results`.
    @inline(__always)
    func searchBaseLayer(_ q: PreparedQuery, entry: Int, entryDist: Float, ef: Int, scratch: SearchScratch,
                         filter: SearchFilter? = nil, skipDeleted: Bool = false) {
        let labels = self.labels, deletedFlags = self.deletedFlags
        let filtering = filter != nil || skipDeleted
        @inline(__always) func accept(_ node: Int) -> Bool {
            if skipDeleted && fk_load_u8(deletedFlags + node) != 0 { return false }
            if let filter, !filter.allows(labels[node]) { return false }
            return true
        }
        scratch.beginSearch(capacity: capacity)
        let g = view
        let visited = scratch.visited
        let tag = scratch.epoch
        let batchIds = scratch.batchIds, batchDist = scratch.batchDist
        // Work on local copies of the heaps: no class-property access in the loop.
        var candidates = scratch.candidates
        var results = scratch.results
        defer {
            scratch.candidates = candidates
            scratch.results = results
        }
        visited[entry] = tag
        candidates.push(entryDist, UInt32(entry))
        if !filtering || accept(entry) { results.push(entryDist, UInt32(entry)) }
        var bound: Float = results.count >= ef ? results.topDistance : .infinity
        while candidates.count > 0 {
            let cd = candidates.topDistance
            if cd > bound { break }
            let c = Int(candidates.topNode)
            candidates.pop()
            let l = g.links0(c)
            let n = Int(fk_load_acquire_u32(l))
            // Gather the unvisited neighbors, then score them in one batch.
            var m = 0
            for i in 1..<(n + 1) {
                let nb = fk_load_u32(l + i)
                if visited[Int(nb)] == tag { continue }
                visited[Int(nb)] = tag
                batchIds[m] = nb
                m += 1
            }
            if m == 0 { continue }
            g.distances(q, batchIds, m, into: batchDist)
            for i in 0..<m {
                let d = batchDist[i]
                if results.count < ef || d < bound {
                    let nb = batchIds[i]
                    candidates.push(d, nb)
                    if !filtering || accept(Int(nb)) {
                        results.push(d, nb)
                        if results.count > ef { results.pop() }
                    }
                    if results.count >= ef { bound = results.topDistance }
                }
            }
        }
    }

    /// Layer search used while inserting: every node counts (deleted ones too).
    func searchLayerForInsert(_ q: PreparedQuery, entry: Int, entryDist: Float, ef: Int, level: Int,
                              scratch: SearchScratch) -> Int {
        if level == 0 {
            searchBaseLayer(q, entry: entry, entryDist: entryDist, ef: ef, scratch: scratch)
            return scratch.drainResultsSorted()
        }
        scratch.beginSearch(capacity: capacity)
        let visited = scratch.visited
        let tag = scratch.epoch
        visited[entry] = tag
        scratch.candidates.push(entryDist, UInt32(entry))
        scratch.results.push(entryDist, UInt32(entry))
        while scratch.candidates.count > 0 {
            let cd = scratch.candidates.topDistance
            if scratch.results.count >= ef && cd > scratch.results.topDistance { break }
            let c = Int(scratch.candidates.topNode)
            scratch.candidates.pop()
            let l = links(c, level: level)
            let n = Int(fk_load_acquire_u32(l))
            for i in 1..<(n + 1) {
                let nb = Int(fk_load_u32(l + i))
                if visited[nb] == tag { continue }
                visited[nb] = tag
                let d = distance(q, nb)
                if scratch.results.count < ef || d < scratch.results.topDistance {
                    scratch.candidates.push(d, UInt32(nb))
                    scratch.results.push(d, UInt32(nb))
                    if scratch.results.count > ef { scratch.results.pop() }
                }
            }
        }
        return scratch.drainResultsSorted()
    }

    // MARK: - Filters and the exact floor

    /// Whether a filter passes so few items that an exact scan of them beats the graph.
    func filterIsSelective(_ filter: SearchFilter, k: Int, ef: Int) -> Bool {
        let n = slotCount
        if n <= 4096 { return true }
        let samples = 512
        var pass = 0
        var g = SeededGenerator(seed: UInt64(n))
        for _ in 0..<samples {
            let node = g.nextInt(below: n)
            if !isDeleted(node) && filter.allows(labels[node]) { pass += 1 }
        }
        // Below ~2% the graph walk wanders through mostly rejected items.
        return Double(pass) / Double(samples) < 0.02
    }

    /// Exact distances to every live item the filter allows.
    func exactScan(_ q: PreparedQuery, k: Int, filter: SearchFilter?,
                   ids: UnsafeMutablePointer<Int64>, distances: UnsafeMutablePointer<Float>) -> Int {
        let heap = TopK(k: k)
        for node in 0..<slotCount where !isDeleted(node) {
            if let filter, !filter.allows(labels[node]) { continue }
            let d = exactDistance(q, node)
            if d <= heap.threshold { heap.push(d, Int32(node)) }
        }
        var out = 0
        for nb in heap.drainSorted() {
            ids[out] = Int64(bitPattern: labels[nb.id])
            distances[out] = nb.distance
            out += 1
        }
        for j in out..<k {
            ids[j] = -1
            distances[j] = .infinity
        }
        return out
    }
}
