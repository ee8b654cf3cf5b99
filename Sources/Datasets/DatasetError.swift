import Persistence

/// Errors from reading data files: every case names the file and what is wrong,
/// so a user can fix the input.
public enum DatasetError: Error, CustomStringConvertible, Equatable {
    /// The file is not of the expected format (wrong magic, bad header).
    case badFormat(path: String, reason: String)
    /// The file ends before the data it announces.
    case truncated(path: String, reason: String)
    /// Records disagree on their dimension.
    case inconsistentDimension(path: String, record: Int, expected: Int, got: Int)
    /// A float element is NaN or infinite.
    case nonFinite(path: String, row: Int, column: Int)
    /// The file holds no records.
    case empty(path: String)
    /// A CSV/TSV problem at a line (1-based) of a text file.
    case badRow(path: String, line: Int, reason: String)
    /// A column named on the command line or in a schema is not in the header.
    case missingColumn(path: String, column: String, available: [String])
    /// The file could not be read at all.
    case unreadable(path: String, reason: String)
    /// Data handed to a function (not read from a file) is inconsistent.
    case invalid(String)

    public var description: String {
        switch self {
        case .badFormat(let p, let r): return "\(p): not a valid file: \(r)"
        case .truncated(let p, let r): return "\(p): truncated: \(r)"
        case .inconsistentDimension(let p, let rec, let e, let g):
            return "\(p): record \(rec) has dimension \(g), earlier records have \(e)"
        case .nonFinite(let p, let r, let c): return "\(p): row \(r), column \(c) is NaN or infinite"
        case .empty(let p): return "\(p): the file holds no records"
        case .badRow(let p, let l, let r): return "\(p):\(l): \(r)"
        case .missingColumn(let p, let c, let a):
            return "\(p): no column named '\(c)' (the header has: \(a.joined(separator: ", ")))"
        case .unreadable(let p, let r): return "\(p): \(r)"
        case .invalid(let r): return "invalid data: \(r)"
        }
    }
}

extension DatasetError {
    /// Reads a whole file, turning system errors into `unreadable`.
    static func readFile(_ path: String) throws -> [UInt8] {
        do {
            return try FileBytes.read(path)
        } catch let e as PersistenceError {
            throw DatasetError.unreadable(path: path, reason: e.description)
        }
    }
}
