import Foundation
import LinearAlgebra
import Persistence

/// Float vectors kept outside an index, read to re-score its final candidates: what lets
/// an fp16 graph give float recall without holding a float copy in memory. Row `r` is the
/// vector of the item labelled `r`; the rows usually live in a memory-mapped file (the
/// input `.fvecs`, or an index bundle's `vectors.fnl`), so only the rows a query's beam
/// touches are read, and the kernel keeps them or drops them as memory allows.
///
/// Attach one with `HNSWIndex.rescore(with:)`.
public struct RescoreSource: @unchecked Sendable {
    let first: UnsafePointer<Float>
    /// Floats from one row's start to the next (`dimension`, or `dimension + 1` for .fvecs).
    let stride: Int
    public let rows: Int
    public let dimension: Int
    /// Keeps the memory alive (a `MappedFile`).
    let owner: AnyObject?

    /// Rows at `first`, `stride` floats apart, kept alive by `owner`.
    public init(first: UnsafePointer<Float>, rows: Int, dimension: Int, stride: Int? = nil, owner: AnyObject?) {
        self.first = first
        self.rows = rows
        self.dimension = dimension
        self.stride = stride ?? dimension
        self.owner = owner
    }

    /// The vectors of an `.fvecs` file, mapped read-only (every record's dimension checked).
    /// - Throws: `HNSWError.invalidParameter` naming the file for another size or layout.
    public init(fvecs path: String) throws {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw HNSWError.invalidParameter("\(path): \(error)") }
        let bytes = file.bytes
        guard bytes.count >= 8 else { throw HNSWError.invalidParameter("\(path): \(bytes.count) bytes is not an .fvecs file") }
        let d = Int(Int32(littleEndian: bytes.loadUnaligned(as: Int32.self)))
        guard d > 0, d <= 1 << 20, bytes.count % (4 * (d + 1)) == 0 else {
            throw HNSWError.invalidParameter("\(path): not whole .fvecs records of dimension \(d)")
        }
        let n = bytes.count / (4 * (d + 1))
        for r in 0..<n where Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: r * 4 * (d + 1), as: Int32.self)) != d {
            throw HNSWError.invalidParameter("\(path): record \(r) is not of dimension \(d)")
        }
        file.dropResidentPages()
        self.init(first: (bytes.baseAddress! + 4).assumingMemoryBound(to: Float.self), rows: n, dimension: d, stride: d + 1, owner: file)
    }

    @inline(__always)
    func row(_ r: Int) -> UnsafePointer<Float> { first + r * stride }
}

extension HNSWIndex {
    /// Re-scores every search's final candidates with the float vectors of `source`
    /// (nil: stops). For fp16 storage, whose distances are within about 1e-3 of the float
    /// ones: that is enough to swap near neighbours, and on dense data to cap recall below
    /// the float index's. Searches then cost the beam's rows read from `source`.
    /// Items inserted later with labels past the source's rows are scored by their half
    /// vectors.
    /// - Throws: `HNSWError.invalidParameter` unless the storage is fp16, the dimensions
    ///   agree and every live item's label names a row of `source`.
    public func rescore(with source: RescoreSource?) throws {
        guard let source else { return writeLocked { rescoreSource = nil } }
        guard parameters.quantization == .fp16 else {
            throw HNSWError.invalidParameter("re-scoring from outside vectors is for fp16 storage (int8 keeps its floats, float needs none)")
        }
        guard source.dimension == dimension else { throw HNSWError.dimensionMismatch(expected: dimension, got: source.dimension) }
        try writeLocked {
            for node in 0..<slotCount where !isDeleted(node) && labels[node] >= UInt64(source.rows) {
                throw HNSWError.invalidParameter("item \(labels[node]) has no row among the \(source.rows) vectors given for re-scoring")
            }
            rescoreSource = source
        }
    }

    /// The float distance from a prepared query to row `label` of the re-scoring source.
    @inline(__always)
    func externalDistance(_ q: PreparedQuery, _ source: RescoreSource, label: UInt64) -> Float {
        let x = source.row(Int(label))
        let d = dimension
        switch parameters.metric {
        case .cosine:
            let n2 = Distance.squaredNorm(x, d)
            return n2 > 0 ? 1 - Distance.dot(q.floats!, x, d) / n2.squareRoot() : 1
        default:
            return parameters.metric.distance(q.floats!, x, d)
        }
    }
}
