import _FunnelKernels
import LinearAlgebra

/// A query made ready for the index's storage: normalized for cosine, and encoded
/// when the graph holds int8 codes.
struct PreparedQuery {
    /// The float query; nil only for a stored node's view under fp16 storage.
    let floats: UnsafePointer<Float>?
    let codes: UnsafePointer<UInt8>?
    let bias: Float
    /// A stored node's half vector (fp16 storage, while linking).
    var half: UnsafePointer<UInt16>? = nil
}

extension HNSWIndex {
    /// Copies `query` into the scratch (normalizing for cosine) and encodes it if needed.
    @inline(__always)
    func prepare(_ query: UnsafePointer<Float>, scratch: SearchScratch) -> PreparedQuery {
        let d = dimension
        let qf = scratch.queryFloats
        qf.update(from: query, count: d)
        if parameters.metric == .cosine {
            let n2 = Distance.squaredNorm(qf, d)
            if n2 > 0 {
                let inv = 1 / n2.squareRoot()
                for j in 0..<d { qf[j] *= inv }
            }
        }
        if let quantizer {
            let b = quantizer.encode(qf, into: scratch.queryCodes, dimension: d)
            return PreparedQuery(floats: qf, codes: scratch.queryCodes, bias: b)
        }
        return PreparedQuery(floats: qf, codes: nil, bias: 0)
    }

    /// A query view of a stored node (used while linking it). Under fp16 storage it holds
    /// only the half vector: good for `distance`, not for the batched `distances`.
    @inline(__always)
    func preparedNode(_ node: Int) -> PreparedQuery {
        if parameters.quantization == .fp16 {
            return PreparedQuery(floats: nil, codes: nil, bias: 0, half: UnsafePointer(halfVector(node)))
        }
        if parameters.quantization == .int8 {
            return PreparedQuery(floats: floatVector(node),
                                 codes: UnsafePointer(vectorBytesPointer(node).assumingMemoryBound(to: UInt8.self)),
                                 bias: UnsafeRawPointer(codeBias(node)).loadUnaligned(as: Float.self))
        }
        return PreparedQuery(floats: floatVector(node), codes: nil, bias: 0)
    }

    /// The traversal distance from a prepared query to `node` (codes when quantized).
    @inline(__always)
    func distance(_ q: PreparedQuery, _ node: Int) -> Float { view.distance(q, node) }

    /// A stored node as a full query (floats for the batched kernels): under fp16 storage
    /// decoded into `scratch`, otherwise `preparedNode`.
    @inline(__always)
    func preparedNode(_ node: Int, scratch: SearchScratch) -> PreparedQuery {
        guard parameters.quantization == .fp16 else { return preparedNode(node) }
        fk_from_half(halfVector(node), scratch.queryFloats, dimension)
        return PreparedQuery(floats: scratch.queryFloats, codes: nil, bias: 0)
    }

    /// The exact float distance from a prepared query to `node` (for rescoring); under
    /// fp16 storage, the distance to the half vector (there are no floats).
    @inline(__always)
    func exactDistance(_ q: PreparedQuery, _ node: Int) -> Float {
        if parameters.quantization == .fp16 { return view.distance(q, node) }
        return parameters.metric.distance(q.floats!, floatVector(node), dimension)
    }

    /// Item `node`'s stored vector as floats (decoded under fp16 storage; as prepared, i.e.
    /// normalized for cosine).
    func decodeVector(_ node: Int) -> [Float] {
        if parameters.quantization == .fp16 {
            return [Float](unsafeUninitializedCapacity: dimension) { b, n in
                fk_from_half(halfVector(node), b.baseAddress!, dimension)
                n = dimension
            }
        }
        return Array(UnsafeBufferPointer(start: floatVector(node), count: dimension))
    }
}

/// The index's storage as plain values, read once per search so the hot loop touches
/// no class properties (no exclusivity checks, no reloads).
struct GraphView {
    let level0: UnsafeMutableRawPointer
    let blockSize: Int
    let vectorOffset: Int
    let dimension: Int
    let metric: Metric
    let quantized: Bool
    let half: Bool
    let scale: Float
    let offsetNorm: Float
    let codeBytes: Int

    @inline(__always)
    func links0(_ node: Int) -> UnsafeMutablePointer<UInt32> {
        (level0 + node * blockSize).assumingMemoryBound(to: UInt32.self)
    }

    @inline(__always)
    func vector(_ node: Int) -> UnsafeMutableRawPointer { level0 + node * blockSize + vectorOffset }

    /// Distances from `q` to `count` nodes, four at a time in C (see `fk_distance_batch`).
    @inline(__always)
    func distances(_ q: PreparedQuery, _ ids: UnsafePointer<UInt32>, _ count: Int, into out: UnsafeMutablePointer<Float>) {
        if quantized {
            let kind: Int32 = metric == .l2 ? 2 : 3
            fk_distance_batch(kind, q.codes!, level0, blockSize, vectorOffset, ids, count, dimension, out)
            let s2 = scale * scale
            switch metric {
            case .l2:
                for i in 0..<count { out[i] *= s2 }
            case .innerProduct, .cosine:
                let one: Float = metric == .cosine ? 1 : 0
                for i in 0..<count {
                    let bias = (vector(Int(ids[i])) + codeBytes).loadUnaligned(as: Float.self)
                    let dot = offsetNorm + scale * (q.bias + bias) + s2 * out[i]
                    out[i] = one - dot
                }
            }
            return
        }
        let (l2Kind, dotKind): (Int32, Int32) = half ? (4, 5) : (0, 1)
        switch metric {
        case .l2:
            fk_distance_batch(l2Kind, q.floats!, level0, blockSize, vectorOffset, ids, count, dimension, out)
        case .innerProduct, .cosine:
            fk_distance_batch(dotKind, q.floats!, level0, blockSize, vectorOffset, ids, count, dimension, out)
            let one: Float = metric == .cosine ? 1 : 0
            for i in 0..<count { out[i] = one - out[i] }
        }
    }

    @inline(__always)
    func distance(_ q: PreparedQuery, _ node: Int) -> Float {
        let d = dimension
        if quantized {
            let codes = vector(node).assumingMemoryBound(to: UInt8.self)
            switch metric {
            case .l2:
                return scale * scale * Float(fk_l2sq_u8(q.codes!, codes, d))
            case .innerProduct, .cosine:
                let dot = offsetNorm + scale * (q.bias + (vector(node) + codeBytes).loadUnaligned(as: Float.self)) + scale * scale * Float(fk_dot_u8(q.codes!, codes, d))
                return metric == .cosine ? 1 - dot : -dot
            }
        }
        if half {
            let h = UnsafePointer(vector(node).assumingMemoryBound(to: UInt16.self))
            let value: Float
            if let qh = q.half {
                value = metric == .l2 ? fk_l2sq_f16f16(qh, h, d) : fk_dot_f16f16(qh, h, d)
            } else {
                value = metric == .l2 ? fk_l2sq_f16(q.floats!, h, d) : fk_dot_f16(q.floats!, h, d)
            }
            switch metric {
            case .l2: return value
            case .innerProduct: return -value
            case .cosine: return 1 - value
            }
        }
        let v = vector(node).assumingMemoryBound(to: Float.self)
        switch metric {
        case .l2: return fk_l2sq_f32(q.floats!, v, d)
        case .innerProduct: return -fk_dot_f32(q.floats!, v, d)
        case .cosine: return 1 - fk_dot_f32(q.floats!, v, d)
        }
    }
}

extension HNSWIndex {
    @inline(__always)
    var view: GraphView {
        GraphView(level0: level0, blockSize: blockSize, vectorOffset: linkWords0 * 4, dimension: dimension,
                  metric: parameters.metric, quantized: quantizer != nil,
                  half: parameters.quantization == .fp16, scale: quantizer?.scale ?? 1,
                  offsetNorm: quantizer?.offsetNorm ?? 0, codeBytes: codeBytes)
    }
}
