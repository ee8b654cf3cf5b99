#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LinearAlgebra

/// Reads a vector file a slice of rows at a time, for data too large to hold twice
/// (`VectorFile.read` keeps the file's bytes and the decoded floats at once). Memory stays
/// at one slice, whatever the file's size: ten million 128-d vectors stream through a
/// 50 MB buffer.
///
/// Formats: `.fvecs`, `.bvecs` (bytes widened to floats) and `.npy` (float32 or uint8, C
/// order). Every record's dimension header and every value is checked as it is read.
///
///     let reader = try VectorFileReader(path: "base.fvecs")
///     while let slice = try reader.next(maxRows: 65_536) { try index.add(slice, ...) }
public final class VectorFileReader {
    public let path: String
    public let format: VectorFormat
    /// Vectors in the file.
    public let rows: Int
    public let columns: Int
    /// Rows returned so far.
    public private(set) var position = 0

    private let fd: Int32
    private let dataOffset: Int
    private let recordSize: Int
    /// Bytes before each record's values (the texmex dimension header).
    private let recordHeader: Int
    private let element: VectorElement
    private var buffer: [UInt8] = []

    /// Opens `path` and reads its header.
    /// - Throws: `DatasetError` for another format, a truncated file or a bad header.
    public init(path: String, format: VectorFormat? = nil) throws {
        guard let format = format ?? VectorFormat.infer(fromPath: path) else {
            throw DatasetError.badFormat(path: path, reason: "cannot tell the format from the name (.fvecs, .bvecs or .npy)")
        }
        self.path = path
        self.format = format
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw DatasetError.unreadable(path: path, reason: String(cString: strerror(errno))) }
        let layout: Layout
        do { layout = try Self.layout(fd: fd, path: path, format: format) } catch {
            close(fd)
            throw error
        }
        self.fd = fd
        (rows, columns, dataOffset, recordSize, recordHeader, element) =
            (layout.rows, layout.columns, layout.dataOffset, layout.recordSize, layout.recordHeader, layout.element)
    }

    private struct Layout {
        var rows = 0, columns = 0, dataOffset = 0, recordSize = 0, recordHeader = 0
        var element = VectorElement.float32
    }

    /// Reads and checks the file's header.
    private static func layout(fd: Int32, path: String, format: VectorFormat) throws -> Layout {
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw DatasetError.unreadable(path: path, reason: "not a regular file")
        }
        let size = Int(st.st_size)
        func readAt(_ count: Int, _ offset: Int) throws -> [UInt8] {
            var b = [UInt8](repeating: 0, count: count)
            let n = b.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
            guard n == count else { throw DatasetError.truncated(path: path, reason: "\(size) bytes; the header needs \(offset + count)") }
            return b
        }
        var l = Layout()
        switch format {
        case .fvecs, .bvecs:
            l.element = format == .fvecs ? .float32 : .uint8
            let d = Int(Int32(littleEndian: try readAt(4, 0).withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }))
            guard d > 0, d <= 1 << 24 else { throw DatasetError.badFormat(path: path, reason: "record 0 declares dimension \(d)") }
            l.columns = d
            l.recordHeader = 4
            l.recordSize = 4 + d * l.element.byteWidth
            guard size % l.recordSize == 0 else {
                throw DatasetError.truncated(path: path, reason: "\(size) bytes is not a whole number of \(l.recordSize)-byte records (dimension \(d)); the last record is cut")
            }
            l.rows = size / l.recordSize
        case .npy:
            let pre = try readAt(min(size, 12), 0)
            guard pre.count >= 10, Array(pre[0..<6]) == NPYCodec.magic else {
                throw DatasetError.badFormat(path: path, reason: "missing the \\x93NUMPY magic")
            }
            let headerLength: Int, start: Int
            switch pre[6] {
            case 1: headerLength = Int(pre[8]) | Int(pre[9]) << 8; start = 10
            case 2, 3:
                guard pre.count >= 12 else { throw DatasetError.truncated(path: path, reason: "the .npy preamble is cut") }
                headerLength = Int(pre[8]) | Int(pre[9]) << 8 | Int(pre[10]) << 16 | Int(pre[11]) << 24; start = 12
            default: throw DatasetError.badFormat(path: path, reason: "unsupported .npy version \(pre[6])")
            }
            guard headerLength <= 1 << 20, start + headerLength <= size else {
                throw DatasetError.truncated(path: path, reason: "the header announces \(headerLength) bytes, the file holds \(size)")
            }
            let header = try NPYCodec.parseHeader(String(decoding: try readAt(headerLength, start), as: UTF8.self), path: path)
            guard !header.fortranOrder else {
                throw DatasetError.badFormat(path: path, reason: "Fortran-order arrays are not supported; save with C order (np.ascontiguousarray)")
            }
            switch header.descr {
            case "<f4", "=f4": l.element = .float32
            case "|u1", "<u1", "=u1", "u1": l.element = .uint8
            default: throw DatasetError.badFormat(path: path, reason: "dtype '\(header.descr)' cannot be streamed (float32 or uint8)")
            }
            guard header.shape.count == 2, header.shape[0] >= 0, header.shape[1] > 0, header.shape[1] <= 1 << 24 else {
                throw DatasetError.badFormat(path: path, reason: "shape \(header.shape) is not (rows, columns)")
            }
            l.rows = header.shape[0]
            l.columns = header.shape[1]
            l.recordSize = l.columns * l.element.byteWidth
            l.dataOffset = start + headerLength
            let (need, o) = l.rows.multipliedReportingOverflow(by: l.recordSize)
            guard !o, l.dataOffset + need == size else {
                throw DatasetError.truncated(path: path, reason: "shape \(header.shape) needs \(need) bytes of data after the header, the file holds \(size - l.dataOffset)")
            }
        default:
            throw DatasetError.badFormat(path: path, reason: "\(format.rawValue) files cannot be streamed (.fvecs, .bvecs or .npy)")
        }
        return l
    }

    deinit { close(fd) }

    /// The next slice of at most `maxRows` vectors, or nil at the end of the file.
    /// - Throws: `DatasetError` for a record whose dimension differs, a value that is not
    ///   finite, or a read error.
    public func next(maxRows: Int) throws -> Matrix? {
        let n = min(max(1, maxRows), rows - position)
        guard n > 0 else { return nil }
        let bytes = n * recordSize
        if buffer.count < bytes { buffer = [UInt8](repeating: 0, count: bytes) }
        let offset = dataOffset + position * recordSize
        var done = 0
        while done < bytes {
            let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, bytes - done, off_t(offset + done)) }
            if got < 0, errno == EINTR { continue }
            guard got > 0 else {
                throw DatasetError.unreadable(path: path, reason: got < 0 ? String(cString: strerror(errno)) : "the file shrank while it was read")
            }
            done += got
        }
        let d = columns, first = position
        var values = [Float](repeating: 0, count: n * d)
        try buffer.withUnsafeBytes { raw in
            try values.withUnsafeMutableBufferPointer { out in
                for i in 0..<n {
                    let record = raw.baseAddress! + i * recordSize
                    if recordHeader == 4 {
                        let dim = Int(Int32(littleEndian: record.loadUnaligned(as: Int32.self)))
                        guard dim == d else { throw DatasetError.inconsistentDimension(path: path, record: first + i, expected: d, got: dim) }
                    }
                    let src = record + recordHeader
                    let dst = out.baseAddress! + i * d
                    if element == .float32 {
                        UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: d * 4)
                        for j in 0..<d where !dst[j].isFinite { throw DatasetError.nonFinite(path: path, row: first + i, column: j) }
                    } else {
                        let b = src.assumingMemoryBound(to: UInt8.self)
                        for j in 0..<d { dst[j] = Float(b[j]) }
                    }
                }
            }
        }
        position += n
        return try Matrix(rows: n, columns: d, storage: values)
    }
}
