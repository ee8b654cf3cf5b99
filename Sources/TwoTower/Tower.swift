import CBLAS
import Foundation
import LinearAlgebra

/// A dense layer y = x W + b with Adam state.
struct DenseLayer {
    var inputs: Int
    var outputs: Int
    var w: [Float]
    var b: [Float]
    var gw: [Float]
    var gb: [Float]
    var mw: [Float], vw: [Float], mb: [Float], vb: [Float]

    init(inputs: Int, outputs: Int, rng: inout SeededGenerator) {
        self.inputs = inputs
        self.outputs = outputs
        let scale = (2 / Float(inputs)).squareRoot()  // He initialization for ReLU
        w = (0..<(inputs * outputs)).map { _ in rng.nextGaussian() * scale }
        b = [Float](repeating: 0, count: outputs)
        gw = [Float](repeating: 0, count: inputs * outputs)
        gb = [Float](repeating: 0, count: outputs)
        mw = gw; vw = gw; mb = gb; vb = gb
    }
}

/// One tower: pooled embedding lookups, concatenated, through ReLU layers and a linear
/// output, L2-normalized. Forward and backward run through sgemm; embeddings update with
/// row-wise Adagrad (only the rows a batch touched), dense weights with Adam.
public final class Tower {
    public let features: EntityFeatures
    public let outputDimension: Int
    var tables: [[Float]]
    var tableAccum: [[Float]]
    var layers: [DenseLayer]
    /// Per-layer activations of the last forward pass (input first).
    var activations: [[Float]] = []
    var preNorm: [Float] = []
    var norms: [Float] = []
    var batchEntities: [Int32] = []
    var droppedID: [Bool] = []
    let fieldOffsets: [Int]
    var adamStep = 0

    public init(features: EntityFeatures, hidden: [Int], outputDimension: Int, seed: UInt64) {
        self.features = features
        self.outputDimension = outputDimension
        var rng = SeededGenerator(seed: seed)
        tables = features.fields.map { f in (0..<(f.vocabularySize * f.dimension)).map { _ in rng.nextGaussian() * 0.05 } }
        tableAccum = features.fields.map { [Float](repeating: 0, count: $0.vocabularySize) }
        var widths = [features.inputDimension] + hidden + [outputDimension]
        if widths[0] == 0 { widths[0] = 1 }
        layers = (0..<(widths.count - 1)).map { DenseLayer(inputs: widths[$0], outputs: widths[$0 + 1], rng: &rng) }
        var off = [Int](), o = 0
        for f in features.fields { off.append(o); o += f.dimension }
        fieldOffsets = off
    }

    /// Embeds `entities` (B rows of the output, unit length). With `idDropout > 0`, each
    /// entity's id lookup is replaced by the unknown row with that probability.
    /// - Complexity: O(B * (lookups * dim + sum of layer in * out)).
    public func forward(_ entities: [Int32], idDropout: Float = 0, rng: inout SeededGenerator) -> [Float] {
        let bsz = entities.count
        let inDim = layers[0].inputs
        var x = [Float](repeating: 0, count: bsz * inDim)
        batchEntities = entities
        droppedID = [Bool](repeating: false, count: bsz)
        for (fi, f) in features.fields.enumerated() {
            let off = fieldOffsets[fi], d = f.dimension
            let isID = f.kind == .id
            tables[fi].withUnsafeBufferPointer { t in
                for (r, e) in entities.enumerated() {
                    var lo = Int(f.offsets[Int(e)]), hi = Int(f.offsets[Int(e) + 1])
                    if isID && idDropout > 0 && rng.nextUnit() < idDropout {
                        droppedID[r] = true
                        lo = hi  // use the unknown row below
                    }
                    let base = r * inDim + off
                    if lo == hi {
                        for j in 0..<d { x[base + j] = t[j] }  // row 0: unknown
                        continue
                    }
                    let inv = 1 / Float(hi - lo)
                    for k in lo..<hi {
                        let row = Int(f.codes[k]) * d
                        for j in 0..<d { x[base + j] += t[row + j] * inv }
                    }
                }
            }
        }
        activations = [x]
        var h = x
        for (li, layer) in layers.enumerated() {
            var y = [Float](repeating: 0, count: bsz * layer.outputs)
            for r in 0..<bsz { for j in 0..<layer.outputs { y[r * layer.outputs + j] = layer.b[j] } }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(bsz), Int32(layer.outputs), Int32(layer.inputs),
                        1, h, Int32(layer.inputs), layer.w, Int32(layer.outputs), 1, &y, Int32(layer.outputs))
            if li < layers.count - 1 {
                for i in y.indices where y[i] < 0 { y[i] = 0 }
                activations.append(y)
            }
            h = y
        }
        preNorm = h
        let d = outputDimension
        norms = [Float](repeating: 1, count: bsz)
        var out = h
        for r in 0..<bsz {
            var s: Float = 0
            for j in 0..<d { s += h[r * d + j] * h[r * d + j] }
            let n = max(s.squareRoot(), 1e-12)
            norms[r] = n
            for j in 0..<d { out[r * d + j] = h[r * d + j] / n }
        }
        return out
    }

    /// Back-propagates dL/d(output) (B x d) of the last forward pass, accumulating gradients.
    func backward(_ dOut: [Float]) {
        let bsz = batchEntities.count, d = outputDimension
        // Through the normalization: dE = (dU - U (U . dU)) / |E|.
        var g = [Float](repeating: 0, count: bsz * d)
        for r in 0..<bsz {
            let n = norms[r]
            var dot: Float = 0
            for j in 0..<d { dot += (preNorm[r * d + j] / n) * dOut[r * d + j] }
            for j in 0..<d { g[r * d + j] = (dOut[r * d + j] - preNorm[r * d + j] / n * dot) / n }
        }
        for li in stride(from: layers.count - 1, through: 0, by: -1) {
            let input = activations[li]
            let lin = layers[li].inputs, lout = layers[li].outputs
            // dW = input^T g ; db = sum g ; dInput = g W^T
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(lin), Int32(lout), Int32(bsz),
                        1, input, Int32(lin), g, Int32(lout), 1, &layers[li].gw, Int32(lout))
            for r in 0..<bsz { for j in 0..<lout { layers[li].gb[j] += g[r * lout + j] } }
            var dIn = [Float](repeating: 0, count: bsz * lin)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(bsz), Int32(lin), Int32(lout),
                        1, g, Int32(lout), layers[li].w, Int32(lout), 0, &dIn, Int32(lin))
            if li > 0 {
                for i in dIn.indices where input[i] <= 0 { dIn[i] = 0 }  // ReLU
            }
            g = dIn
        }
        embeddingGradients = g
    }

    /// dL/dx of the last backward pass (B x input width).
    var embeddingGradients: [Float] = []

    /// Applies Adam to the dense layers and row-wise Adagrad to the embedding rows the
    /// batch touched, then clears the gradients.
    func step(learningRate: Float, embeddingLearningRate: Float) {
        adamStep += 1
        let b1: Float = 0.9, b2: Float = 0.999, eps: Float = 1e-8
        let c1 = 1 - pow(b1, Float(adamStep)), c2 = 1 - pow(b2, Float(adamStep))
        func adam(_ p: inout [Float], _ gr: inout [Float], _ m: inout [Float], _ v: inout [Float]) {
            for i in p.indices {
                m[i] = b1 * m[i] + (1 - b1) * gr[i]
                v[i] = b2 * v[i] + (1 - b2) * gr[i] * gr[i]
                p[i] -= learningRate * (m[i] / c1) / ((v[i] / c2).squareRoot() + eps)
                gr[i] = 0
            }
        }
        for li in layers.indices {
            // Move the layer out and back so its arrays stay uniquely referenced (no copies).
            var layer = layers[li]
            layers[li].w = []; layers[li].gw = []; layers[li].mw = []; layers[li].vw = []
            layers[li].b = []; layers[li].gb = []; layers[li].mb = []; layers[li].vb = []
            adam(&layer.w, &layer.gw, &layer.mw, &layer.vw)
            adam(&layer.b, &layer.gb, &layer.mb, &layer.vb)
            layers[li] = layer
        }
        let inDim = layers[0].inputs
        for (fi, f) in features.fields.enumerated() {
            let off = fieldOffsets[fi], d = f.dimension
            // Sum each touched row's gradient over the batch, then one Adagrad update per row.
            var rowGrads = [Int32: [Float]]()
            for (r, e) in batchEntities.enumerated() {
                var lo = Int(f.offsets[Int(e)]), hi = Int(f.offsets[Int(e) + 1])
                if f.kind == .id && droppedID[r] { lo = hi }
                let base = r * inDim + off
                if lo == hi {
                    var acc = rowGrads[0] ?? [Float](repeating: 0, count: d)
                    for j in 0..<d { acc[j] += embeddingGradients[base + j] }
                    rowGrads[0] = acc
                    continue
                }
                let inv = 1 / Float(hi - lo)
                for k in lo..<hi {
                    let code = f.codes[k]
                    var acc = rowGrads[code] ?? [Float](repeating: 0, count: d)
                    for j in 0..<d { acc[j] += embeddingGradients[base + j] * inv }
                    rowGrads[code] = acc
                }
            }
            for (code, gr) in rowGrads {
                let row = Int(code)
                var sq: Float = 0
                for j in 0..<d { sq += gr[j] * gr[j] }
                tableAccum[fi][row] += sq / Float(d)
                let lr = embeddingLearningRate / (tableAccum[fi][row].squareRoot() + 1e-6)
                for j in 0..<d { tables[fi][row * d + j] -= lr * gr[j] }
            }
        }
    }
}

extension EntityFeatures {
    /// `n` more entities known only by their id: every `.id` field gains `n` codes (entity
    /// count + j gets code count + j + 1), every other field gives them the unknown code 0
    /// (their attributes are not known yet). Field widths stay as they are, so a tower
    /// trained on the old features can grow to these (`Tower.grown(to:)`).
    public func appending(_ n: Int) -> EntityFeatures {
        precondition(n >= 0, "cannot append a negative number of entities")
        var out = self
        for i in out.fields.indices {
            let isID = out.fields[i].kind == .id
            if isID { out.fields[i].vocabularySize += n }
            for j in 0..<n {
                out.fields[i].codes.append(isID ? Int32(count + j + 1) : 0)
                out.fields[i].offsets.append(Int32(out.fields[i].codes.count))
            }
        }
        out.count += n
        return out
    }
}

extension Tower {
    /// This tower over `features`: the same fields and widths, vocabularies no smaller (see
    /// `EntityFeatures.appending`). Embedding rows of existing codes, dense layers and
    /// optimizer state are copied; rows of new codes start small and random, with fresh
    /// Adagrad accumulators. Old entities embed exactly as before.
    /// - Throws: `TwoTowerError.invalidData` when the fields do not line up.
    public func grown(to features: EntityFeatures, seed: UInt64) throws -> Tower {
        let old = self.features
        guard features.fields.count == old.fields.count else {
            throw TwoTowerError.invalidData("\(features.fields.count) feature fields, the tower has \(old.fields.count)")
        }
        for (a, b) in zip(old.fields, features.fields) {
            guard a.name == b.name, a.kind == b.kind, a.dimension == b.dimension, b.vocabularySize >= a.vocabularySize else {
                throw TwoTowerError.invalidData("field '\(b.name)' does not extend '\(a.name)' (kind, width, or a smaller vocabulary)")
            }
        }
        let t = Tower(features: features, hidden: [], outputDimension: outputDimension, seed: seed)
        var rng = SeededGenerator(seed: seed)
        for (fi, f) in features.fields.enumerated() {
            let kept = old.fields[fi].vocabularySize * f.dimension
            let added = (f.vocabularySize - old.fields[fi].vocabularySize) * f.dimension
            t.tables[fi] = tables[fi] + (0..<added).map { _ in rng.nextGaussian() * 0.05 }
            t.tableAccum[fi] = tableAccum[fi] + [Float](repeating: 0, count: f.vocabularySize - old.fields[fi].vocabularySize)
            precondition(t.tables[fi].count == kept + added)
        }
        t.layers = layers
        t.adamStep = adamStep
        return t
    }
}

extension TwoTowerModel {
    /// The model over more users and items (their features from `EntityFeatures.appending`
    /// or rebuilt with the same fields): both towers grown, item frequency estimates kept for
    /// the old items. Continue with `fit` on interactions that involve the new ones.
    public func growing(users newUsers: EntityFeatures, items newItems: EntityFeatures,
                        parameters p: TwoTowerParameters? = nil) throws -> TwoTowerModel {
        let p = p ?? parameters
        let u = try users.grown(to: newUsers, seed: p.seed &+ 17)
        let i = try items.grown(to: newItems, seed: p.seed &+ 18)
        let added = newItems.count - items.features.count
        return TwoTowerModel(users: u, items: i, parameters: p,
                             lastSeen: lastSeen + [Double](repeating: -1, count: added),
                             gap: gap + [Double](repeating: 100, count: added), step: step)
    }
}
