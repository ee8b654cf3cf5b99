import CBLAS
import LinearAlgebra

/// Errors from building or querying an exact index.
public enum ExactSearchError: Error, CustomStringConvertible, Equatable {
    case dimensionMismatch(expected: Int, got: Int)
    case nonFinite(what: String, row: Int, column: Int)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .dimensionMismatch(let e, let g): return "dimension mismatch: the index holds \(e)-d vectors, got \(g)-d"
        case .nonFinite(let what, let r, let c): return "\(what) row \(r), column \(c) is NaN or infinite"
        case .invalidArgument(let why): return why
        }
    }
}

/// Exact k-nearest-neighbor search: the floor every approximate index is measured
/// against, the oracle for recall, and the retriever for small catalogs.
///
/// Batches go through blocked `sgemm` (query block x base block), fused with a SIMD
/// filter against each query's running k-th distance, across threads by query block
/// with OpenBLAS single-threaded inside each. For L2 the candidates found through the
/// expanded form `|x|^2 - 2<q,x>` are re-scored with the direct difference, so
/// reported distances do not suffer the cancellation of the expansion.
///
/// Distances follow `Metric`: smaller is nearer for every metric. Ids are insertion
/// positions, 0-based.
///
/// Thread safety: concurrent searches are safe; `add` must not run concurrently with
/// anything else.
public final class ExactIndex: @unchecked Sendable {
    public let metric: Metric
    public let dimension: Int
    /// The stored vectors (unit-normalized for `.cosine`).
    public private(set) var vectors: Matrix
    /// Squared norms of the stored vectors (used by L2).
    private var squaredNorms: [Float] = []

    /// Rows of the base scanned per block and queries per block in batch search.
    public var baseBlock = 1024
    public var queryBlock = 512

    /// The number of stored vectors.
    public var count: Int { vectors.rows }

    /// Bytes held per stored vector (vector plus its norm).
    public var bytesPerVector: Int { dimension * 4 + 4 }

    public init(dimension: Int, metric: Metric) {
        precondition(dimension > 0, "dimension must be positive")
        self.dimension = dimension
        self.metric = metric
        vectors = Matrix(rows: 0, columns: dimension)
    }

    /// An index over `vectors`.
    /// - Throws: `ExactSearchError.nonFinite` for a NaN or infinite element.
    /// - Complexity: O(n * d).
    public convenience init(vectors: Matrix, metric: Metric) throws {
        guard vectors.columns > 0 else { throw ExactSearchError.invalidArgument("vectors have dimension 0") }
        self.init(dimension: vectors.columns, metric: metric)
        try add(vectors)
    }

    /// Appends vectors; they get the next positions as ids.
    /// - Complexity: O(n * d).
    public func add(_ batch: Matrix) throws {
        guard batch.columns == dimension else {
            throw ExactSearchError.dimensionMismatch(expected: dimension, got: batch.columns)
        }
        if let bad = batch.firstNonFinite() {
            throw ExactSearchError.nonFinite(what: "vector", row: bad.row, column: bad.column)
        }
        var b = batch
        if metric == .cosine { b.normalizeRows() }
        squaredNorms.append(contentsOf: b.rowSquaredNorms())
        try vectors.append(rows: b)
    }

    /// Replaces the vector at `position` (a live update of one item).
    /// - Throws: `ExactSearchError` for a position outside the index, another dimension or a non-finite value.
    public func replace(_ position: Int, with vector: [Float]) throws {
        guard (0..<count).contains(position) else { throw ExactSearchError.invalidArgument("position \(position) outside 0..<\(count)") }
        guard vector.count == dimension else { throw ExactSearchError.dimensionMismatch(expected: dimension, got: vector.count) }
        if let c = vector.firstIndex(where: { !$0.isFinite }) { throw ExactSearchError.nonFinite(what: "vector", row: 0, column: c) }
        var b = try Matrix(rows: 1, columns: dimension, storage: vector)
        if metric == .cosine { b.normalizeRows() }
        for c in 0..<dimension { vectors[position, c] = b[0, c] }
        squaredNorms[position] = b.rowSquaredNorms()[0]
    }

    // MARK: - One query

    /// The `k` nearest stored vectors to `query`, nearest first.
    /// - Complexity: O(n * d) time, bandwidth-bound; O(k) extra space.
    public func search(_ query: [Float], k: Int) throws -> [Neighbor] {
        try validate(k: k)
        guard query.count == dimension else {
            throw ExactSearchError.dimensionMismatch(expected: dimension, got: query.count)
        }
        if let c = query.firstIndex(where: { !$0.isFinite }) {
            throw ExactSearchError.nonFinite(what: "query", row: 0, column: c)
        }
        var q = query
        if metric == .cosine { q = Self.normalized(q) }
        let heap = TopK(k: k)
        let scratch = Scratch(block: baseBlock)
        q.withUnsafeBufferPointer { scan(query: $0.baseAddress!, heap: heap, scratch: scratch) }
        var result = heap.drainSorted()
        if metric == .cosine { for i in result.indices { result[i].distance += 1 } }
        return result
    }

    /// Per-thread buffers for a scan.
    final class Scratch {
        let block: Int
        let dist: UnsafeMutablePointer<Float>
        let idx: UnsafeMutablePointer<UInt32>
        let val: UnsafeMutablePointer<Float>
        init(block: Int, rowsPerBlock: Int = 1) {
            self.block = block
            dist = .allocate(capacity: block * rowsPerBlock)
            idx = .allocate(capacity: block)
            val = .allocate(capacity: block)
        }
        deinit {
            dist.deallocate()
            idx.deallocate()
            val.deallocate()
        }
    }

    /// Scans the whole base with direct distances (no expansion) into `heap`.
    /// Cosine distances are pushed as `-dot` (the caller adds 1).
    private func scan(query: UnsafePointer<Float>, heap: TopK, scratch: Scratch) {
        let n = count, d = dimension
        vectors.storage.withUnsafeBufferPointer { base in
            var start = 0
            while start < n {
                let m = min(scratch.block, n - start)
                let rows = base.baseAddress! + start * d
                let scale: Float
                if metric == .l2 {
                    Distance.squaredL2(query: query, rows: rows, count: m, dimension: d, stride: d, into: scratch.dist)
                    scale = 1
                } else {
                    Distance.dot(query: query, rows: rows, count: m, dimension: d, stride: d, into: scratch.dist)
                    scale = -1
                }
                let hits = fk_select(scratch.dist, nil, scale, m, heap.threshold, scratch.idx, scratch.val)
                for j in 0..<hits {
                    heap.push(scratch.val[j], Int32(start + Int(scratch.idx[j])))
                }
                start += m
            }
        }
    }

    // MARK: - Batches

    /// The `k` nearest stored vectors to every row of `queries`, on `threads` threads.
    /// - Complexity: O(q * n * d) flops through sgemm, plus O(q * n) filtering.
    public func search(_ queries: Matrix, k: Int, threads: Int = Parallel.availableCores) throws -> KNNResult {
        try validate(k: k)
        guard queries.columns == dimension else {
            throw ExactSearchError.dimensionMismatch(expected: dimension, got: queries.columns)
        }
        if let bad = queries.firstNonFinite() {
            throw ExactSearchError.nonFinite(what: "query", row: bad.row, column: bad.column)
        }
        var q = queries
        if metric == .cosine { q.normalizeRows() }
        var result = KNNResult(queryCount: q.rows, k: k)
        let nq = q.rows, n = count
        if nq == 0 || n == 0 { return result }

        let workers = max(1, min(threads, Parallel.availableCores * 4))
        // Enough query blocks to keep every worker busy, none larger than queryBlock.
        let qb = max(1, min(queryBlock, (nq + workers - 1) / workers))
        let blocks = (nq + qb - 1) / qb
        let bb = min(baseBlock, n)
        // For L2, keep a margin of extra candidates to re-score exactly.
        let kPrime = metric == .l2 ? min(n, k + max(8, k)) : min(n, k)
        let d = dimension

        let states = (0..<min(workers, blocks)).map { _ in
            BatchScratch(queryBlock: qb, baseBlock: bb, kPrime: kPrime, k: k)
        }
        let metric = self.metric
        BLAS.withThreads(1) {
            result.ids.withUnsafeMutableBufferPointer { outIds in
                result.distances.withUnsafeMutableBufferPointer { outDist in
                    q.storage.withUnsafeBufferPointer { qs in
                        vectors.storage.withUnsafeBufferPointer { base in
                            squaredNorms.withUnsafeBufferPointer { norms in
                                let outIds = outIds.baseAddress!, outDist = outDist.baseAddress!
                                Parallel.forEach(blocks: blocks, threads: states.count) { block, worker in
                                    let s = states[worker]
                                    let q0 = block * qb, qn = min(qb, nq - q0)
                                    let qPtr = qs.baseAddress! + q0 * d
                                    for h in 0..<qn { s.heaps[h].reset() }
                                    var b0 = 0
                                    while b0 < n {
                                        let m = min(bb, n - b0)
                                        BLAS.sgemm(transposeA: false, transposeB: true, m: qn, n: m, k: d,
                                                   alpha: 1, a: qPtr, lda: d,
                                                   b: base.baseAddress! + b0 * d, ldb: d,
                                                   beta: 0, c: s.ip, ldc: m)
                                        for h in 0..<qn {
                                            let heap = s.heaps[h]
                                            let hits: Int
                                            if metric == .l2 {
                                                hits = fk_select(s.ip + h * m, norms.baseAddress! + b0, -2, m,
                                                                 heap.threshold, s.idx, s.val)
                                            } else {
                                                hits = fk_select(s.ip + h * m, nil, -1, m,
                                                                 heap.threshold, s.idx, s.val)
                                            }
                                            for j in 0..<hits {
                                                heap.push(s.val[j], Int32(b0 + Int(s.idx[j])))
                                            }
                                        }
                                        b0 += m
                                    }
                                    for h in 0..<qn {
                                        let row = (q0 + h) * k
                                        let heap = s.heaps[h]
                                        switch metric {
                                        case .l2:
                                            // Re-score the candidates with direct differences.
                                            heap.drainSorted(ids: s.candIds, distances: s.candDist)
                                            let exact = s.refine
                                            exact.reset()
                                            let qv = qPtr + h * d
                                            for j in 0..<kPrime where s.candIds[j] >= 0 {
                                                let id = s.candIds[j]
                                                exact.push(Distance.squaredL2(qv, base.baseAddress! + Int(id) * d, d), id)
                                            }
                                            exact.drainSorted(ids: outIds + row, distances: outDist + row)
                                        case .innerProduct:
                                            heap.drainSorted(ids: s.candIds, distances: s.candDist)
                                            for j in 0..<k {
                                                outIds[row + j] = j < kPrime ? s.candIds[j] : -1
                                                outDist[row + j] = j < kPrime ? s.candDist[j] : .infinity
                                            }
                                        case .cosine:
                                            heap.drainSorted(ids: s.candIds, distances: s.candDist)
                                            for j in 0..<k {
                                                let ok = j < kPrime && s.candIds[j] >= 0
                                                outIds[row + j] = ok ? s.candIds[j] : -1
                                                outDist[row + j] = ok ? 1 + s.candDist[j] : .infinity
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return result
    }

    /// Per-worker buffers for batch search.
    final class BatchScratch {
        let ip: UnsafeMutablePointer<Float>
        let idx: UnsafeMutablePointer<UInt32>
        let val: UnsafeMutablePointer<Float>
        let candIds: UnsafeMutablePointer<Int32>
        let candDist: UnsafeMutablePointer<Float>
        let heaps: [TopK]
        let refine: TopK
        init(queryBlock: Int, baseBlock: Int, kPrime: Int, k: Int) {
            ip = .allocate(capacity: queryBlock * baseBlock)
            idx = .allocate(capacity: baseBlock)
            val = .allocate(capacity: baseBlock)
            candIds = .allocate(capacity: max(kPrime, k))
            candDist = .allocate(capacity: max(kPrime, k))
            heaps = (0..<queryBlock).map { _ in TopK(k: kPrime) }
            refine = TopK(k: k)
        }
        deinit {
            ip.deallocate()
            idx.deallocate()
            val.deallocate()
            candIds.deallocate()
            candDist.deallocate()
        }
    }

    // MARK: - Helpers

    private func validate(k: Int) throws {
        guard k >= 1 else { throw ExactSearchError.invalidArgument("k must be at least 1, got \(k)") }
    }

    static func normalized(_ v: [Float]) -> [Float] {
        let n2 = Distance.dot(v, v)
        guard n2 > 0 else { return v }
        let inv = 1 / n2.squareRoot()
        return v.map { $0 * inv }
    }
}
