import CBLAS
import Collectives
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

/// Float storage that keeps its allocation from one training step to the next and that
/// several threads may write at disjoint ranges (row blocks of a batch).
final class Scratch {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private(set) var capacity: Int

    init() {
        pointer = .allocate(capacity: 1)
        capacity = 1
    }

    deinit { pointer.deallocate() }

    /// Room for at least `count` floats; the contents are undefined after it grows.
    @discardableResult
    func reserve(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            pointer.deallocate()
            pointer = .allocate(capacity: count)
            capacity = count
        }
        return pointer
    }

    func array(_ count: Int) -> [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}

/// One tower: pooled embedding lookups, concatenated, through ReLU layers and a linear
/// output, L2-normalized. Forward and backward run through sgemm; embeddings update with
/// row-wise Adagrad (only the rows a batch touched), dense weights with Adam.
///
/// A training step splits its batch into `threads` row blocks that run on their own
/// threads, each with single-threaded sgemms (data parallelism: the batch's rows are
/// independent until the weight gradients, which are summed in block order, so a given
/// thread count always gives the same result).
public final class Tower {
    public let features: EntityFeatures
    public let outputDimension: Int
    var tables: [[Float]]
    var tableAccum: [[Float]]
    var layers: [DenseLayer]
    let fieldOffsets: [Int]
    var adamStep = 0
    /// Threads (row blocks) of a training step's forward and backward pass.
    var threads = 1

    // The last forward pass: its entities, which of them had their id dropped, each layer's
    // input (acts[l], B x widths[l]; acts[L] is the output before normalization), the
    // output norms, and the gradients of the backward pass (grads[l] matches acts[l]).
    var batchEntities: [Int32] = []
    var droppedID: [Bool] = []
    private(set) var widths: [Int]
    private(set) var acts: [Scratch]
    let norms = Scratch()
    private(set) var grads: [Scratch]
    /// Per row block and layer: that block's share of the weight and bias gradients.
    var partial: [[(gw: Scratch, gb: Scratch)]] = []
    /// Lazy Adam's moments per table (allocated when that optimizer first runs).
    var adamM: [[Float]] = [], adamV: [[Float]] = []
    /// The ranks training this tower together (Tower+DataParallel.swift): dense gradients
    /// are summed over them, embedding row `code` is owned by rank `code % size`.
    var communicator: any Communicator = SingleProcess.shared
    // Row-wise updates: slot of each touched embedding row (-1: untouched), and their sums.
    var slots: [[Int32]] = []
    let rowGradients = Scratch()

    public init(features: EntityFeatures, hidden: [Int], outputDimension: Int, seed: UInt64) {
        self.features = features
        self.outputDimension = outputDimension
        var rng = SeededGenerator(seed: seed)
        tables = features.fields.map { f in (0..<(f.vocabularySize * f.dimension)).map { _ in rng.nextGaussian() * 0.05 } }
        tableAccum = features.fields.map { [Float](repeating: 0, count: $0.vocabularySize) }
        var widths = [features.inputDimension] + hidden + [outputDimension]
        if widths[0] == 0 { widths[0] = 1 }
        self.widths = widths
        layers = (0..<(widths.count - 1)).map { DenseLayer(inputs: widths[$0], outputs: widths[$0 + 1], rng: &rng) }
        var off = [Int](), o = 0
        for f in features.fields { off.append(o); o += f.dimension }
        fieldOffsets = off
        acts = widths.map { _ in Scratch() }
        grads = widths.map { _ in Scratch() }
    }

    /// Replaces the dense layers (loaded or copied from another tower) after checking that
    /// they chain from this tower's input width.
    /// - Throws: `TwoTowerError.invalidData` when a layer's width does not match its neighbour's.
    func setLayers(_ new: [DenseLayer]) throws {
        guard let first = new.first, first.inputs == widths[0] else {
            throw TwoTowerError.invalidData("the first dense layer does not take the \(widths[0]) feature inputs")
        }
        for (a, b) in zip(new, new.dropFirst()) where a.outputs != b.inputs {
            throw TwoTowerError.invalidData("a dense layer of \(a.outputs) outputs feeds one of \(b.inputs) inputs")
        }
        for l in new where l.w.count != l.inputs * l.outputs || l.b.count != l.outputs {
            throw TwoTowerError.invalidData("a dense layer's weights do not match its shape")
        }
        layers = new
        widths = [first.inputs] + new.map(\.outputs)
        acts = widths.map { _ in Scratch() }
        grads = widths.map { _ in Scratch() }
        partial = []
    }

    /// The row blocks a batch of `n` rows splits into: `threads` of them, each of at least 32 rows.
    static func rowBlocks(_ n: Int, threads: Int) -> [Range<Int>] {
        let count = max(1, min(threads, n / 32))
        return (0..<count).map { b in (b * n / count)..<((b + 1) * n / count) }
    }

    /// Embeds `entities` (B rows of the output, unit length). With `idDropout > 0`, each
    /// entity's id lookup is replaced by the unknown row with that probability.
    /// - Complexity: O(B * (lookups * dim + sum of layer in * out)).
    public func forward(_ entities: [Int32], idDropout: Float = 0, rng: inout SeededGenerator) -> [Float] {
        let bsz = entities.count, d = outputDimension
        batchEntities = entities
        droppedID = [Bool](repeating: false, count: bsz)
        if idDropout > 0 && features.fields.contains(where: { $0.kind == .id }) {
            for r in 0..<bsz { droppedID[r] = rng.nextUnit() < idDropout }
        }
        for (l, w) in widths.enumerated() { acts[l].reserve(bsz * w) }
        norms.reserve(bsz)
        var out = [Float](repeating: 0, count: bsz * d)
        let blocks = Self.rowBlocks(bsz, threads: threads)
        out.withUnsafeMutableBufferPointer { o in
            let outPointer = o.baseAddress!
            Parallel.forEach(blocks: blocks.count, threads: threads) { b, _ in
                forwardRows(blocks[b], out: outPointer)
            }
        }
        return out
    }

    private func forwardRows(_ rows: Range<Int>, out: UnsafeMutablePointer<Float>) {
        guard !rows.isEmpty else { return }
        let inDim = widths[0], m = rows.count, r0 = rows.lowerBound
        let x = acts[0].pointer
        (x + r0 * inDim).initialize(repeating: 0, count: m * inDim)
        batchEntities.withUnsafeBufferPointer { entities in
            droppedID.withUnsafeBufferPointer { dropped in
                for (fi, f) in features.fields.enumerated() {
                    let off = fieldOffsets[fi], d = f.dimension, isID = f.kind == .id
                    if f.kind.isDense {
                        for r in rows { x[r * inDim + off] = f.values[Int(entities[r])] }
                        continue
                    }
                    let sum = f.kind.pooling == .sum
                    tables[fi].withUnsafeBufferPointer { t in
                        f.offsets.withUnsafeBufferPointer { offsets in
                            f.codes.withUnsafeBufferPointer { codes in
                                let table = t.baseAddress!
                                for r in rows {
                                    let e = Int(entities[r])
                                    var lo = Int(offsets[e])
                                    let hi = Int(offsets[e + 1])
                                    if isID && dropped[r] { lo = hi }  // the unknown row below
                                    let dst = x + r * inDim + off
                                    if lo == hi {
                                        dst.update(from: table, count: d)  // row 0: unknown
                                        continue
                                    }
                                    let inv = sum ? 1 : 1 / Float(hi - lo)
                                    for k in lo..<hi {
                                        let src = table + Int(codes[k]) * d
                                        for j in 0..<d { dst[j] += src[j] * inv }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        for (li, layer) in layers.enumerated() {
            let lin = widths[li], lout = widths[li + 1]
            let h = acts[li].pointer + r0 * lin, y = acts[li + 1].pointer + r0 * lout
            layer.b.withUnsafeBufferPointer { b in
                for r in 0..<m { (y + r * lout).update(from: b.baseAddress!, count: lout) }
            }
            layer.w.withUnsafeBufferPointer { w in
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(lout), Int32(lin),
                            1, h, Int32(lin), w.baseAddress, Int32(lout), 1, y, Int32(lout))
            }
            if li < layers.count - 1 {
                for i in 0..<(m * lout) where y[i] < 0 { y[i] = 0 }
            }
        }
        let d = outputDimension, pre = acts[layers.count].pointer
        for r in rows {
            let row = pre + r * d
            var s: Float = 0
            for j in 0..<d { s += row[j] * row[j] }
            let n = max(s.squareRoot(), 1e-12)
            norms.pointer[r] = n
            for j in 0..<d { out[r * d + j] = row[j] / n }
        }
    }

    /// Back-propagates dL/d(output) (B x d) of the last forward pass, accumulating gradients.
    func backward(_ dOut: [Float]) {
        let bsz = batchEntities.count, nl = layers.count
        precondition(dOut.count == bsz * outputDimension, "gradient of \(dOut.count) floats for \(bsz) rows")
        for (l, w) in widths.enumerated() { grads[l].reserve(bsz * w) }
        let blocks = Self.rowBlocks(bsz, threads: threads)
        while partial.count < blocks.count { partial.append(layers.map { _ in (Scratch(), Scratch()) }) }
        for b in blocks.indices {
            for li in 0..<nl {
                partial[b][li].gw.reserve(widths[li] * widths[li + 1])
                partial[b][li].gb.reserve(widths[li + 1])
            }
        }
        dOut.withUnsafeBufferPointer { g in
            let dOutPointer = g.baseAddress!
            Parallel.forEach(blocks: blocks.count, threads: threads) { b, _ in
                backwardRows(blocks[b], block: b, dOut: dOutPointer)
            }
        }
        // Sum the blocks' weight gradients in block order (the same result for a given thread count).
        for li in 0..<nl {
            let nw = widths[li] * widths[li + 1], nb = widths[li + 1]
            for b in blocks.indices {
                layers[li].gw.withUnsafeMutableBufferPointer { gw in cblas_saxpy(Int32(nw), 1, partial[b][li].gw.pointer, 1, gw.baseAddress, 1) }
                layers[li].gb.withUnsafeMutableBufferPointer { gb in cblas_saxpy(Int32(nb), 1, partial[b][li].gb.pointer, 1, gb.baseAddress, 1) }
            }
        }
    }

    private func backwardRows(_ rows: Range<Int>, block: Int, dOut: UnsafePointer<Float>) {
        guard !rows.isEmpty else { return }
        let d = outputDimension, m = rows.count, r0 = rows.lowerBound, nl = layers.count
        // Through the normalization: dE = (dU - U (U . dU)) / |E|.
        let pre = acts[nl].pointer, g = grads[nl].pointer
        for r in rows {
            let n = norms.pointer[r], p = pre + r * d, dr = dOut + r * d
            var dot: Float = 0
            for j in 0..<d { dot += (p[j] / n) * dr[j] }
            for j in 0..<d { g[r * d + j] = (dr[j] - p[j] / n * dot) / n }
        }
        for li in stride(from: nl - 1, through: 0, by: -1) {
            let lin = widths[li], lout = widths[li + 1]
            let input = acts[li].pointer + r0 * lin, gl = grads[li + 1].pointer + r0 * lout
            let dIn = grads[li].pointer + r0 * lin
            let pgw = partial[block][li].gw.pointer, pgb = partial[block][li].gb.pointer
            // dW = input^T g ; db = sum g ; dInput = g W^T
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(lin), Int32(lout), Int32(m),
                        1, input, Int32(lin), gl, Int32(lout), 0, pgw, Int32(lout))
            pgb.initialize(repeating: 0, count: lout)
            for r in 0..<m { for j in 0..<lout { pgb[j] += gl[r * lout + j] } }
            layers[li].w.withUnsafeBufferPointer { w in
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(lin), Int32(lout),
                            1, gl, Int32(lout), w.baseAddress, Int32(lout), 0, dIn, Int32(lin))
            }
            if li > 0 {
                for i in 0..<(m * lin) where input[i] <= 0 { dIn[i] = 0 }  // ReLU
            }
        }
    }

    /// dL/dx of the last backward pass (B x input width).
    var embeddingGradients: [Float] { grads[0].array(batchEntities.count * widths[0]) }

    /// Applies Adam to the dense layers and the embedding optimizer (row-wise Adagrad, or
    /// lazy Adam) to the embedding rows the batch touched, then clears the gradients.
    func step(learningRate: Float, embeddingLearningRate: Float, optimizer: EmbeddingOptimizer = .adagrad) {
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
        let bsz = batchEntities.count, inDim = widths[0], eg = grads[0].pointer
        if slots.count != features.fields.count { slots = features.fields.map { _ in [] } }
        for (fi, f) in features.fields.enumerated() where !f.kind.isDense {
            let off = fieldOffsets[fi], d = f.dimension, isID = f.kind == .id, sum = f.kind.pooling == .sum
            if slots[fi].count != f.vocabularySize { slots[fi] = [Int32](repeating: -1, count: f.vocabularySize) }
            // Sum each touched row's gradient over the batch, then one Adagrad update per row.
            var lookups = 0
            for r in 0..<bsz {
                let e = Int(batchEntities[r])
                lookups += max(1, Int(f.offsets[e + 1] - f.offsets[e]))
            }
            let sums = rowGradients.reserve(min(lookups, f.vocabularySize) * d)
            var touched = [Int32]()
            touched.reserveCapacity(min(lookups, f.vocabularySize))
            slots[fi].withUnsafeMutableBufferPointer { slot in
                func add(_ code: Int32, _ src: UnsafeMutablePointer<Float>, _ scale: Float) {
                    var s = Int(slot[Int(code)])
                    if s < 0 {
                        s = touched.count
                        slot[Int(code)] = Int32(s)
                        touched.append(code)
                        (sums + s * d).initialize(repeating: 0, count: d)
                    }
                    let dst = sums + s * d
                    for j in 0..<d { dst[j] += src[j] * scale }
                }
                for r in 0..<bsz {
                    let e = Int(batchEntities[r])
                    var lo = Int(f.offsets[e])
                    let hi = Int(f.offsets[e + 1])
                    if isID && droppedID[r] { lo = hi }
                    let src = eg + r * inDim + off
                    if lo == hi { add(0, src, 1); continue }
                    let inv = sum ? 1 : 1 / Float(hi - lo)
                    for k in lo..<hi { add(f.codes[k], src, inv) }
                }
                for code in touched { slot[Int(code)] = -1 }
            }
            if communicator.size > 1 {
                // Each row's gradient goes to the rank that owns it, which sums the ranks' parts.
                let (codes, grads) = exchangeRowGradients(touched, sums, dimension: d)
                grads.withUnsafeBufferPointer { g in
                    if let base = g.baseAddress { applyRows(field: fi, codes: codes, grads: base, rate: embeddingLearningRate, optimizer: optimizer) }
                }
            } else {
                applyRows(field: fi, codes: touched, grads: sums, rate: embeddingLearningRate, optimizer: optimizer)
            }
        }
    }

    /// One embedding-optimizer update per row: `grads` holds each of `codes`' summed
    /// gradient (`dimension` floats each).
    private func applyRows(field fi: Int, codes: [Int32], grads: UnsafePointer<Float>, rate embeddingLearningRate: Float,
                           optimizer: EmbeddingOptimizer) {
        let d = features.fields[fi].dimension
        let b1: Float = 0.9, b2: Float = 0.999, eps: Float = 1e-8
        let c1 = 1 - pow(b1, Float(adamStep)), c2 = 1 - pow(b2, Float(adamStep))
        switch optimizer {
        case .adagrad:
            tables[fi].withUnsafeMutableBufferPointer { table in
                tableAccum[fi].withUnsafeMutableBufferPointer { accum in
                    for (s, code) in codes.enumerated() {
                        let row = Int(code), gr = grads + s * d
                        var sq: Float = 0
                        for j in 0..<d { sq += gr[j] * gr[j] }
                        accum[row] += sq / Float(d)
                        let lr = embeddingLearningRate / (accum[row].squareRoot() + 1e-6)
                        for j in 0..<d { table[row * d + j] -= lr * gr[j] }
                    }
                }
            }
        case .lazyAdam:
            // Adam moments only for the rows this batch touched (untouched rows keep
            // theirs as they were), bias-corrected by the global step.
            let size = tables[fi].count
            if adamM.count != features.fields.count { adamM = features.fields.map { _ in [] }; adamV = adamM }
            if adamM[fi].count < size {
                adamM[fi] += [Float](repeating: 0, count: size - adamM[fi].count)
                adamV[fi] += [Float](repeating: 0, count: size - adamV[fi].count)
            }
            tables[fi].withUnsafeMutableBufferPointer { table in
            adamM[fi].withUnsafeMutableBufferPointer { m in
            adamV[fi].withUnsafeMutableBufferPointer { v in
                for (s, code) in codes.enumerated() {
                    let row = Int(code), gr = grads + s * d
                    for j in 0..<d {
                        let k = row * d + j
                        m[k] = b1 * m[k] + (1 - b1) * gr[j]
                        v[k] = b2 * v[k] + (1 - b2) * gr[j] * gr[j]
                        table[k] -= embeddingLearningRate * (m[k] / c1) / ((v[k] / c2).squareRoot() + eps)
                    }
                }
            }}}
        }
    }
}

extension EntityFeatures {
    /// `n` more entities known only by their id: every `.id` field gains `n` codes (entity
    /// count + j gets code count + j + 1), every other field gives them the unknown code 0
    /// (or the mean, 0, for a standardized numeric; their attributes are not known yet). Field widths stay as they are, so a tower
    /// trained on the old features can grow to these (`Tower.grown(to:)`).
    public func appending(_ n: Int) -> EntityFeatures {
        precondition(n >= 0, "cannot append a negative number of entities")
        var out = self
        for i in out.fields.indices {
            let isID = out.fields[i].kind == .id
            if isID { out.fields[i].vocabularySize += n }
            for j in 0..<n {
                if out.fields[i].kind.isDense {
                    out.fields[i].values.append(0)  // the standardized mean
                } else {
                    out.fields[i].codes.append(isID ? Int32(count + j + 1) : 0)
                }
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
        let t = Tower(features: features, hidden: Array(widths.dropFirst().dropLast()), outputDimension: outputDimension, seed: seed)
        var rng = SeededGenerator(seed: seed)
        for (fi, f) in features.fields.enumerated() {
            let kept = old.fields[fi].vocabularySize * f.dimension
            let added = (f.vocabularySize - old.fields[fi].vocabularySize) * f.dimension
            t.tables[fi] = tables[fi] + (0..<added).map { _ in rng.nextGaussian() * 0.05 }
            t.tableAccum[fi] = tableAccum[fi] + [Float](repeating: 0, count: f.vocabularySize - old.fields[fi].vocabularySize)
            precondition(t.tables[fi].count == kept + added)
        }
        try t.setLayers(layers)
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

extension Tower {
    /// The embedding of row `row` of `features` (this tower's fields, possibly with more rows
    /// and larger vocabularies: an entity written after training), computed without touching
    /// the tower's training buffers, so many threads may call it at once. A code the tower
    /// has no table row for (a value first seen after training) reads as unknown, like a
    /// missing value; `hideID` hides the id as id dropout does.
    /// - Throws: `TwoTowerError.invalidData` for a row outside `features` or fields that differ.
    public func embed(_ features: EntityFeatures, row: Int, hideID: Bool = true) throws -> [Float] {
        guard (0..<features.count).contains(row) else {
            throw TwoTowerError.invalidData("row \(row) is outside the \(features.count) entities of the features")
        }
        guard features.fields.count == self.features.fields.count,
              zip(features.fields, self.features.fields).allSatisfy({ $0.name == $1.name && $0.kind == $1.kind && $0.dimension == $1.dimension }) else {
            throw TwoTowerError.invalidData("the features' fields are not this tower's")
        }
        var x = [Float](repeating: 0, count: widths[0])
        for (fi, f) in features.fields.enumerated() {
            let off = fieldOffsets[fi], d = f.dimension
            if f.kind.isDense {
                x[off] = f.values[row]
                continue
            }
            let table = tables[fi], rowsInTable = table.count / max(d, 1)
            var lo = Int(f.offsets[row])
            let hi = Int(f.offsets[row + 1])
            if hideID && f.kind == .id { lo = hi }
            let known = (lo..<hi).map { Int(f.codes[$0]) }.filter { $0 >= 0 && $0 < rowsInTable }
            if known.isEmpty {
                for j in 0..<d { x[off + j] = table[j] }  // row 0: unknown
                continue
            }
            let scale: Float = f.kind.pooling == .sum ? 1 : 1 / Float(known.count)
            for c in known { for j in 0..<d { x[off + j] += table[c * d + j] * scale } }
        }
        var h = x
        for (li, layer) in layers.enumerated() {
            var y = layer.b
            let lin = widths[li], lout = widths[li + 1]
            for i in 0..<lin where h[i] != 0 {
                let hi = h[i]
                for j in 0..<lout { y[j] += hi * layer.w[i * lout + j] }
            }
            if li < layers.count - 1 { for j in y.indices where y[j] < 0 { y[j] = 0 } }
            h = y
        }
        let n = max(h.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
        return h.map { $0 / n }
    }
}
