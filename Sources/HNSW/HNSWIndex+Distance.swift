import _FunnelKernels
import LinearAlgebra

/// A query made ready for the index's storage: normalized for cosine, and, when the graph
/// holds int8 codes, scaled per dimension for asymmetric distances (see `ScalarQuantizer`).
struct PreparedQuery {
    /// The float query; nil only for a stored node's view under fp16 storage.
    let floats: UnsafePointer<Float>?
    /// int8: the query times the per-dimension scales (int16 on a common `step`),
    /// sum q * offset, and |q|^2.
    var scaled: UnsafePointer<Int16>? = nil
    /// int8: dimensions left out of the integer sum and their q * scale (see `ScalarQuantizer.prepare`).
    var outlierDims: UnsafePointer<Int32>? = nil
    var outlierWeights: UnsafePointer<Float>? = nil
    var outlierCount = 0
    var step: Float = 0
    var base: Float = 0
    var norm: Float = 0
    /// A stored node's half vector (fp16 storage, while linking).
    var half: UnsafePointer<UInt16>? = nil
    /// int8: a stored node's own floats, compared with other nodes' floats (while linking).
    var exact = false
}

extension HNSWIndex {
    /// Copies `query` into the scratch (normalizing for cosine) and scales it if needed.
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
            let (base, step, outliers) = quantizer.prepare(qf, into: scratch.queryScaled, outliers: scratch.outlierDims,
                                                           weights: scratch.outlierWeights, dimension: d)
            return PreparedQuery(floats: qf, scaled: scratch.queryScaled, outlierDims: scratch.outlierDims, outlierWeights: scratch.outlierWeights,
                                 outlierCount: outliers, step: step, base: base, norm: Distance.squaredNorm(qf, d))
        }
        return PreparedQuery(floats: qf)
    }

    /// A query view of a stored node (used while linking it): good for `distance`; under
    /// fp16 it holds the half vector, under int8 the node's floats (compared exactly).
    @inline(__always)
    func preparedNode(_ node: Int) -> PreparedQuery {
        switch parameters.quantization {
        case .fp16: return PreparedQuery(floats: nil, half: UnsafePointer(halfVector(node)))
        case .int8: return PreparedQuery(floats: floatVector(node), exact: true)
        case .none: return PreparedQuery(floats: floatVector(node))
        }
    }

    /// A stored node as a full query, good for the batched `distances` too: under fp16
    /// decoded into `scratch`, under int8 scaled into it.
    @inline(__always)
    func preparedNode(_ node: Int, scratch: SearchScratch) -> PreparedQuery {
        switch parameters.quantization {
        case .fp16:
            fk_from_half(halfVector(node), scratch.queryFloats, dimension)
            return PreparedQuery(floats: scratch.queryFloats)
        case .int8:
            let q = floatVector(node)
            let (base, step, outliers) = quantizer!.prepare(q, into: scratch.queryScaled, outliers: scratch.outlierDims,
                                                            weights: scratch.outlierWeights, dimension: dimension)
            return PreparedQuery(floats: q, scaled: scratch.queryScaled, outlierDims: scratch.outlierDims, outlierWeights: scratch.outlierWeights,
                                 outlierCount: outliers, step: step, base: base, norm: Distance.squaredNorm(q, dimension))
        case .none:
            return preparedNode(node)
        }
    }

    /// The traversal distance from a prepared query to `node` (codes when quantized).
    @inline(__always)
    func distance(_ q: PreparedQuery, _ node: Int) -> Float { view.distance(q, node) }

    /// The exact float distance from a prepared query to `node` (for rescoring); under
    /// fp16 storage, the distance to the float row outside the index when a `RescoreSource`
    /// is attached, else to the half vector (there are no floats).
    @inline(__always)
    func exactDistance(_ q: PreparedQuery, _ node: Int) -> Float {
        if parameters.quantization == .fp16 {
            // Items added after the source was attached have no row there: their half vector.
            if let source = rescoreSource, labels[node] < UInt64(source.rows) {
                return externalDistance(q, source, label: labels[node])
            }
            return view.distance(q, node)
        }
        return parameters.metric.distance(q.floats!, floatVector(node), dimension)
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
    /// int8: the float copies (for node-to-node distances while linking).
    let floats: UnsafeMutablePointer<Float>?
    let codeBytes: Int

    @inline(__always)
    func links0(_ node: Int) -> UnsafeMutablePointer<UInt32> {
        (level0 + node * blockSize).assumingMemoryBound(to: UInt32.self)
    }

    @inline(__always)
    func vector(_ node: Int) -> UnsafeMutableRawPointer { level0 + node * blockSize + vectorOffset }

    /// int8: the outlier dimensions' share of <q, x^>, in floats (0 when there are none).
    @inline(__always)
    func outlierTerm(_ q: PreparedQuery, _ node: Int) -> Float {
        guard q.outlierCount > 0 else { return 0 }
        let codes = vector(node).assumingMemoryBound(to: UInt8.self)
        var s: Float = 0
        for t in 0..<q.outlierCount { s += q.outlierWeights![t] * Float(codes[Int(q.outlierDims![t])]) }
        return s
    }

    /// int8: the metric's distance from <q, x^> and the node's |x^|^2.
    @inline(__always)
    func fromDot(_ dot: Float, _ q: PreparedQuery, node: Int) -> Float {
        switch metric {
        case .l2: return q.norm + (vector(node) + codeBytes).loadUnaligned(as: Float.self) - 2 * dot
        case .innerProduct: return -dot
        case .cosine: return 1 - dot
        }
    }

    /// Distances from `q` to `count` nodes, four at a time in C (see `fk_distance_batch`).
    @inline(__always)
    func distances(_ q: PreparedQuery, _ ids: UnsafePointer<UInt32>, _ count: Int, into out: UnsafeMutablePointer<Float>) {
        if quantized {
            fk_adc_batch_u8(q.scaled!, level0, blockSize, vectorOffset, ids, count, dimension, out)
            for i in 0..<count {
                let node = Int(ids[i])
                out[i] = fromDot(q.base + q.step * out[i] + outlierTerm(q, node), q, node: node)
            }
            return
        }
        let (l2Kind, dotKind): (Int32, Int32) = half ? (2, 3) : (0, 1)
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
            if q.exact { return metric.distance(q.floats!, floats! + node * d, d) }
            let codes = vector(node).assumingMemoryBound(to: UInt8.self)
            return fromDot(q.base + q.step * Float(fk_adc_dot_u8(q.scaled!, codes, d)) + outlierTerm(q, node), q, node: node)
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
                  half: parameters.quantization == .fp16, floats: floats, codeBytes: codeBytes)
    }
}
