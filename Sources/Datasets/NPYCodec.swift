import Persistence
import Foundation

/// NumPy `.npy` files: the magic `\x93NUMPY`, a version, a header length, a Python
/// dict literal with `descr`, `fortran_order` and `shape`, then the raw data.
enum NPYCodec {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]

    struct Header {
        var descr: String
        var fortranOrder: Bool
        var shape: [Int]
    }

    static func decode(_ bytes: [UInt8], path: String, limit: Int?) throws -> VectorSet {
        try bytes.withUnsafeBytes { raw in try decode(bytes, raw: raw, path: path, limit: limit) }
    }

    private static func decode(_ bytes: [UInt8], raw: UnsafeRawBufferPointer, path: String, limit: Int?) throws -> VectorSet {
        guard bytes.count >= 10 else {
            throw DatasetError.truncated(path: path, reason: "\(bytes.count) bytes, an .npy preamble needs 10")
        }
        guard Array(bytes[0..<6]) == magic else {
            throw DatasetError.badFormat(path: path, reason: "missing the \\x93NUMPY magic")
        }
        var r = RawReader(raw, path: path, owner: nil)
        try r.skip(6, "magic")
        let major = try r.read(UInt8.self, "major version")
        _ = try r.read(UInt8.self, "minor version")
        let headerLen: Int
        switch major {
        case 1: headerLen = Int(try r.read(UInt16.self, "header length"))
        case 2, 3: headerLen = Int(try r.read(UInt32.self, "header length"))
        default: throw DatasetError.badFormat(path: path, reason: "unsupported .npy version \(major)")
        }
        guard r.remaining >= headerLen else {
            throw DatasetError.truncated(path: path, reason: "the header announces \(headerLen) bytes, \(r.remaining) remain")
        }
        let headerBytes = Array(try r.view(headerLen, "header"))
        guard let text = String(bytes: headerBytes, encoding: .utf8) ?? String(bytes: headerBytes, encoding: .isoLatin1) else {
            throw DatasetError.badFormat(path: path, reason: "the header is not text")
        }
        let header = try parseHeader(text, path: path)
        guard !header.fortranOrder else {
            throw DatasetError.badFormat(path: path, reason: "Fortran-order arrays are not supported; save with C order (np.ascontiguousarray)")
        }
        let element: VectorElement
        switch header.descr {
        case "<f4", "=f4": element = .float32
        case "<f8", "=f8": element = .float64
        case "|u1", "<u1", "=u1", "u1": element = .uint8
        case "|i1", "<i1", "=i1", "i1": element = .int8
        case "<i4", "=i4": element = .int32
        default:
            throw DatasetError.badFormat(
                path: path, reason: "dtype '\(header.descr)' is not supported (little-endian float32, float64, uint8, int8 or int32)")
        }
        guard !header.shape.isEmpty else {
            throw DatasetError.badFormat(path: path, reason: "a 0-d array holds no vectors")
        }
        let rowsAll = header.shape[0]
        var columns = 1
        for d in header.shape.dropFirst() {
            let (p, o) = columns.multipliedReportingOverflow(by: d)
            guard !o else { throw DatasetError.badFormat(path: path, reason: "shape \(header.shape) overflows") }
            columns = p
        }
        guard columns > 0 else { throw DatasetError.badFormat(path: path, reason: "shape \(header.shape) has rows of zero elements") }
        let (elems, o1) = rowsAll.multipliedReportingOverflow(by: columns)
        let (need, o2) = elems.multipliedReportingOverflow(by: element.byteWidth)
        guard !o1, !o2 else { throw DatasetError.badFormat(path: path, reason: "shape \(header.shape) overflows") }
        guard r.remaining >= need else {
            throw DatasetError.truncated(path: path, reason: "shape \(header.shape) of \(header.descr) needs \(need) bytes of data, \(r.remaining) remain")
        }
        guard r.remaining == need else {
            throw DatasetError.badFormat(path: path, reason: "\(r.remaining - need) bytes follow the data that shape \(header.shape) announces")
        }
        let rows = limit.map { min(rowsAll, max(0, $0)) } ?? rowsAll
        let count = rows * columns
        let start = r.offset
        func load<T: BitwiseCopyable>(_: T.Type) -> [T] {
            [T](unsafeUninitializedCapacity: count) { buf, n in
                bytes.withUnsafeBytes { src in
                    UnsafeMutableRawBufferPointer(buf).copyMemory(
                        from: UnsafeRawBufferPointer(rebasing: src[start..<(start + count * MemoryLayout<T>.size)]))
                }
                n = count
            }
        }
        switch element {
        case .float32: return VectorSet(rows: rows, columns: columns, storage: .float32(load(Float.self)))
        case .float64: return VectorSet(rows: rows, columns: columns, storage: .float32(load(Double.self).map { Float($0) }))
        case .uint8: return VectorSet(rows: rows, columns: columns, storage: .uint8(load(UInt8.self)))
        case .int8: return VectorSet(rows: rows, columns: columns, storage: .int8(load(Int8.self)))
        case .int32: return VectorSet(rows: rows, columns: columns, storage: .int32(load(Int32.self)))
        case .int16: fatalError("int16 is not an .npy dtype Funnel reads")
        }
    }

    /// Parses `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
    static func parseHeader(_ text: String, path: String) throws -> Header {
        func value(after key: String) throws -> Substring {
            guard let k = text.range(of: "'\(key)'") ?? text.range(of: "\"\(key)\"") else {
                throw DatasetError.badFormat(path: path, reason: "the header has no '\(key)' entry: \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            guard let colon = text[k.upperBound...].firstIndex(of: ":") else {
                throw DatasetError.badFormat(path: path, reason: "the header's '\(key)' has no value")
            }
            return text[text.index(after: colon)...].drop(while: { $0 == " " })
        }
        let d = try value(after: "descr")
        guard let q = d.first, q == "'" || q == "\"", let end = d.dropFirst().firstIndex(of: q) else {
            throw DatasetError.badFormat(path: path, reason: "the header's descr is not a quoted string")
        }
        let descr = String(d[d.index(after: d.startIndex)..<end])
        let f = try value(after: "fortran_order")
        let fortran: Bool
        if f.hasPrefix("True") { fortran = true } else if f.hasPrefix("False") { fortran = false } else {
            throw DatasetError.badFormat(path: path, reason: "the header's fortran_order is neither True nor False")
        }
        let s = try value(after: "shape")
        guard s.first == "(", let close = s.firstIndex(of: ")") else {
            throw DatasetError.badFormat(path: path, reason: "the header's shape is not a tuple")
        }
        var shape = [Int]()
        for part in s[s.index(after: s.startIndex)..<close].split(separator: ",") {
            let t = part.trimmingCharacters(in: .whitespaces)
            if t.isEmpty { continue }
            guard let v = Int(t), v >= 0 else {
                throw DatasetError.badFormat(path: path, reason: "the header's shape has a bad entry '\(t)'")
            }
            shape.append(v)
        }
        return Header(descr: descr, fortranOrder: fortran, shape: shape)
    }

    static func encode(_ set: VectorSet) -> [UInt8] {
        let descr: String
        switch set.storage {
        case .float32: descr = "<f4"
        case .uint8: descr = "|u1"
        case .int8: descr = "|i1"
        case .int32: descr = "<i4"
        }
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': (\(set.rows), \(set.columns)), }"
        // Pad so that the data starts on a 64-byte boundary, ending with a newline.
        let preamble = 10
        let total = ((preamble + header.utf8.count + 1 + 63) / 64) * 64
        header += String(repeating: " ", count: total - preamble - header.utf8.count - 1) + "\n"
        var out = magic + [1, 0]
        withUnsafeBytes(of: UInt16(header.utf8.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: Array(header.utf8))
        switch set.storage {
        case .float32(let v): v.withUnsafeBytes { out.append(contentsOf: $0) }
        case .uint8(let v): out.append(contentsOf: v)
        case .int8(let v): v.withUnsafeBytes { out.append(contentsOf: $0) }
        case .int32(let v): v.withUnsafeBytes { out.append(contentsOf: $0) }
        }
        return out
    }
}
