import Foundation

/// How one column of an attribute table is read.
public enum ColumnKind: Sendable, Equatable {
    /// One value from a vocabulary (a genre, a country).
    case categorical
    /// Several values in one field, split on `separator` (tags "a|b|c").
    case multiCategorical(separator: Character)
    /// A number; an empty field is missing (NaN).
    case numeric
    /// A date or time (see `Timestamp.parse`); an empty field is missing.
    case timestamp
    /// Free text, kept as is.
    case text
}

/// A column's name and kind.
public struct ColumnSpec: Sendable, Equatable {
    public var name: String
    public var kind: ColumnKind

    public init(_ name: String, _ kind: ColumnKind) {
        self.name = name
        self.kind = kind
    }
}

/// The values of one typed column, row-aligned with the table's keys.
public enum AttributeColumn: Sendable, Equatable {
    case categorical(vocabulary: Vocabulary, codes: [Int32])
    /// Row r's values are `codes[offsets[r] ..< offsets[r+1]]`.
    case multiCategorical(vocabulary: Vocabulary, offsets: [Int32], codes: [Int32])
    /// NaN marks a missing value.
    case numeric([Float])
    /// `Timestamp.missing` marks a missing value.
    case timestamp([Int64])
    case text([String])
}

extension Timestamp {
    /// The value stored for a missing timestamp.
    public static let missing = Int64.min
}

/// Per-entity attributes (items or users): one row per key, typed columns.
public struct AttributeTable: Sendable, Equatable {
    /// The entity ids, row by row.
    public var keys: Vocabulary
    public var columns: [String: AttributeColumn]
    /// Column names in the order they were declared.
    public var columnOrder: [String]

    public init(keys: Vocabulary = Vocabulary(), columns: [String: AttributeColumn] = [:], columnOrder: [String] = []) {
        self.keys = keys
        self.columns = columns
        self.columnOrder = columnOrder
    }

    public var count: Int { keys.count }

    /// Reads a CSV table with a header: `key` names the id column, `specs` the typed columns.
    /// - Throws: `DatasetError` for a missing column, a duplicate key, a short row or
    ///   a value that does not parse as its kind, naming the line.
    public static func readCSV(_ path: String, key: String, columns specs: [ColumnSpec],
                               delimiter: Character = ",") throws -> AttributeTable {
        var reader = try CSVReader(path: path, delimiter: delimiter)
        guard let header = try reader.next() else { throw DatasetError.empty(path: path) }
        let idx = try CSVReader.columnIndices(header: header, names: [key] + specs.map(\.name), path: path)
        let needed = (idx.max() ?? 0) + 1
        var builder = Builder(specs: specs)
        var keys = Vocabulary()
        while let row = try reader.next() {
            guard row.count >= needed else {
                throw DatasetError.badRow(path: path, line: reader.line, reason: "\(row.count) fields, the named columns need \(needed)")
            }
            let k = row[idx[0]]
            guard !k.isEmpty else { throw DatasetError.badRow(path: path, line: reader.line, reason: "empty \(key)") }
            if let known = keys.lookup(k) {
                let same = keys[known].utf8.elementsEqual(k.utf8)
                throw DatasetError.badRow(path: path, line: reader.line, reason: same ? "duplicate \(key) '\(k)'"
                                          : "\(key) \(VocabularyCollision(known: keys[known], new: k))")
            }
            keys.intern(k)
            try builder.append(fields: idx.dropFirst().map { row[$0] }) { reason in
                DatasetError.badRow(path: path, line: reader.line, reason: reason)
            }
        }
        guard keys.count > 0 else { throw DatasetError.empty(path: path) }
        return builder.table(keys: keys)
    }

    /// Accumulates typed columns row by row.
    public struct Builder {
        let specs: [ColumnSpec]
        var vocabs: [Vocabulary]
        var codes: [[Int32]]
        var offsets: [[Int32]]
        var numbers: [[Float]]
        var times: [[Int64]]
        var texts: [[String]]

        public init(specs: [ColumnSpec]) {
            self.specs = specs
            let n = specs.count
            vocabs = Array(repeating: Vocabulary(), count: n)
            codes = Array(repeating: [], count: n)
            offsets = Array(repeating: [0], count: n)
            numbers = Array(repeating: [], count: n)
            times = Array(repeating: [], count: n)
            texts = Array(repeating: [], count: n)
        }

        /// Appends one row; `fields` follow `specs`. `fail` builds the error for a bad value.
        public mutating func append(fields: [String], fail: (String) -> Error) throws {
            for (c, spec) in specs.enumerated() {
                let f = fields[c]
                switch spec.kind {
                case .categorical:
                    codes[c].append(vocabs[c].intern(f))
                case .multiCategorical(let sep):
                    for part in f.split(separator: sep) {
                        let v = part.trimmingCharacters(in: .whitespaces)
                        if !v.isEmpty { codes[c].append(vocabs[c].intern(v)) }
                    }
                    offsets[c].append(Int32(codes[c].count))
                case .numeric:
                    let t = f.trimmingCharacters(in: .whitespaces)
                    if t.isEmpty {
                        numbers[c].append(.nan)
                    } else {
                        guard let v = DecimalNumber.float(t) else {
                            throw fail("\(spec.name) '\(f)' is not a finite number")
                        }
                        numbers[c].append(v)
                    }
                case .timestamp:
                    if f.trimmingCharacters(in: .whitespaces).isEmpty {
                        times[c].append(Timestamp.missing)
                    } else {
                        guard let t = Timestamp.parse(f) else { throw fail("cannot read \(spec.name) '\(f)' as a date or time") }
                        times[c].append(t)
                    }
                case .text:
                    texts[c].append(f)
                }
            }
        }

        public func table(keys: Vocabulary) -> AttributeTable {
            var cols = [String: AttributeColumn]()
            for (c, spec) in specs.enumerated() {
                switch spec.kind {
                case .categorical: cols[spec.name] = .categorical(vocabulary: vocabs[c], codes: codes[c])
                case .multiCategorical: cols[spec.name] = .multiCategorical(vocabulary: vocabs[c], offsets: offsets[c], codes: codes[c])
                case .numeric: cols[spec.name] = .numeric(numbers[c])
                case .timestamp: cols[spec.name] = .timestamp(times[c])
                case .text: cols[spec.name] = .text(texts[c])
                }
            }
            return AttributeTable(keys: keys, columns: cols, columnOrder: specs.map(\.name))
        }
    }

    /// The categorical codes of `column` for every row, if it is categorical.
    public func categoricalCodes(_ column: String) -> (vocabulary: Vocabulary, codes: [Int32])? {
        if case .categorical(let v, let c)? = columns[column] { return (v, c) }
        return nil
    }

    /// The values of multi-valued `column` for row `row`.
    public func multiValues(_ column: String, row: Int) -> [String] {
        guard case .multiCategorical(let v, let off, let codes)? = columns[column] else { return [] }
        return (Int(off[row])..<Int(off[row + 1])).map { v[codes[$0]] }
    }
}

extension AttributeTable {
    /// This table's rows reordered to follow `keys` (row i describes `keys[i]`), for joining an
    /// attribute file to an interaction log whose vocabulary has grown past it. Keys without a
    /// row get missing values: categorical code -1, no values, NaN, `Timestamp.missing`, "".
    /// - Returns: the aligned table and how many keys had no row.
    public func aligned(to keys: Vocabulary) -> (table: AttributeTable, missing: Int) {
        let rows: [Int?] = keys.keys.map { self.keys.lookup($0).map(Int.init) }
        var out = [String: AttributeColumn]()
        for (name, column) in columns {
            switch column {
            case .categorical(let v, let codes):
                out[name] = .categorical(vocabulary: v, codes: rows.map { $0.map { codes[$0] } ?? -1 })
            case .multiCategorical(let v, let offsets, let codes):
                var o: [Int32] = [0], c = [Int32]()
                for r in rows {
                    if let r { c.append(contentsOf: codes[Int(offsets[r])..<Int(offsets[r + 1])]) }
                    o.append(Int32(c.count))
                }
                out[name] = .multiCategorical(vocabulary: v, offsets: o, codes: c)
            case .numeric(let x): out[name] = .numeric(rows.map { $0.map { x[$0] } ?? .nan })
            case .timestamp(let t): out[name] = .timestamp(rows.map { $0.map { t[$0] } ?? Timestamp.missing })
            case .text(let s): out[name] = .text(rows.map { $0.map { s[$0] } ?? "" })
            }
        }
        return (AttributeTable(keys: keys, columns: out, columnOrder: columnOrder), rows.filter { $0 == nil }.count)
    }
}
