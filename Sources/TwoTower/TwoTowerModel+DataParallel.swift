import CBLAS
import Collectives
import Foundation
import LinearAlgebra
import _FunnelKernels

extension TwoTowerModel {
    /// Forward and backward of this rank's share of a global batch (Tower+DataParallel.swift).
    ///
    /// The softmax runs over the global batch: every rank's item embeddings (its batch
    /// items, then its random negatives) are gathered, each rank scores its own rows
    /// against all the columns, and the item-side gradient, a sum over every rank's rows,
    /// is summed with one allreduce before each rank takes its own columns' part. The
    /// result is the single-process step on the concatenated batch, up to the order of
    /// floating-point sums. Returns the global batch's mean loss (the same on every rank).
    func computeGradientsDataParallel(users batchUsers: [Int32], items batchItems: [Int32], rng: inout SeededGenerator) -> Float {
        let comm = communicator, bsz = batchUsers.count, d = parameters.dimension
        precondition(batchItems.count == bsz, "\(bsz) users and \(batchItems.count) items in a batch")
        users.threads = max(1, parameters.threads)
        items.threads = max(1, parameters.threads)
        let catalog = items.features.count, extra = max(0, parameters.randomNegatives)
        let negatives = (0..<extra).map { _ in Int32(rng.nextInt(below: catalog)) }
        users.fetchRows(for: batchUsers)
        items.fetchRows(for: batchItems + negatives)
        let u = users.forward(batchUsers, idDropout: parameters.idDropout, rng: &rng)
        let v = items.forward(batchItems + negatives, idDropout: parameters.idDropout, rng: &rng)

        // The global columns: every rank's batch items in rank order, then every rank's negatives.
        let batch = comm.allgather(batchItems), extras = comm.allgather(negatives)
        let b = batch.values.count, offset = batch.counts.prefix(comm.rank).reduce(0, +)
        let extraOffset = extras.counts.prefix(comm.rank).reduce(0, +)
        let columns = batch.values + extras.values, nc = columns.count
        let vb = comm.allgather(Array(v[0..<(bsz * d)])).values, ve = comm.allgather(Array(v[(bsz * d)...])).values
        let vAll = vb + ve

        step += 1
        var logQ = [Float](repeating: 0, count: nc)
        if parameters.logQCorrection {
            for (j, it) in batch.values.enumerated() {
                let i = Int(it)
                if lastSeen[i] >= 0 { gap[i] = 0.9 * gap[i] + 0.1 * (step - lastSeen[i]) }
                lastSeen[i] = step
                logQ[j] = logFrequency?[i] ?? Float(log(1 / max(gap[i], 1)))
            }
            let uniform = logFrequency == nil ? Double(extras.values.count) / Double(catalog) : 1 / Double(catalog)
            for j in b..<nc { logQ[j] = Float(log(uniform)) }
        }
        let s = logits.reserve(bsz * nc), inverseT = 1 / parameters.temperature
        var du = [Float](repeating: 0, count: bsz * d), dvAll = [Float](repeating: 0, count: nc * d)
        var loss: Float = 0
        let useLogQ = parameters.logQCorrection
        u.withUnsafeBufferPointer { up in vAll.withUnsafeBufferPointer { vp in
        columns.withUnsafeBufferPointer { cp in logQ.withUnsafeBufferPointer { qp in
        du.withUnsafeMutableBufferPointer { dup in dvAll.withUnsafeMutableBufferPointer { dvp in
            let m = Int32(bsz), cols = Int32(nc), dd = Int32(d)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, cols, dd, inverseT, up.baseAddress, dd, vp.baseAddress, dd, 0, s, cols)
            loss = fk_inbatch_softmax_rows_at(s, nc, bsz, offset, cp.baseAddress!, useLogQ ? qp.baseAddress! : nil, 1 / Float(b))
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, dd, cols, inverseT, s, cols, vp.baseAddress, dd, 0, dup.baseAddress, dd)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, dd, m, inverseT, s, cols, up.baseAddress, dd, 0, dvp.baseAddress, dd)
        }}}}}}
        comm.allreduceSum(&dvAll)
        let dv = Array(dvAll[(offset * d)..<((offset + bsz) * d)]) + Array(dvAll[((b + extraOffset) * d)..<((b + extraOffset + extra) * d)])
        users.backward(du)
        items.backward(dv)
        return comm.sum(loss) / Float(b)
    }
}
