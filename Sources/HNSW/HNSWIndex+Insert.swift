import _FunnelKernels
import LinearAlgebra

extension HNSWIndex {
    // MARK: - Public mutation

    /// Inserts `vectors` with the given ids (default: the next sequence numbers), linking
    /// them into the graph on `threads` threads. Slots of deleted items are reused first.
    ///
    /// With `threads == 1` the graph is a deterministic function of the seed and the
    /// insertion order. Searches may run concurrently.
    /// - Throws: on a wrong dimension, a NaN or infinite value, or an id already present;
    ///   the index is unchanged when it throws.
    /// - Complexity: O(n * log(N) * efConstruction * M * d) distance work, divided across threads.
    @discardableResult
    public func add(_ vectors: Matrix, ids: [UInt64]? = nil, threads: Int = Parallel.availableCores) throws -> [UInt64] {
        try mutating { try insert(vectors, ids: ids, threads: threads) }
    }

    private func insert(_ vectors: Matrix, ids: [UInt64]?, threads: Int) throws -> [UInt64] {
        guard mappedOwner == nil else { throw HNSWError.readOnly }
        guard vectors.columns == dimension else { throw HNSWError.dimensionMismatch(expected: dimension, got: vectors.columns) }
        if let bad = vectors.firstNonFinite() { throw HNSWError.nonFinite(row: bad.row, column: bad.column) }
        let n = vectors.rows
        if n == 0 { return [] }
        if let ids, ids.count != n {
            throw HNSWError.invalidParameter("\(ids.count) ids for \(n) vectors")
        }
        var prepared = vectors
        if parameters.metric == .cosine { prepared.normalizeRows() }
        if parameters.quantization == .fp16, let big = prepared.storage.firstIndex(where: { abs($0) > 65504 }) {
            throw HNSWError.invalidParameter("row \(big / dimension), column \(big % dimension): \(prepared.storage[big]) is outside float16's range (+-65504)")
        }

        // Validate and claim ids and slots.
        var labelList: [UInt64]
        var slots = [Int]()
        var reused = [Bool]()
        var sequences = [UInt64]()
        bookkeeping.lock()
        do {
            defer { bookkeeping.unlock() }
            labelList = ids ?? (0..<UInt64(n)).map { insertSequence &+ $0 }
            var seen = Set<UInt64>()
            for l in labelList {
                if labelToNode[l] != nil || !seen.insert(l).inserted { throw HNSWError.duplicateLabel(l) }
            }
            for i in 0..<n {
                sequences.append(insertSequence &+ UInt64(i))
                if let free = freeSlots.popLast() {
                    slots.append(Int(free))
                    reused.append(true)
                } else {
                    slots.append(-1)
                    reused.append(false)
                }
            }
            insertSequence &+= UInt64(n)
        }

        // Allocate new slots and write vectors (exclusive, short).
        writeLocked {
            if parameters.quantization == .int8 && quantizer == nil {
                quantizer = ScalarQuantizer(training: prepared)
            }
            let fresh = slots.filter { $0 < 0 }.count
            grow(to: slotCount + fresh)
            for i in 0..<n where slots[i] < 0 {
                let node = slotCount
                slotCount += 1
                slots[i] = node
                let level = randomLevel(sequence: sequences[i])
                levels[node] = Int32(level)
                if level > 0 {
                    let p = UnsafeMutablePointer<UInt32>.allocate(capacity: level * linkWords)
                    p.initialize(repeating: 0, count: level * linkWords)
                    upperLinks[node] = p
                } else {
                    upperLinks[node] = nil
                }
                links0(node).initialize(repeating: 0, count: linkWords0)
                deletedFlags[node] = 0
                nodeLocks[node] = 0
            }
            for i in 0..<n where !reused[i] {
                writeVector(prepared, row: i, node: slots[i], label: labelList[i])
            }
        }
        bookkeeping.lock()
        for i in 0..<n where !reused[i] { labelToNode[labelList[i]] = UInt32(slots[i]) }
        bookkeeping.unlock()

        // Reused slots: relinked one at a time under the exclusive lock, since searches
        // may be walking through the old item.
        let scratch = SearchScratch(dimension: dimension)
        for i in 0..<n where reused[i] {
            writeLocked {
                let node = slots[i]
                writeVector(prepared, row: i, node: node, label: labelList[i])
                // Forget the old item's links: linking merges into what a list holds.
                fk_store_release_u32(links0(node), 0)
                for lc in stride(from: 1, through: Int(levels[node]), by: 1) { fk_store_release_u32(links(node, level: lc), 0) }
                link(node: node, level: Int(levels[node]), scratch: scratch)
                bookkeeping.lock()
                fk_store_u8(deletedFlags + node, 0)
                deletedCount -= 1
                labelToNode[labelList[i]] = UInt32(node)
                bookkeeping.unlock()
            }
        }

        // New slots: linked concurrently, each under the shared lock.
        let fresh = (0..<n).filter { !reused[$0] }.map { slots[$0] }
        if threads <= 1 {
            for node in fresh { readLocked { link(node: node, level: Int(levels[node]), scratch: scratch) } }
        } else {
            let block = 32
            let blocks = (fresh.count + block - 1) / block
            Parallel.forEach(blocks: blocks, threads: threads) { b, _ in
                let s = scratchPool.take(dimension: dimension)
                defer { scratchPool.give(s) }
                for j in (b * block)..<min(fresh.count, (b + 1) * block) {
                    let node = fresh[j]
                    readLocked { link(node: node, level: Int(levels[node]), scratch: s) }
                }
            }
        }
        return labelList
    }

    /// Sets the int8 codes' ranges before the first insert, for vectors added a slice at
    /// a time (by default the first `add` learns them from its own vectors, and later
    /// values outside them are clamped). The ranges are of vectors as stored: normalized
    /// for the cosine metric.
    /// - Throws: `HNSWError.invalidParameter` unless the index is int8 and empty.
    public func setQuantizer(_ q: ScalarQuantizer) throws {
        guard parameters.quantization == .int8, q.offsets.count == dimension else {
            throw HNSWError.invalidParameter("a quantizer of \(q.offsets.count) dimensions for a \(parameters.quantization.rawValue) index of \(dimension)")
        }
        try mutating {
            try writeLocked {
                guard slotCount == 0 else { throw HNSWError.invalidParameter("the quantizer is set before the first insert") }
                quantizer = q
            }
        }
    }

    /// Inserts one vector with the given id.
    public func add(_ vector: [Float], id: UInt64) throws {
        try add(Matrix(rows: 1, columns: vector.count, storage: vector), ids: [id], threads: 1)
    }

    /// Marks the item with `id` deleted: searches no longer return it, and its slot is
    /// reused by a later insert. - Complexity: O(1).
    public func remove(_ id: UInt64) throws {
        guard mappedOwner == nil else { throw HNSWError.readOnly }
        try mutating {
            bookkeeping.lock()
            defer { bookkeeping.unlock() }
            guard let node = labelToNode.removeValue(forKey: id) else { throw HNSWError.unknownLabel(id) }
            fk_store_u8(deletedFlags + Int(node), 1)
            deletedCount += 1
            freeSlots.append(node)
        }
    }

    /// Replaces the vector of `id` (inserting it when absent).
    public func update(_ id: UInt64, vector: [Float]) throws {
        guard vector.count == dimension else { throw HNSWError.dimensionMismatch(expected: dimension, got: vector.count) }
        if let c = vector.firstIndex(where: { !$0.isFinite }) { throw HNSWError.nonFinite(row: 0, column: c) }
        if contains(id) { try remove(id) }
        try add(vector, id: id)
    }

    // MARK: - Internals

    /// Writes a (prepared) vector, its codes and its id into `node`'s slot.
    func writeVector(_ m: Matrix, row: Int, node: Int, label: UInt64) {
        labels[node] = label
        m.storage.withUnsafeBufferPointer { p in
            let src = p.baseAddress! + row * dimension
            if parameters.quantization == .fp16 {
                fk_to_half(src, halfVector(node), dimension)
                return
            }
            floatVector(node).update(from: src, count: dimension)
            if let quantizer {
                let codes = vectorBytesPointer(node).assumingMemoryBound(to: UInt8.self)
                codeBias(node).pointee = quantizer.encode(src, into: codes, dimension: dimension)
            }
        }
    }

    /// Connects `node` into every layer up to `level` (the paper's INSERT).
    func link(node: Int, level: Int, scratch: SearchScratch) {
        guard var (ep, top) = loadEntry() else {
            entryLock.lock()
            if loadEntry() == nil {
                storeEntry(node: node, level: level)
                entryLock.unlock()
                return
            }
            entryLock.unlock()
            link(node: node, level: level, scratch: scratch)
            return
        }
        let raisesTop = level > top
        if raisesTop {
            entryLock.lock()
            (ep, top) = loadEntry()!
        }
        defer { if raisesTop { entryLock.unlock() } }

        let q = preparedNode(node, scratch: scratch)
        var cur = ep
        var curDist = distance(q, cur)
        if top > level {
            for lc in stride(from: top, to: level, by: -1) { greedy(q, node: &cur, dist: &curDist, level: lc) }
        }
        for lc in stride(from: min(level, top), through: 0, by: -1) {
            let found = searchLayerForInsert(q, entry: cur, entryDist: curDist, ef: parameters.efConstruction,
                                             level: lc, scratch: scratch)
            // Drop the node itself (a reused slot can be found by its own search).
            var w = 0
            for i in 0..<found where Int(scratch.sortedNode[i]) != node {
                scratch.sortedNode[w] = scratch.sortedNode[i]
                scratch.sortedDist[w] = scratch.sortedDist[i]
                w += 1
            }
            if w == 0 { continue }
            let chosen = selectNeighbors(count: w, keep: maxLinks, dist: scratch.sortedDist, nodes: scratch.sortedNode)
            let selected = Array(UnsafeBufferPointer(start: scratch.sortedNode, count: chosen))
            let selectedDist = Array(UnsafeBufferPointer(start: scratch.sortedDist, count: chosen))
            cur = Int(selected[0])
            curDist = selectedDist[0]

            // Own links first, so that whoever finds the node sees a complete list. With
            // several threads, a neighbor that reached this node from a layer above may
            // already have linked back to it here: those links are merged, not overwritten
            // (overwriting them left nodes nobody linked to, unreachable by any search).
            fk_spin_lock(nodeLocks + node)
            let own = links(node, level: lc)
            let already = Int(fk_load_u32(own))
            if already == 0 {
                for (i, s) in selected.enumerated() { fk_store_u32(own + 1 + i, s) }
                fk_store_release_u32(own, UInt32(chosen))
            } else {
                selected.withUnsafeBufferPointer { s in
                    selectedDist.withUnsafeBufferPointer { mergeLinks(of: node, level: lc, adding: s, distances: $0) }
                }
            }
            fk_spin_unlock(nodeLocks + node)

            for (s, d) in zip(selected, selectedDist) {
                addBackLink(from: Int(s), to: node, distance: d, level: lc)
            }
        }
        if raisesTop { storeEntry(node: node, level: level) }
    }

    /// The neighbor-selection heuristic: walk candidates nearest first and keep one only
    /// if it is nearer to the base than to every neighbor kept so far. Compacts the kept
    /// candidates to the front of `dist`/`nodes` and returns how many.
    func selectNeighbors(count: Int, keep: Int, dist: UnsafeMutablePointer<Float>, nodes: UnsafeMutablePointer<UInt32>) -> Int {
        if count <= keep { return count }
        var kept = 0
        for i in 0..<count {
            if kept >= keep { break }
            let c = Int(nodes[i]), dc = dist[i]
            let qc = preparedNode(c)
            var good = true
            for j in 0..<kept where distance(qc, Int(nodes[j])) < dc {
                good = false
                break
            }
            if good {
                nodes[kept] = nodes[i]
                dist[kept] = dc
                kept += 1
            }
        }
        return kept
    }

    /// Adds `to` to the links of `from` on `level`, pruning with the heuristic when full.
    func addBackLink(from: Int, to: Int, distance d: Float, level: Int) {
        fk_spin_lock(nodeLocks + from)
        defer { fk_spin_unlock(nodeLocks + from) }
        withUnsafePointer(to: UInt32(to)) { x in
            withUnsafePointer(to: d) { dx in
                mergeLinks(of: from, level: level, adding: UnsafeBufferPointer(start: x, count: 1),
                           distances: UnsafeBufferPointer(start: dx, count: 1))
            }
        }
    }

    /// Adds `new` (at `distances` from `node`) to `node`'s links on `level`, skipping ones
    /// already there; when the list would overflow, keeps what the heuristic selects among
    /// the old and new links. The caller holds `node`'s lock.
    func mergeLinks(of node: Int, level: Int, adding new: UnsafeBufferPointer<UInt32>,
                    distances: UnsafeBufferPointer<Float>) {
        let limit = level == 0 ? maxLinks0 : maxLinks
        let l = links(node, level: level)
        var n = Int(fk_load_u32(l))
        var overflow = [(Float, UInt32)]()
        for (x, d) in zip(new, distances) where Int(x) != node {
            var present = false
            for i in 1..<(n + 1) where fk_load_u32(l + i) == x { present = true; break }
            if present || overflow.contains(where: { $0.1 == x }) { continue }
            if n < limit {
                fk_store_u32(l + 1 + n, x)
                n += 1
                fk_store_release_u32(l, UInt32(n))
            } else {
                overflow.append((d, x))
            }
        }
        if overflow.isEmpty { return }
        // Full: choose the best `limit` among the current links and the newcomers.
        let qf = preparedNode(node)
        var cand = overflow
        cand.reserveCapacity(n + overflow.count)
        for i in 1..<(n + 1) {
            let x = fk_load_u32(l + i)
            cand.append((distance(qf, Int(x)), x))
        }
        cand.sort { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
        var dists = cand.map(\.0), ids = cand.map(\.1)
        let kept = dists.withUnsafeMutableBufferPointer { dp in
            ids.withUnsafeMutableBufferPointer { ip in
                selectNeighbors(count: cand.count, keep: limit, dist: dp.baseAddress!, nodes: ip.baseAddress!)
            }
        }
        for i in 0..<kept { fk_store_u32(l + 1 + i, ids[i]) }
        fk_store_release_u32(l, UInt32(kept))
    }
}

extension HNSWIndex {
    /// Brings the index in line with re-computed embeddings without rebuilding it: row r of
    /// `vectors` (id `ids[r]`, default r) replaces the indexed vector when it moved by more
    /// than `tolerance` relative to `previous` row r (||v - p|| > tolerance * ||p||), and
    /// rows past `previous.rows` are inserted. What did not move is left alone.
    /// - Returns: how many items were updated and inserted.
    /// - Complexity: O(n * d) to compare, plus one insert per changed item.
    @discardableResult
    public func refresh(_ vectors: Matrix, previous: Matrix, ids: [UInt64]? = nil,
                        tolerance: Float = 1e-3) throws -> (updated: Int, inserted: Int) {
        guard vectors.columns == dimension, previous.columns == dimension else {
            throw HNSWError.dimensionMismatch(expected: dimension, got: vectors.columns == dimension ? previous.columns : vectors.columns)
        }
        guard previous.rows <= vectors.rows else {
            throw HNSWError.invalidParameter("previous embeddings have \(previous.rows) rows, more than the \(vectors.rows) new ones")
        }
        if let ids, ids.count != vectors.rows {
            throw HNSWError.invalidParameter("\(ids.count) ids for \(vectors.rows) vectors")
        }
        var updated = 0, inserted = 0
        for r in 0..<vectors.rows {
            let id = ids?[r] ?? UInt64(r)
            let v = Array(vectors.row(r))
            if r < previous.rows {
                let p = previous.row(r)
                var moved: Float = 0, size: Float = 0
                for c in 0..<dimension {
                    let delta = v[c] - p[c]
                    moved += delta * delta
                    size += p[c] * p[c]
                }
                guard moved > tolerance * tolerance * size || !contains(id) else { continue }
                try update(id, vector: v)
                updated += 1
            } else {
                try update(id, vector: v)
                inserted += 1
            }
        }
        return (updated, inserted)
    }
}
