import Foundation

/// An RFC 4180 reader over a file's bytes: quoted fields may hold the delimiter,
/// doubled quotes and line breaks; `\n` and `\r\n` end records; a UTF-8 byte-order
/// mark is skipped.
///
/// Written here rather than taken from a package because the CSV packages available
/// accept an unterminated quote silently and decode scalar by scalar; this one reports
/// every malformed record with its line and reads interaction logs at memory speed.
public struct CSVReader {
    public let path: String
    public let delimiter: UInt8
    private let bytes: [UInt8]
    private var pos: Int
    /// The 1-based line where the record returned last begins.
    public private(set) var line: Int = 0
    private var nextLine = 1

    /// A reader over the file at `path`.
    public init(path: String, delimiter: Character = ",") throws {
        try self.init(bytes: DatasetError.readFile(path), path: path, delimiter: delimiter)
    }

    /// A reader over in-memory bytes (`path` names them in errors).
    public init(bytes: [UInt8], path: String, delimiter: Character = ",") throws {
        guard let d = delimiter.asciiValue, d != UInt8(ascii: "\""), d != UInt8(ascii: "\n") else {
            throw DatasetError.badFormat(path: path, reason: "the delimiter must be one ASCII character other than a quote or newline")
        }
        self.path = path
        self.delimiter = d
        self.bytes = bytes
        pos = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
    }

    /// The next record's fields, or nil at the end of the file. Blank lines are skipped.
    /// - Throws: `DatasetError.badRow` for an unterminated quote or text after a closing quote.
    public mutating func next() throws -> [String]? {
        let quote = UInt8(ascii: "\""), cr = UInt8(ascii: "\r"), lf = UInt8(ascii: "\n")
        let n = bytes.count
        // Skip blank lines.
        while pos < n && (bytes[pos] == lf || bytes[pos] == cr) {
            if bytes[pos] == lf { nextLine += 1 }
            pos += 1
        }
        if pos >= n { return nil }
        line = nextLine
        var fields = [String]()
        var field = [UInt8]()
        while true {
            field.removeAll(keepingCapacity: true)
            if pos < n && bytes[pos] == quote {
                pos += 1
                var closed = false
                while pos < n {
                    let c = bytes[pos]
                    if c == quote {
                        if pos + 1 < n && bytes[pos + 1] == quote {
                            field.append(quote)
                            pos += 2
                            continue
                        }
                        pos += 1
                        closed = true
                        break
                    }
                    if c == lf { nextLine += 1 }
                    field.append(c)
                    pos += 1
                }
                guard closed else {
                    throw DatasetError.badRow(path: path, line: line, reason: "a quoted field is never closed")
                }
                if pos < n && bytes[pos] != delimiter && bytes[pos] != lf && bytes[pos] != cr {
                    throw DatasetError.badRow(
                        path: path, line: nextLine,
                        reason: "unexpected '\(Character(Unicode.Scalar(bytes[pos])))' after a closing quote (field \(fields.count + 1))")
                }
            } else {
                let start = pos
                while pos < n {
                    let c = bytes[pos]
                    if c == delimiter || c == lf || c == cr { break }
                    if c == quote {
                        throw DatasetError.badRow(path: path, line: nextLine,
                                                  reason: "a quote inside an unquoted field (field \(fields.count + 1)); quote the whole field and double inner quotes")
                    }
                    pos += 1
                }
                field.append(contentsOf: bytes[start..<pos])
            }
            // Invalid UTF-8 would decode to U+FFFD: ids differing only there would merge.
            guard let text = String(validating: field, as: UTF8.self) else {
                throw DatasetError.badRow(path: path, line: nextLine, reason: "field \(fields.count + 1) is not valid UTF-8")
            }
            fields.append(text)
            if pos >= n { break }
            let c = bytes[pos]
            if c == delimiter {
                pos += 1
                if pos >= n { fields.append(""); break }
                continue
            }
            // End of record.
            if c == cr { pos += 1 }
            if pos < n && bytes[pos] == lf { pos += 1 }
            nextLine += 1
            break
        }
        return fields
    }

    /// Reads the header and maps each requested column name to its position.
    /// - Throws: `DatasetError.missingColumn` naming the absent column and the header's columns.
    public static func columnIndices(header: [String], names: [String], path: String) throws -> [Int] {
        let trimmed = header.map { $0.trimmingCharacters(in: .whitespaces) }
        return try names.map { name in
            guard let i = trimmed.firstIndex(of: name) else {
                throw DatasetError.missingColumn(path: path, column: name, available: trimmed)
            }
            return i
        }
    }
}
