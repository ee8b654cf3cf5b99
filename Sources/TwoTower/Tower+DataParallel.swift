import Collectives

/// Data-parallel training across the ranks of a `Communicator` (TorchRec's layout):
/// dense layers are replicated and their gradients summed every step; embedding row
/// `code` of every table is owned by rank `code % size`, which alone updates it and keeps
/// its optimizer state. A rank fetches the rows its batch reads from their owners before
/// the forward pass and sends each touched row's gradient to its owner after the backward
/// pass, both with one alltoall per table.
///
/// Each rank still allocates every table at full size: the rows it does not own are a
/// cache of the owners' rows, refreshed for the rows a batch reads. Only the optimizer
/// updates are sharded, not the memory.
extension Tower {
    @inline(__always)
    func owner(_ code: Int32) -> Int { Int(code) % communicator.size }

    /// Copies from their owners the rows of every table that `entities` read (the unknown
    /// row 0 included: dropped ids read it) and this rank does not own.
    /// - Complexity: O(distinct codes read * dimension) moved per table.
    func fetchRows(for entities: [Int32]) {
        let comm = communicator, p = comm.size, me = comm.rank
        guard p > 1 else { return }
        for (fi, f) in features.fields.enumerated() where !f.kind.isDense {
            let d = f.dimension
            var need: [Int32] = [0]
            for e in entities {
                for k in Int(f.offsets[Int(e)])..<Int(f.offsets[Int(e) + 1]) { need.append(f.codes[k]) }
            }
            need.sort()
            var buckets = [[Int32]](repeating: [], count: p)
            var last: Int32 = -1
            for c in need where c != last {
                last = c
                if owner(c) != me { buckets[owner(c)].append(c) }
            }
            let asking = buckets.flatMap { $0 }
            let (asked, askedCounts) = comm.alltoall(asking, counts: buckets.map(\.count))
            var reply = [Float]()
            reply.reserveCapacity(asked.count * d)
            tables[fi].withUnsafeBufferPointer { t in
                for c in asked { reply.append(contentsOf: t[(Int(c) * d)..<((Int(c) + 1) * d)]) }
            }
            // The owners answer in the order asked, and arrive in rank order: `asking`'s order.
            let (rows, _) = comm.alltoall(reply, counts: askedCounts.map { $0 * d })
            tables[fi].withUnsafeMutableBufferPointer { t in
                for (i, c) in asking.enumerated() {
                    for j in 0..<d { t[Int(c) * d + j] = rows[i * d + j] }
                }
            }
        }
    }

    /// Sends each touched row's summed gradient to its owner; returns the rows this rank
    /// owns with their gradients summed over the ranks (in rank order).
    func exchangeRowGradients(_ codes: [Int32], _ sums: UnsafeMutablePointer<Float>, dimension d: Int) -> (codes: [Int32], grads: [Float]) {
        let comm = communicator, p = comm.size
        var buckets = [[Int]](repeating: [], count: p)
        for (s, c) in codes.enumerated() { buckets[owner(c)].append(s) }
        var sendCodes = [Int32](), sendGrads = [Float]()
        sendCodes.reserveCapacity(codes.count)
        sendGrads.reserveCapacity(codes.count * d)
        for b in buckets {
            for s in b {
                sendCodes.append(codes[s])
                sendGrads.append(contentsOf: UnsafeBufferPointer(start: sums + s * d, count: d))
            }
        }
        let counts = buckets.map(\.count)
        let (gotCodes, _) = comm.alltoall(sendCodes, counts: counts)
        let (gotGrads, _) = comm.alltoall(sendGrads, counts: counts.map { $0 * d })
        var slot = [Int32: Int]()
        var outCodes = [Int32](), out = [Float]()
        for (i, c) in gotCodes.enumerated() {
            if let s = slot[c] {
                for j in 0..<d { out[s * d + j] += gotGrads[i * d + j] }
            } else {
                slot[c] = outCodes.count
                outCodes.append(c)
                out.append(contentsOf: gotGrads[(i * d)..<((i + 1) * d)])
            }
        }
        return (outCodes, out)
    }

    /// Sums the dense layers' weight and bias gradients over the ranks (one allreduce).
    func allreduceDenseGradients() {
        guard communicator.size > 1 else { return }
        var packed = [Float]()
        for l in layers { packed += l.gw; packed += l.gb }
        communicator.allreduceSum(&packed)
        var o = 0
        for li in layers.indices {
            let nw = layers[li].gw.count, nb = layers[li].gb.count
            layers[li].gw.withUnsafeMutableBufferPointer { $0.update(fromContentsOf: packed[o..<(o + nw)]) }
            o += nw
            layers[li].gb.withUnsafeMutableBufferPointer { $0.update(fromContentsOf: packed[o..<(o + nb)]) }
            o += nb
        }
    }

    /// Gives every rank the owners' rows of every table and their optimizer state, so each
    /// holds the whole model (to evaluate, snapshot or save it).
    /// - Complexity: one allreduce of every table.
    func synchronizeTables() {
        let comm = communicator, p = comm.size, me = comm.rank
        guard p > 1 else { return }
        func ownedOnly(_ a: inout [Float], rowWidth d: Int) {
            guard !a.isEmpty else { return }
            let rows = a.count / d
            a.withUnsafeMutableBufferPointer { t in
                for r in 0..<rows where r % p != me { (t.baseAddress! + r * d).update(repeating: 0, count: d) }
            }
            comm.allreduceSum(&a)
        }
        let lazyAdam = comm.any(!adamM.isEmpty)
        if lazyAdam && adamM.count != features.fields.count { adamM = features.fields.map { _ in [] }; adamV = adamM }
        for (fi, f) in features.fields.enumerated() where !f.kind.isDense {
            let d = f.dimension
            ownedOnly(&tables[fi], rowWidth: d)
            ownedOnly(&tableAccum[fi], rowWidth: 1)
            if lazyAdam {
                for m in [\Tower.adamM, \Tower.adamV] {
                    if self[keyPath: m][fi].count < tables[fi].count {
                        self[keyPath: m][fi] += [Float](repeating: 0, count: tables[fi].count - self[keyPath: m][fi].count)
                    }
                    ownedOnly(&self[keyPath: m][fi], rowWidth: d)
                }
            }
        }
    }
}
