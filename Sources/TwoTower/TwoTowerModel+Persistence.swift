import Foundation
import LinearAlgebra
import Persistence

extension FeatureKind {
    /// A stable text form for files: "id", "categorical:col", "hashed:col:n", "multi:col"
    /// (mean) or "multi:col:sum", "numeric:col:n", "standardized:col", "age:col:now:n",
    /// "text:col:n".
    var encoded: String {
        switch self {
        case .id: return "id"
        case .categorical(let c): return "categorical:\(c)"
        case .hashedCategorical(let c, let n): return "hashed:\(c):\(n)"
        case .multiCategorical(let c, let pooling): return pooling == .mean ? "multi:\(c)" : "multi:\(c):\(pooling.rawValue)"
        case .numericBuckets(let c, let n): return "numeric:\(c):\(n)"
        case .numericStandardized(let c): return "standardized:\(c)"
        case .ageBuckets(let c, let now, let n): return "age:\(c):\(now):\(n)"
        case .hashedText(let c, let n): return "text:\(c):\(n)"
        }
    }

    init?(encoded: String) {
        let p = encoded.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        switch (p.first, p.count) {
        case ("id", 1): self = .id
        case ("categorical", 2): self = .categorical(column: p[1])
        case ("hashed", 3): guard let n = Int(p[2]), n >= 1 else { return nil }; self = .hashedCategorical(column: p[1], buckets: n)
        case ("multi", 2): self = .multiCategorical(column: p[1])
        case ("multi", 3): guard let pooling = Pooling(rawValue: p[2]) else { return nil }; self = .multiCategorical(column: p[1], pooling: pooling)
        case ("numeric", 3): guard let n = Int(p[2]) else { return nil }; self = .numericBuckets(column: p[1], buckets: n)
        case ("standardized", 2): self = .numericStandardized(column: p[1])
        case ("age", 4): guard let t = Int64(p[2]), let n = Int(p[3]) else { return nil }; self = .ageBuckets(column: p[1], now: t, buckets: n)
        case ("text", 3): guard let n = Int(p[2]) else { return nil }; self = .hashedText(column: p[1], buckets: n)
        default: return nil
        }
    }
}

extension TwoTowerModel {
    static let magic = "FNLTWOT\u{1}"

    /// Saves both towers (features, embedding tables, layers), the external ids and the
    /// training parameters, atomically in Funnel's checksummed container. Optimizer state
    /// is not saved: a warm start begins with fresh Adam/Adagrad statistics.
    public func save(to path: String, userIDs: [String], itemIDs: [String]) throws {
        // Version 2 added standardized numeric fields (their per-entity values follow the
        // table); version 3 each field's coding state (vocabulary, bucket edges, mean, scale).
        try FunnelFile.write(to: path, magic: Self.magic, version: 3) { w in
            let p = parameters
            w.write(UInt64(p.dimension))
            w.write(array: p.hidden.map { UInt64($0) })
            w.write(p.temperature.bitPattern)
            w.write(UInt64(userIDs.count))
            for s in userIDs { w.write(string: s) }
            w.write(UInt64(itemIDs.count))
            for s in itemIDs { w.write(string: s) }
            for tower in [users, items] {
                w.write(UInt64(tower.features.count))
                w.write(UInt64(tower.features.fields.count))
                for (fi, f) in tower.features.fields.enumerated() {
                    w.write(string: f.name)
                    w.write(string: f.kind.encoded)
                    w.write(UInt64(f.vocabularySize))
                    w.write(UInt64(f.dimension))
                    w.write(array: f.offsets)
                    w.write(array: f.codes)
                    w.write(array: tower.tables[fi])
                    if f.kind.isDense { w.write(array: f.values) }
                    w.write(UInt64(f.vocabulary.count))
                    for v in f.vocabulary { w.write(string: v) }
                    w.write(array: f.edges)
                    w.write(f.mean.bitPattern)
                    w.write(f.scale.bitPattern)
                }
                w.write(UInt64(tower.layers.count))
                for l in tower.layers {
                    w.write(UInt64(l.inputs))
                    w.write(UInt64(l.outputs))
                    w.write(array: l.w)
                    w.write(array: l.b)
                }
            }
        }
    }

    /// Loads a model saved by `save`, checking every count against the data it describes.
    public static func load(from path: String) throws -> (model: TwoTowerModel, userIDs: [String], itemIDs: [String]) {
        func bad(_ why: String) -> TwoTowerError { .invalidData("\(path): \(why)") }
        do {
            var (version, r) = try FunnelFile.read(path, magic: magic, versions: 1...3)
            var p = TwoTowerParameters()
            p.dimension = try r.readCount("dimension", max: 4096)
            let hidden = try r.readArray(UInt64.self, "hidden widths", maxCount: 64)
            guard hidden.allSatisfy({ (1...(1 << 16)).contains($0) }) else {
                throw PersistenceError.corrupt(path: path, reason: "hidden widths \(hidden) are outside 1...65536")
            }
            p.hidden = hidden.map { Int($0) }
            p.temperature = Float(bitPattern: try r.read(UInt32.self, "temperature"))
            var userIDs = [String](), itemIDs = [String]()
            for _ in 0..<(try r.readCount("users", max: r.remaining)) { userIDs.append(try r.readString("user id", maxLength: 4096)) }
            for _ in 0..<(try r.readCount("items", max: r.remaining)) { itemIDs.append(try r.readString("item id", maxLength: 4096)) }
            var towers = [(EntityFeatures, [[Float]], [DenseLayer])]()
            for side in ["user", "item"] {
                let count = try r.readCount("\(side) count", max: r.remaining)
                var fields = [FeatureField](), tables = [[Float]]()
                for _ in 0..<(try r.readCount("\(side) fields", max: 256)) {
                    let name = try r.readString("field name", maxLength: 4096)
                    guard let kind = FeatureKind(encoded: try r.readString("field kind", maxLength: 4096)) else { throw bad("unknown feature kind") }
                    let vocab = try r.readCount("vocabulary", max: r.remaining)
                    let dim = try r.readCount("field dimension", max: 4096)
                    let offsets = try r.readArray(Int32.self, "offsets", maxCount: r.remaining)
                    let codes = try r.readArray(Int32.self, "codes", maxCount: r.remaining)
                    let table = try r.readArray(Float.self, "embedding table", maxCount: r.remaining)
                    guard offsets.count == count + 1, offsets.first == 0, Int(offsets.last!) == codes.count,
                          zip(offsets, offsets.dropFirst()).allSatisfy({ $0 <= $1 }),
                          codes.allSatisfy({ $0 >= 0 && Int($0) < vocab }), table.count == vocab * dim,
                          table.allSatisfy(\.isFinite) else {
                        throw bad("field \(name) of the \(side) tower is inconsistent")
                    }
                    var values = [Float]()
                    if kind.isDense {
                        values = try r.readArray(Float.self, "values", maxCount: r.remaining)
                        guard values.count == count, dim == 1, vocab == 0, values.allSatisfy(\.isFinite) else {
                            throw bad("dense field \(name) of the \(side) tower is inconsistent")
                        }
                    }
                    var field = FeatureField(name: name, kind: kind, vocabularySize: vocab, dimension: dim,
                                             offsets: offsets, codes: codes, values: values)
                    if version >= 3 {
                        let words = try r.readCount("vocabulary strings", max: vocab)
                        for _ in 0..<words { field.vocabulary.append(try r.readString("vocabulary value", maxLength: 1 << 16)) }
                        field.edges = try r.readArray(Float.self, "bucket edges", maxCount: vocab)
                        field.mean = Double(bitPattern: try r.read(UInt64.self, "mean"))
                        field.scale = Double(bitPattern: try r.read(UInt64.self, "scale"))
                        guard field.mean.isFinite, field.scale.isFinite, field.edges.allSatisfy({ !$0.isNaN }) else {
                            throw bad("field \(name) of the \(side) tower has a non-finite coding state")
                        }
                    }
                    fields.append(field)
                    tables.append(table)
                }
                var layers = [DenseLayer]()
                for _ in 0..<(try r.readCount("layers", max: 64)) {
                    let i = try r.readCount("layer inputs", max: 1 << 16), o = try r.readCount("layer outputs", max: 1 << 16)
                    let w = try r.readArray(Float.self, "weights", maxCount: r.remaining), b = try r.readArray(Float.self, "biases", maxCount: r.remaining)
                    guard w.count == i * o, b.count == o, w.allSatisfy(\.isFinite), b.allSatisfy(\.isFinite) else { throw bad("a dense layer is inconsistent") }
                    var rng = SeededGenerator(seed: 0)
                    var l = DenseLayer(inputs: i, outputs: o, rng: &rng)
                    l.w = w
                    l.b = b
                    layers.append(l)
                }
                towers.append((EntityFeatures(count: count, fields: fields), tables, layers))
            }
            guard r.remaining == 0 else { throw bad("\(r.remaining) unexpected bytes at the end") }
            guard userIDs.count == towers[0].0.count, itemIDs.count == towers[1].0.count else { throw bad("id lists do not match the towers") }
            // The saved layers must be the chain the parameters describe, before a model of
            // those parameters is allocated: features -> hidden widths -> dimension.
            for (side, (features, _, layers)) in zip(["user", "item"], towers) {
                let widths = [max(1, features.inputDimension)] + p.hidden + [p.dimension]
                guard layers.count == widths.count - 1,
                      layers.indices.allSatisfy({ layers[$0].inputs == widths[$0] && layers[$0].outputs == widths[$0 + 1] }) else {
                    throw bad("the \(side) tower's layers (\(layers.map { "\($0.inputs)x\($0.outputs)" }.joined(separator: ", "))) "
                              + "are not the chain \(widths.map(String.init).joined(separator: " -> ")) its features, hidden widths and dimension describe")
                }
            }
            let model = TwoTowerModel(userFeatures: towers[0].0, itemFeatures: towers[1].0, parameters: p)
            for (tower, (_, tables, layers)) in zip([model.users, model.items], towers) {
                guard layers.first?.inputs == max(1, tower.features.inputDimension), layers.last?.outputs == p.dimension else {
                    throw bad("layer shapes do not match the features")
                }
                tower.tables = tables
                do { try tower.setLayers(layers) } catch { throw bad("\(error)") }
            }
            return (model, userIDs, itemIDs)
        } catch let e as PersistenceError {
            throw bad(e.description)
        }
    }
}

extension TwoTowerModel {
    /// Takes `other`'s weights (embedding tables and dense layers) as this model's own,
    /// after checking that both towers have the same shapes: to resume training from a
    /// checkpoint saved by `save(to:userIDs:itemIDs:)`.
    /// - Throws: `TwoTowerError.invalidData` naming the first table or layer that differs.
    public func adoptWeights(of other: TwoTowerModel) throws {
        for (name, mine, theirs) in [("user", users, other.users), ("item", items, other.items)] {
            guard mine.tables.map(\.count) == theirs.tables.map(\.count) else {
                throw TwoTowerError.invalidData("the \(name) tower's embedding tables differ in size from this model's")
            }
            guard mine.layers.map({ [$0.inputs, $0.outputs] }) == theirs.layers.map({ [$0.inputs, $0.outputs] }) else {
                throw TwoTowerError.invalidData("the \(name) tower's dense layers differ in shape from this model's")
            }
        }
        restore(other.weights())
    }
}
