import _FunnelKernels
import LinearAlgebra

/// A query made ready for the index's storage: normalized for cosine, and encoded
/// when the graph holds int8 codes.
struct PreparedQuery {
    let floats: UnsafePointer<Float>
    let codes: UnsafePointer<UInt8>?
    let bias: Float
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

    /// A query view of a stored node (used while linking it).
    @inline(__always)
    func preparedNode(_ node: Int) -> PreparedQuery {
        if parameters.quantization == .int8 {
            return PreparedQuery(floats: floatVector(node),
                                 codes: UnsafePointer(vectorBytesPointer(node).assumingMemoryBound(to: UInt8.self)),
                                 bias: codeBias![node])
        }
        return PreparedQuery(floats: floatVector(node), codes: nil, bias: 0)
    }

    /// The traversal distance from a prepared query to `node` (codes when quantized).
    @inline(__always)
    func distance(_ q: PreparedQuery, _ node: Int) -> Float {
        let d = dimension
        if let qc = q.codes {
            let codes = vectorBytesPointer(node).assumingMemoryBound(to: UInt8.self)
            let s = quantizer!.scale
            switch parameters.metric {
            case .l2:
                return s * s * Float(fk_l2sq_u8(qc, codes, d))
            case .innerProduct, .cosine:
                let dot = quantizer!.offsetNorm + s * (q.bias + codeBias![node]) + s * s * Float(fk_dot_u8(qc, codes, d))
                return parameters.metric == .cosine ? 1 - dot : -dot
            }
        }
        let v = vectorBytesPointer(node).assumingMemoryBound(to: Float.self)
        switch parameters.metric {
        case .l2: return fk_l2sq_f32(q.floats, v, d)
        case .innerProduct: return -fk_dot_f32(q.floats, v, d)
        case .cosine: return 1 - fk_dot_f32(q.floats, v, d)
        }
    }

    /// The exact float distance from a prepared query to `node` (for rescoring).
    @inline(__always)
    func exactDistance(_ q: PreparedQuery, _ node: Int) -> Float {
        parameters.metric.distance(q.floats, floatVector(node), dimension)
    }
}
