import Datasets
import Foundation
import LinearAlgebra

/// How one feature of a user or item becomes tower inputs: embedding lookups (pooled when
/// there are several), or for `numericStandardized` one input holding the value itself.
public enum FeatureKind: Sendable, Equatable {
    /// The entity's own id (its row); dropped out in training so the tower also works without it.
    case id
    /// A categorical column: one lookup in a vocabulary of the values seen.
    case categorical(column: String)
    /// A categorical column hashed into `buckets` rows (unbounded vocabularies; collisions share a row).
    case hashedCategorical(column: String, buckets: Int)
    /// A multi-valued categorical column: its values' embeddings pooled (mean or sum).
    case multiCategorical(column: String, pooling: Pooling = .mean)
    /// A numeric column cut into quantile buckets: one lookup.
    case numericBuckets(column: String, buckets: Int)
    /// A numeric column standardized to zero mean and unit variance, fed to the tower as one
    /// input (missing: 0, the mean).
    case numericStandardized(column: String)
    /// A timestamp column turned into an age (now - t) and bucketized on a log scale.
    case ageBuckets(column: String, now: Int64, buckets: Int)
    /// Free text: lower-cased word tokens hashed into `buckets`, mean-pooled.
    case hashedText(column: String, buckets: Int)

    /// How several lookups of one entity combine (mean for all but a summed multi-categorical).
    public var pooling: Pooling {
        if case .multiCategorical(_, let p) = self { return p }
        return .mean
    }

    /// True for the kinds that feed values rather than embedding lookups.
    public var isDense: Bool {
        if case .numericStandardized = self { return true }
        return false
    }
}

/// One feature's inputs for every entity. Lookup features: entity e uses
/// codes[offsets[e] ..< offsets[e+1]] (code 0 is "unknown", used for missing values and
/// dropped ids). Dense features: entity e's input is values[e] (no codes, no table).
public struct FeatureField: Sendable {
    public var name: String
    public var kind: FeatureKind
    public var vocabularySize: Int
    public var dimension: Int
    public var offsets: [Int32]
    public var codes: [Int32]
    /// Dense features only: one value per entity.
    public var values: [Float] = []
    /// What turns a new entity's attribute into codes the same way as the old ones':
    /// categorical values in code order (code c is vocabulary[c - 1]), bucket edges, and the
    /// standardization (value - mean) * scale. Empty for fields that need none.
    public var vocabulary: [String] = []
    public var edges: [Float] = []
    public var mean: Double = 0
    public var scale: Double = 1

    /// The fourth-root rule: about 6 * vocab^(1/4) dimensions, clamped to 4...64.
    public static func defaultDimension(vocabulary: Int) -> Int {
        min(64, max(4, Int((6 * pow(Double(vocabulary), 0.25)).rounded())))
    }

    /// FNV-1a, the hash of hashed categoricals and text tokens (stable across runs and machines).
    static func hash<S: Sequence>(_ bytes: S) -> UInt64 where S.Element == UInt8 {
        var h: UInt64 = 1_469_598_103_934_665_603
        for b in bytes { h = (h ^ UInt64(b)) &* 1_099_511_628_211 }
        return h
    }
}

/// All features of one side (users or items), ready for the tower.
public struct EntityFeatures: Sendable {
    public var count: Int
    public var fields: [FeatureField]

    /// Builds fields from an attribute table whose rows are the entities (row i = entity i),
    /// with default embedding widths.
    /// - Throws: `TwoTowerError.missingColumn` when a named column is absent or of another kind.
    public static func build(count: Int, table: AttributeTable?, kinds: [(String, FeatureKind)]) throws -> EntityFeatures {
        try build(count: count, table: table, features: kinds.map { FeatureSpec($0.0, $0.1) })
    }

    /// Builds fields from an attribute table whose rows are the entities (row i = entity i).
    /// - Throws: `TwoTowerError.missingColumn` when a named column is absent or of another
    ///   kind, `TwoTowerError.invalidParameter` for a bucket count or width below 1.
    public static func build(count: Int, table: AttributeTable?, features: [FeatureSpec]) throws -> EntityFeatures {
        if let table, table.count < count {
            throw TwoTowerError.invalidData("the attribute table has \(table.count) rows for \(count) entities")
        }
        var fields = [FeatureField]()
        for spec in features {
            let kind = spec.kind
            var offsets: [Int32] = [0], codes = [Int32](), values = [Float]()
            var vocab = 1
            var vocabulary = [String](), edges = [Float](), mean = 0.0, scale = 1.0
            func one(_ c: Int32) { codes.append(c); offsets.append(Int32(codes.count)) }
            func buckets(_ n: Int) throws -> Int {
                guard n >= 1 else { throw TwoTowerError.invalidParameter("feature \(spec.name): \(n) buckets") }
                return n
            }
            switch kind {
            case .id:
                vocab = count + 1
                for e in 0..<count { one(Int32(e + 1)) }
            case .categorical(let column):
                guard let (v, c) = table?.categoricalCodes(column) else { throw TwoTowerError.missingColumn(column) }
                vocab = v.count + 1
                vocabulary = v.keys
                for e in 0..<count { one(c[e] + 1) }
            case .hashedCategorical(let column, let n):
                guard let (v, c) = table?.categoricalCodes(column) else { throw TwoTowerError.missingColumn(column) }
                vocab = try buckets(n) + 1
                let hashed = v.keys.map { Int32(FeatureField.hash($0.utf8) % UInt64(n)) + 1 }
                for e in 0..<count { one(c[e] >= 0 ? hashed[Int(c[e])] : 0) }
            case .multiCategorical(let column, _):
                guard case .multiCategorical(let v, let off, let c)? = table?.columns[column] else { throw TwoTowerError.missingColumn(column) }
                vocab = v.count + 1
                vocabulary = v.keys
                for e in 0..<count {
                    for j in Int(off[e])..<Int(off[e + 1]) { codes.append(c[j] + 1) }
                    offsets.append(Int32(codes.count))
                }
            case .numericBuckets(let column, let n):
                guard case .numeric(let x)? = table?.columns[column] else { throw TwoTowerError.missingColumn(column) }
                let n = try buckets(n)
                let present = x.prefix(count).filter { !$0.isNaN }.sorted()
                edges = (1..<n).map { present.isEmpty ? 0 : present[min(present.count - 1, $0 * present.count / n)] }
                vocab = n + 1
                for e in 0..<count {
                    if x[e].isNaN { one(0) } else { one(Int32(edges.filter { x[e] >= $0 }.count + 1)) }
                }
            case .numericStandardized(let column):
                guard case .numeric(let x)? = table?.columns[column] else { throw TwoTowerError.missingColumn(column) }
                let present = x.prefix(count).filter { !$0.isNaN }.map(Double.init)
                mean = present.isEmpty ? 0 : present.reduce(0, +) / Double(present.count)
                let variance = present.isEmpty ? 0 : present.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(present.count)
                scale = variance > 0 ? 1 / variance.squareRoot() : 1
                vocab = 0
                values = (0..<count).map { x[$0].isNaN ? 0 : Float((Double(x[$0]) - mean) * scale) }
                offsets = [Int32](repeating: 0, count: count + 1)
            case .ageBuckets(let column, let now, let n):
                guard case .timestamp(let t)? = table?.columns[column] else { throw TwoTowerError.missingColumn(column) }
                let n = try buckets(n)
                vocab = n + 1
                for e in 0..<count {
                    if t[e] == Timestamp.missing { one(0); continue }
                    let days = max(0, Double(now - t[e]) / 86_400)
                    one(Int32(min(n - 1, Int(log2(1 + days))) + 1))
                }
            case .hashedText(let column, let n):
                guard case .text(let texts)? = table?.columns[column] else { throw TwoTowerError.missingColumn(column) }
                let n = try buckets(n)
                vocab = n + 1
                for e in 0..<count {
                    let words = texts[e].lowercased().split { !$0.isLetter && !$0.isNumber }
                    for w in words { codes.append(Int32(FeatureField.hash(w.utf8) % UInt64(n)) + 1) }
                    offsets.append(Int32(codes.count))
                }
            }
            let dimension = kind.isDense ? 1 : (spec.dimension ?? FeatureField.defaultDimension(vocabulary: vocab))
            guard dimension >= 1 else { throw TwoTowerError.invalidParameter("feature \(spec.name): width \(dimension)") }
            fields.append(FeatureField(name: spec.name, kind: kind, vocabularySize: vocab, dimension: dimension,
                                       offsets: offsets, codes: codes, values: values,
                                       vocabulary: vocabulary, edges: edges, mean: mean, scale: scale))
        }
        return EntityFeatures(count: count, fields: fields)
    }

    /// The tower's input width: the sum of field dimensions.
    public var inputDimension: Int { fields.reduce(0) { $0 + $1.dimension } }

    /// The attribute columns these features read, typed for `AttributeTable.readCSV`: what
    /// a file describing new entities must hold (see `appending(table:from:)`).
    public func attributeColumns(separator: Character = "|") -> [ColumnSpec] {
        var specs = [ColumnSpec]()
        func add(_ name: String, _ kind: ColumnKind) {
            if !specs.contains(where: { $0.name == name }) { specs.append(ColumnSpec(name, kind)) }
        }
        for f in fields {
            switch f.kind {
            case .id: break
            case .categorical(let c), .hashedCategorical(let c, _): add(c, .categorical)
            case .multiCategorical(let c, _): add(c, .multiCategorical(separator: separator))
            case .numericBuckets(let c, _), .numericStandardized(let c): add(c, .numeric)
            case .ageBuckets(let c, _, _): add(c, .timestamp)
            case .hashedText(let c, _): add(c, .text)
            }
        }
        return specs
    }

    /// New entities described by rows `first ..< table.count` of `table` (a table aligned
    /// with the grown vocabulary: earlier rows are ignored), coded exactly as the old ones
    /// were: the stored vocabularies, bucket edges and standardization, hashes, ages at the
    /// same time. Ids get new codes; categorical values never seen before get new codes
    /// (the vocabulary grows, and `Tower.grown(to:)` gives them fresh rows); a column the
    /// table lacks, or a field saved without its vocabulary, gives the unknown code.
    /// - Returns: the features and the names of fields that could not be coded.
    public func appending(table: AttributeTable, from first: Int) -> (features: EntityFeatures, uncoded: [String]) {
        precondition(first == count, "the new rows must follow the \(count) known entities")
        var out = self
        let uncoded = out.append(table: table, rows: first..<max(first, table.count))
        return (out, uncoded)
    }

    /// Appends every row of `table` (which holds only the new entities) as new entities,
    /// coded as `appending(table:from:)` codes them; in place, so that adding one entity
    /// to many costs one row, not a copy of all.
    /// - Returns: the names of fields that could not be coded.
    @discardableResult
    public mutating func append(rowsOf table: AttributeTable) -> [String] {
        append(table: table, rows: 0..<table.count)
    }

    mutating func append(table: AttributeTable, rows: Range<Int>) -> [String] {
        let first = rows.lowerBound, n = rows.count, count = self.count
        var uncoded = [String]()
        for i in fields.indices {
            var f = fields[i]
            func one(_ c: Int32) { f.codes.append(c); f.offsets.append(Int32(f.codes.count)) }
            var index = [String: Int32]()
            if !f.vocabulary.isEmpty { for (c, v) in f.vocabulary.enumerated() { index[v] = Int32(c + 1) } }
            func code(_ value: String) -> Int32 {
                if let c = index[value] { return c }
                f.vocabulary.append(value)
                f.vocabularySize += 1
                index[value] = Int32(f.vocabularySize - 1)
                return Int32(f.vocabularySize - 1)
            }
            let storedVocabulary = !f.vocabulary.isEmpty || f.vocabularySize <= 1
            func unknown() {
                uncoded.append(f.name)
                for _ in 0..<n {
                    if f.kind.isDense { f.values.append(0) } else { f.codes.append(0) }
                    f.offsets.append(Int32(f.codes.count))
                }
            }
            switch f.kind {
            case .id:
                for j in 0..<n { one(Int32(count + j + 1)) }
                f.vocabularySize += n
            case .categorical(let column):
                guard let (v, c) = table.categoricalCodes(column), storedVocabulary else { unknown(); break }
                for e in first..<(first + n) { one(c[e] >= 0 ? code(v[c[e]]) : 0) }
            case .multiCategorical(let column, _):
                guard case .multiCategorical(let v, let off, let c)? = table.columns[column], storedVocabulary else { unknown(); break }
                for e in first..<(first + n) {
                    for j in Int(off[e])..<Int(off[e + 1]) { f.codes.append(code(v[c[j]])) }
                    f.offsets.append(Int32(f.codes.count))
                }
            case .hashedCategorical(let column, let buckets):
                guard let (v, c) = table.categoricalCodes(column) else { unknown(); break }
                for e in first..<(first + n) { one(c[e] >= 0 ? Int32(FeatureField.hash(v[c[e]].utf8) % UInt64(buckets)) + 1 : 0) }
            case .numericBuckets(let column, _):
                guard case .numeric(let x)? = table.columns[column], !f.edges.isEmpty || f.vocabularySize <= 2 else { unknown(); break }
                for e in first..<(first + n) { one(x[e].isNaN ? 0 : Int32(f.edges.filter { x[e] >= $0 }.count + 1)) }
            case .numericStandardized(let column):
                guard case .numeric(let x)? = table.columns[column] else { unknown(); break }
                for e in first..<(first + n) {
                    f.values.append(x[e].isNaN ? 0 : Float((Double(x[e]) - f.mean) * f.scale))
                    f.offsets.append(Int32(f.codes.count))
                }
            case .ageBuckets(let column, let now, let buckets):
                guard case .timestamp(let t)? = table.columns[column] else { unknown(); break }
                for e in first..<(first + n) {
                    if t[e] == Timestamp.missing { one(0); continue }
                    one(Int32(min(buckets - 1, Int(log2(1 + max(0, Double(now - t[e]) / 86_400)))) + 1))
                }
            case .hashedText(let column, let buckets):
                guard case .text(let texts)? = table.columns[column] else { unknown(); break }
                for e in first..<(first + n) {
                    for w in texts[e].lowercased().split(whereSeparator: { !$0.isLetter && !$0.isNumber }) {
                        f.codes.append(Int32(FeatureField.hash(w.utf8) % UInt64(buckets)) + 1)
                    }
                    f.offsets.append(Int32(f.codes.count))
                }
            }
            fields[i] = f
        }
        self.count += n
        return uncoded
    }
}

/// Errors from building or training towers.
public enum TwoTowerError: Error, CustomStringConvertible, Equatable {
    case missingColumn(String)
    case invalidParameter(String)
    case invalidData(String)

    public var description: String {
        switch self {
        case .missingColumn(let c): return "no usable column '\(c)' in the attribute table"
        case .invalidParameter(let s): return "invalid parameter: \(s)"
        case .invalidData(let s): return "invalid data: \(s)"
        }
    }
}
