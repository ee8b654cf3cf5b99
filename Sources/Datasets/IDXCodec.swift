import Persistence
import Foundation

/// IDX files (LeCun's MNIST format): two zero bytes, a type code, the number of
/// dimensions, each dimension as a big-endian uint32, then the data, big-endian.
enum IDXCodec {
    static func element(code: UInt8) -> VectorElement? {
        switch code {
        case 0x08: return .uint8
        case 0x09: return .int8
        case 0x0B: return .int16
        case 0x0C: return .int32
        case 0x0D: return .float32
        case 0x0E: return .float64
        default: return nil
        }
    }

    static func decode(_ bytes: [UInt8], path: String, limit: Int?) throws -> VectorSet {
        try bytes.withUnsafeBytes { raw in try decode(bytes, raw: raw, path: path, limit: limit) }
    }

    private static func decode(_ bytes: [UInt8], raw: UnsafeRawBufferPointer, path: String, limit: Int?) throws -> VectorSet {
        guard bytes.count >= 4 else {
            throw DatasetError.truncated(path: path, reason: "\(bytes.count) bytes, an IDX header needs at least 4")
        }
        guard bytes[0] == 0, bytes[1] == 0, let element = element(code: bytes[2]) else {
            throw DatasetError.badFormat(
                path: path,
                reason: String(format: "IDX magic must be 00 00 <type 08..0E> <ndim>, found %02x %02x %02x %02x",
                               bytes[0], bytes[1], bytes[2], bytes[3]))
        }
        let ndim = Int(bytes[3])
        guard ndim >= 1 else { throw DatasetError.badFormat(path: path, reason: "IDX declares 0 dimensions") }
        var r = RawReader(raw, path: path, owner: nil)
        try r.skip(4, "magic")
        var dims = [Int]()
        for i in 0..<ndim {
            guard r.remaining >= 4 else {
                throw DatasetError.truncated(path: path, reason: "the header announces \(ndim) dimensions, the file ends at dimension \(i)")
            }
            dims.append(Int(try r.readBigEndian(UInt32.self, "dimension \(i)")))
        }
        let rowsAll = dims[0]
        var columns = 1
        for d in dims.dropFirst() {
            let (p, o) = columns.multipliedReportingOverflow(by: d)
            guard !o else { throw DatasetError.badFormat(path: path, reason: "dimensions \(dims) overflow") }
            columns = p
        }
        guard columns > 0 else { throw DatasetError.badFormat(path: path, reason: "a row has zero elements (dimensions \(dims))") }
        let (elems, o1) = rowsAll.multipliedReportingOverflow(by: columns)
        let (need, o2) = elems.multipliedReportingOverflow(by: element.byteWidth)
        guard !o1, !o2 else { throw DatasetError.badFormat(path: path, reason: "dimensions \(dims) overflow") }
        guard r.remaining >= need else {
            throw DatasetError.truncated(path: path, reason: "dimensions \(dims) need \(need) bytes of data, \(r.remaining) remain")
        }
        guard r.remaining == need else {
            throw DatasetError.badFormat(path: path, reason: "\(r.remaining - need) bytes follow the \(need) bytes of data the header announces")
        }
        let rows = limit.map { min(rowsAll, max(0, $0)) } ?? rowsAll
        let count = rows * columns
        let start = r.offset
        switch element {
        case .uint8:
            return VectorSet(rows: rows, columns: columns, storage: .uint8(Array(bytes[start..<(start + count)])))
        case .int8:
            return VectorSet(rows: rows, columns: columns, storage: .int8(bytes[start..<(start + count)].map { Int8(bitPattern: $0) }))
        case .int16:
            let v: [Int32] = (0..<count).map { i in
                Int32(Int16(bitPattern: UInt16(bytes[start + 2 * i]) << 8 | UInt16(bytes[start + 2 * i + 1])))
            }
            return VectorSet(rows: rows, columns: columns, storage: .int32(v))
        case .int32:
            let v: [Int32] = bytes.withUnsafeBytes { p in
                (0..<count).map { Int32(bigEndian: p.loadUnaligned(fromByteOffset: start + 4 * $0, as: Int32.self)) }
            }
            return VectorSet(rows: rows, columns: columns, storage: .int32(v))
        case .float32:
            let v: [Float] = bytes.withUnsafeBytes { p in
                (0..<count).map { Float(bitPattern: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: start + 4 * $0, as: UInt32.self))) }
            }
            return VectorSet(rows: rows, columns: columns, storage: .float32(v))
        case .float64:
            let v: [Float] = bytes.withUnsafeBytes { p in
                (0..<count).map { Float(Double(bitPattern: UInt64(bigEndian: p.loadUnaligned(fromByteOffset: start + 8 * $0, as: UInt64.self)))) }
            }
            return VectorSet(rows: rows, columns: columns, storage: .float32(v))
        }
    }

    static func encode(_ set: VectorSet) -> [UInt8] {
        let code: UInt8
        switch set.storage {
        case .uint8: code = 0x08
        case .int8: code = 0x09
        case .int32: code = 0x0C
        case .float32: code = 0x0D
        }
        let dims = set.columns == 1 ? [set.rows] : [set.rows, set.columns]
        var out: [UInt8] = [0, 0, code, UInt8(dims.count)]
        for d in dims { withUnsafeBytes(of: UInt32(d).bigEndian) { out.append(contentsOf: $0) } }
        switch set.storage {
        case .uint8(let v): out.append(contentsOf: v)
        case .int8(let v): out.append(contentsOf: v.map { UInt8(bitPattern: $0) })
        case .int32(let v): for x in v { withUnsafeBytes(of: x.bigEndian) { out.append(contentsOf: $0) } }
        case .float32(let v): for x in v { withUnsafeBytes(of: x.bitPattern.bigEndian) { out.append(contentsOf: $0) } }
        }
        return out
    }
}
