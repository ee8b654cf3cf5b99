import LinearAlgebra
import Persistence

/// The vector file formats Funnel reads and writes.
public enum VectorFormat: String, Sendable, CaseIterable {
    /// texmex: per record, an int32 dimension then that many float32.
    case fvecs
    /// texmex: per record, an int32 dimension then that many int32.
    case ivecs
    /// texmex: per record, an int32 dimension then that many uint8.
    case bvecs
    /// IDX (MNIST): big-endian, magic 0x0000TTNN, NN dimension sizes, then the data.
    case idx
    /// NumPy .npy, version 1-3, little-endian, C order.
    case npy

    /// The format implied by a file name: its extension, or `-idxN-ubyte` style names.
    public static func infer(fromPath path: String) -> VectorFormat? {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        let lower = name.lowercased()
        if lower.hasSuffix(".fvecs") { return .fvecs }
        if lower.hasSuffix(".ivecs") { return .ivecs }
        if lower.hasSuffix(".bvecs") { return .bvecs }
        if lower.hasSuffix(".npy") { return .npy }
        if lower.contains("idx1") || lower.contains("idx2") || lower.contains("idx3") || lower.hasSuffix(".idx") {
            return .idx
        }
        return nil
    }
}

/// Readers and writers for vector files. Every reader checks each size and count
/// against the file's length before trusting it, and float data for NaN/infinity.
public enum VectorFile {
    /// Reads the vectors in `path`, in the format named or inferred from the name.
    /// - Parameter limit: read at most this many rows (the first ones).
    public static func read(_ path: String, format: VectorFormat? = nil, limit: Int? = nil) throws -> VectorSet {
        guard let fmt = format ?? VectorFormat.infer(fromPath: path) else {
            throw DatasetError.badFormat(
                path: path, reason: "cannot tell the format from the name; expected .fvecs, .ivecs, .bvecs, .npy or an IDX file")
        }
        let bytes = try DatasetError.readFile(path)
        return try decode(bytes, format: fmt, path: path, limit: limit)
    }

    /// Reads float vectors as a matrix (integer formats are converted).
    public static func readMatrix(_ path: String, format: VectorFormat? = nil, limit: Int? = nil) throws -> Matrix {
        try read(path, format: format, limit: limit).floatMatrix()
    }

    /// Decodes the bytes of a vector file.
    public static func decode(_ bytes: [UInt8], format: VectorFormat, path: String, limit: Int? = nil) throws -> VectorSet {
        guard !bytes.isEmpty else { throw DatasetError.empty(path: path) }
        let set: VectorSet
        switch format {
        case .fvecs: set = try decodeTexmex(bytes, element: .float32, path: path, limit: limit)
        case .ivecs: set = try decodeTexmex(bytes, element: .int32, path: path, limit: limit)
        case .bvecs: set = try decodeTexmex(bytes, element: .uint8, path: path, limit: limit)
        case .idx: set = try IDXCodec.decode(bytes, path: path, limit: limit)
        case .npy: set = try NPYCodec.decode(bytes, path: path, limit: limit)
        }
        if set.rows == 0 { throw DatasetError.empty(path: path) }
        if case .float32(let values) = set.storage {
            try checkFinite(values, columns: set.columns, path: path)
        }
        return set
    }

    static func checkFinite(_ values: [Float], columns: Int, path: String) throws {
        try values.withUnsafeBufferPointer { p in
            for i in 0..<p.count where !p[i].isFinite {
                throw DatasetError.nonFinite(path: path, row: i / max(1, columns), column: i % max(1, columns))
            }
        }
    }

    // MARK: - texmex

    static func decodeTexmex(_ bytes: [UInt8], element: VectorElement, path: String, limit: Int?) throws -> VectorSet {
        try bytes.withUnsafeBytes { raw in try decodeTexmex(bytes, raw: raw, element: element, path: path, limit: limit) }
    }

    private static func decodeTexmex(_ bytes: [UInt8], raw: UnsafeRawBufferPointer, element: VectorElement, path: String, limit: Int?) throws -> VectorSet {
        var r = RawReader(raw, path: path, owner: nil)
        let dim = try readDim(&r, record: 0)
        let width = element.byteWidth
        let recordSize = 4 + dim * width
        guard bytes.count % recordSize == 0 else {
            throw DatasetError.truncated(
                path: path,
                reason: "\(bytes.count) bytes is not a whole number of \(recordSize)-byte records (dimension \(dim)); the last record is cut")
        }
        var n = bytes.count / recordSize
        if let limit { n = min(n, max(0, limit)) }
        // Check every record's dimension before copying.
        for i in 0..<n {
            let off = i * recordSize
            let d = Int(Int32(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: off, as: Int32.self) }))
            guard d == dim else {
                throw DatasetError.inconsistentDimension(path: path, record: i, expected: dim, got: d)
            }
        }
        func gather<T: BitwiseCopyable>(_: T.Type) -> [T] {
            [T](unsafeUninitializedCapacity: n * dim) { buf, count in
                bytes.withUnsafeBytes { src in
                    let dst = UnsafeMutableRawBufferPointer(buf)
                    for i in 0..<n {
                        dst.baseAddress!.advanced(by: i * dim * width)
                            .copyMemory(from: src.baseAddress!.advanced(by: i * recordSize + 4), byteCount: dim * width)
                    }
                }
                count = n * dim
            }
        }
        switch element {
        case .float32: return VectorSet(rows: n, columns: dim, storage: .float32(gather(Float.self)))
        case .int32: return VectorSet(rows: n, columns: dim, storage: .int32(gather(Int32.self)))
        case .uint8: return VectorSet(rows: n, columns: dim, storage: .uint8(gather(UInt8.self)))
        default: fatalError("texmex formats hold float32, int32 or uint8 only")
        }
    }

    private static func readDim(_ r: inout RawReader, record: Int) throws -> Int {
        guard r.remaining >= 4 else {
            throw DatasetError.truncated(path: r.path, reason: "record \(record) has no 4-byte dimension header")
        }
        let d = Int(Int32(bitPattern: try r.read(UInt32.self, "dimension")))
        guard d > 0, d <= 1 << 24 else {
            throw DatasetError.badFormat(path: r.path, reason: "record \(record) declares dimension \(d)")
        }
        return d
    }

    // MARK: - Writers (atomic)

    /// Writes float vectors as .fvecs.
    public static func writeFvecs(_ m: Matrix, to path: String) throws {
        try writeTexmex(rows: m.rows, columns: m.columns, path: path) { w, r in
            try m.storage.withUnsafeBytes { try w.write(UnsafeRawBufferPointer(rebasing: $0[(r * m.columns * 4)..<((r + 1) * m.columns * 4)])) }
        }
    }

    /// Writes int32 vectors (row-major, `columns` per row) as .ivecs.
    public static func writeIvecs(_ values: [Int32], columns: Int, to path: String) throws {
        precondition(columns > 0 && values.count % columns == 0, "values must fill whole rows")
        try writeTexmex(rows: values.count / columns, columns: columns, path: path) { w, r in
            try values.withUnsafeBytes { try w.write(UnsafeRawBufferPointer(rebasing: $0[(r * columns * 4)..<((r + 1) * columns * 4)])) }
        }
    }

    /// Writes uint8 vectors as .bvecs.
    public static func writeBvecs(_ values: [UInt8], columns: Int, to path: String) throws {
        precondition(columns > 0 && values.count % columns == 0, "values must fill whole rows")
        try writeTexmex(rows: values.count / columns, columns: columns, path: path) { w, r in
            try values.withUnsafeBytes { try w.write(UnsafeRawBufferPointer(rebasing: $0[(r * columns)..<((r + 1) * columns)])) }
        }
    }

    private static func writeTexmex(rows: Int, columns: Int, path: String,
                                    _ body: (inout FileWriter, Int) throws -> Void) throws {
        try AtomicFile.write(to: path) { w in
            for r in 0..<rows {
                try w.write(value: Int32(columns).littleEndian)
                try body(&w, r)
            }
        }
    }

    /// Writes a set as .npy (version 1.0, C order).
    public static func writeNpy(_ set: VectorSet, to path: String) throws {
        try AtomicFile.write(to: path) { w in try w.write(NPYCodec.encode(set)) }
    }

    /// Writes a set as IDX (big-endian); 1-column sets are written with one dimension.
    public static func writeIDX(_ set: VectorSet, to path: String) throws {
        try AtomicFile.write(to: path) { w in try w.write(IDXCodec.encode(set)) }
    }
}
