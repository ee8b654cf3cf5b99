import Datasets
import Foundation
import LinearAlgebra

/// How one feature of a user or item becomes embedding lookups.
public enum FeatureKind: Sendable, Equatable {
    /// The entity's own id (its row); dropped out in training so the tower also works without it.
    case id
    /// A categorical column: one lookup.
    case categorical(column: String)
    /// A multi-valued categorical column: the mean of its values' embeddings.
    case multiCategorical(column: String)
    /// A numeric column cut into quantile buckets: one lookup.
    case numericBuckets(column: String, buckets: Int)
    /// A timestamp column turned into an age (now - t) and bucketized on a log scale.
    case ageBuckets(column: String, now: Int64, buckets: Int)
    /// Free text: lower-cased word tokens hashed into `buckets`, mean-pooled.
    case hashedText(column: String, buckets: Int)
}

/// One feature's lookups for every entity: entity e uses codes[offsets[e] ..< offsets[e+1]]
/// (code 0 is "unknown", used for missing values and dropped ids).
public struct FeatureField: Sendable {
    public var name: String
    public var kind: FeatureKind
    public var vocabularySize: Int
    public var dimension: Int
    public var offsets: [Int32]
    public var codes: [Int32]

    /// The fourth-root rule: about 6 * vocab^(1/4) dimensions, clamped to 4...64.
    public static func defaultDimension(vocabulary: Int) -> Int {
        min(64, max(4, Int((6 * pow(Double(vocabulary), 0.25)).rounded())))
    }
}

/// All features of one side (users or items), ready for the tower.
public struct EntityFeatures: Sendable {
    public var count: Int
    public var fields: [FeatureField]

    /// Builds fields from an attribute table whose rows are the entities (row i = entity i).
    /// - Throws: `TwoTowerError.missingColumn` when a named column is absent or of another kind.
    public static func build(count: Int, table: AttributeTable?, kinds: [(String, FeatureKind)]) throws -> EntityFeatures {
        var fields = [FeatureField]()
        for (name, kind) in kinds {
            var offsets: [Int32] = [0], codes = [Int32]()
            var vocab = 1
            func one(_ c: Int32) { codes.append(c); offsets.append(Int32(codes.count)) }
            switch kind {
            case .id:
                vocab = count + 1
                for e in 0..<count { one(Int32(e + 1)) }
            case .categorical(let column):
                guard let (v, c) = table?.categoricalCodes(column) else { throw TwoTowerError.missingColumn(column) }
                vocab = v.count + 1
                for e in 0..<count { one(c[e] + 1) }
            case .multiCategorical(let column):
                guard case .multiCategorical(let v, let off, let c)? = table?.columns[column] else { throw TwoTowerError.missingColumn(column) }
                vocab = v.count + 1
                for e in 0..<count {
                    for j in Int(off[e])..<Int(off[e + 1]) { codes.append(c[j] + 1) }
                    offsets.append(Int32(codes.count))
                }
            case .numericBuckets(let column, let buckets):
                guard case .numeric(let x)? = table?.columns[column] else { throw TwoTowerError.missingColumn(column) }
                let present = x.filter { !$0.isNaN }.sorted()
                let edges = (1..<buckets).map { present.isEmpty ? 0 : present[min(present.count - 1, $0 * present.count / buckets)] }
                vocab = buckets + 1
                for e in 0..<count {
                    if x[e].isNaN { one(0) } else { one(Int32(edges.filter { x[e] >= $0 }.count + 1)) }
                }
            case .ageBuckets(let column, let now, let buckets):
                guard case .timestamp(let t)? = table?.columns[column] else { throw TwoTowerError.missingColumn(column) }
                vocab = buckets + 1
                for e in 0..<count {
                    if t[e] == Timestamp.missing { one(0); continue }
                    let days = max(0, Double(now - t[e]) / 86_400)
                    one(Int32(min(buckets - 1, Int(log2(1 + days))) + 1))
                }
            case .hashedText(let column, let buckets):
                guard case .text(let texts)? = table?.columns[column] else { throw TwoTowerError.missingColumn(column) }
                vocab = buckets + 1
                for e in 0..<count {
                    let words = texts[e].lowercased().split { !$0.isLetter && !$0.isNumber }
                    for w in words {
                        var h: UInt64 = 1_469_598_103_934_665_603
                        for b in w.utf8 { h = (h ^ UInt64(b)) &* 1_099_511_628_211 }
                        codes.append(Int32(h % UInt64(buckets)) + 1)
                    }
                    offsets.append(Int32(codes.count))
                }
            }
            fields.append(FeatureField(name: name, kind: kind, vocabularySize: vocab,
                                       dimension: FeatureField.defaultDimension(vocabulary: vocab), offsets: offsets, codes: codes))
        }
        return EntityFeatures(count: count, fields: fields)
    }

    /// The tower's input width: the sum of field dimensions.
    public var inputDimension: Int { fields.reduce(0) { $0 + $1.dimension } }
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
