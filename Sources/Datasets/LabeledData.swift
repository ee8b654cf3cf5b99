import LinearAlgebra
import Foundation

/// Rows of features with a label each, optionally grouped into queries (for ranking)
/// and weighted: the training and evaluation data of the ranking stage.
///
/// Features are dense; NaN marks a missing value, while a feature absent from a sparse
/// (SVMlight) line is 0, as LightGBM reads it. Column j is feature index j of the file,
/// so models trained here or by LightGBM on the same file name the same features.
public struct LabeledData: Sendable {
    public var features: Matrix
    public var labels: [Float]
    /// Query boundaries: query q is rows `groups[q] ..< groups[q+1]`; nil when ungrouped.
    public var groups: [Int]?
    public var weights: [Float]?

    public init(features: Matrix, labels: [Float], groups: [Int]? = nil, weights: [Float]? = nil) {
        self.features = features
        self.labels = labels
        self.groups = groups
        self.weights = weights
    }

    public var rowCount: Int { features.rows }
    public var featureCount: Int { features.columns }
    public var queryCount: Int { (groups?.count ?? 1) - 1 }

    /// Part `index` of `count` for data-parallel training: a contiguous block of whole
    /// queries (rows when ungrouped), the blocks in order and of nearly equal size, so
    /// rank order is row order. A part may be empty when there are fewer queries than parts.
    /// - Complexity: O(rows in the part * features).
    public func part(_ index: Int, of count: Int) -> LabeledData {
        precondition(count >= 1 && (0..<count).contains(index), "part \(index) of \(count)")
        let units = groups.map { $0.count - 1 } ?? rowCount
        let lo = index * units / count, hi = (index + 1) * units / count
        let rows = groups.map { $0[lo]..<$0[hi] } ?? lo..<hi
        return LabeledData(features: features.rows(rows), labels: Array(labels[rows]),
                           groups: groups.map { g in g[lo...hi].map { $0 - rows.lowerBound } },
                           weights: weights.map { Array($0[rows]) })
    }

    /// Reads SVMlight / LibSVM text: `label [qid:Q] index:value ...` per line.
    ///
    /// Query groups come from `qid:` tokens (consecutive equal ids) or from `queryFile`
    /// (LightGBM's `.query`: one group size per line). Weights come from `weightFile`
    /// (one per line). `featureCount` pads to at least that many columns.
    /// - Throws: `DatasetError.badRow` naming the file and line of any malformed token.
    public static func readSVMLight(_ path: String, queryFile: String? = nil, weightFile: String? = nil,
                                    featureCount: Int? = nil) throws -> LabeledData {
        let bytes = try DatasetError.readFile(path)
        var labels = [Float]()
        var entries = [(row: Int32, col: Int32, value: Float)]()
        var qids = [Int64]()
        var maxCol = -1
        var lineNo = 0
        for raw in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNo += 1
            var line = raw
            if let hash = line.firstIndex(of: UInt8(ascii: "#")) { line = line[..<hash] }
            let tokens = line.split(whereSeparator: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") || $0 == UInt8(ascii: "\r") })
            if tokens.isEmpty { continue }
            guard let label = DecimalNumber.float(String(decoding: tokens[0], as: UTF8.self)) else {
                throw DatasetError.badRow(path: path, line: lineNo, reason: "label '\(String(decoding: tokens[0], as: UTF8.self))' is not a number")
            }
            let row = Int32(labels.count)
            labels.append(label)
            for t in tokens.dropFirst() {
                guard let colon = t.firstIndex(of: UInt8(ascii: ":")) else {
                    throw DatasetError.badRow(path: path, line: lineNo, reason: "token '\(String(decoding: t, as: UTF8.self))' is not index:value")
                }
                let key = String(decoding: t[..<colon], as: UTF8.self)
                let valueText = String(decoding: t[t.index(after: colon)...], as: UTF8.self)
                if key == "qid" {
                    guard let q = Int64(valueText) else {
                        throw DatasetError.badRow(path: path, line: lineNo, reason: "qid '\(valueText)' is not an integer")
                    }
                    if qids.count < labels.count { qids.append(q) }
                    continue
                }
                guard let col = Int(key), col >= 0 else {
                    throw DatasetError.badRow(path: path, line: lineNo, reason: "feature index '\(key)' is not a non-negative integer")
                }
                guard col < Self.maxFeatures else {
                    throw DatasetError.badRow(path: path, line: lineNo, reason: "feature index \(col) is over the limit (indices 0..<\(Self.maxFeatures), as LightGBM models)")
                }
                guard let v = valueText.lowercased() == "nan" ? Float.nan : DecimalNumber.float(valueText) else {
                    throw DatasetError.badRow(path: path, line: lineNo, reason: "feature \(col) value '\(valueText)' is not a number")
                }
                maxCol = max(maxCol, col)
                entries.append((row, Int32(col), v))
            }
            if !qids.isEmpty && qids.count != labels.count {
                throw DatasetError.badRow(path: path, line: lineNo, reason: "some lines have qid: and this one does not")
            }
        }
        guard !labels.isEmpty else { throw DatasetError.empty(path: path) }
        let columns = max(maxCol + 1, featureCount ?? 0, 1)
        // Rows are stored dense: a lone huge feature index must not ask for gigabytes.
        let (cells, overflow) = labels.count.multipliedReportingOverflow(by: columns)
        guard !overflow, cells <= Self.maxDenseCells else {
            throw DatasetError.badFormat(path: path, reason: "\(labels.count) rows x \(columns) features (largest index \(maxCol)) "
                                         + "would take more than \(Self.maxDenseCells / (1 << 28)) GiB dense; renumber the features densely")
        }
        // A lone large index among few values must not ask for gigabytes either: dense rows
        // may hold at most 1024 cells per stored value (or 64 Mi cells, 256 MiB, in all).
        guard cells <= max(1 << 26, 1024 * (entries.count + labels.count)) else {
            throw DatasetError.badFormat(path: path, reason: "\(labels.count) rows x \(columns) features (largest index \(maxCol)) hold only \(entries.count) values; "
                                         + "stored dense that is \(cells / max(1, entries.count)) cells per value (the limit is 1024); renumber the features densely")
        }
        var m = Matrix(rows: labels.count, columns: columns)
        for e in entries { m[Int(e.row), Int(e.col)] = e.value }
        var data = LabeledData(features: m, labels: labels)
        if !qids.isEmpty {
            var g = [0]
            for i in 1..<qids.count where qids[i] != qids[i - 1] { g.append(i) }
            g.append(qids.count)
            data.groups = g
        }
        if let queryFile { data.groups = try readGroups(queryFile, rows: labels.count) }
        if let weightFile { data.weights = try readWeights(weightFile, rows: labels.count) }
        return data
    }

    /// Reads delimited text with a label column (`labelColumn`, 0-based) and numeric
    /// features in the other columns; empty fields and `NaN`/`na` are missing.
    public static func readDelimited(_ path: String, labelColumn: Int = 0, delimiter: Character = "\t",
                                     hasHeader: Bool = false, queryFile: String? = nil,
                                     weightFile: String? = nil) throws -> LabeledData {
        var reader = try CSVReader(path: path, delimiter: delimiter)
        if hasHeader { _ = try reader.next() }
        var labels = [Float]()
        var values = [Float]()
        var width = -1
        while let row = try reader.next() {
            if width < 0 {
                width = row.count
                guard labelColumn < width else {
                    throw DatasetError.badRow(path: path, line: reader.line, reason: "label column \(labelColumn) is past the \(width) columns")
                }
            }
            guard row.count == width else {
                throw DatasetError.badRow(path: path, line: reader.line, reason: "\(row.count) fields, earlier rows have \(width)")
            }
            for (c, f) in row.enumerated() {
                let t = f.trimmingCharacters(in: .whitespaces)
                let v: Float
                if t.isEmpty || t.lowercased() == "nan" || t.lowercased() == "na" {
                    v = .nan
                } else {
                    guard let x = DecimalNumber.float(t) else {
                        throw DatasetError.badRow(path: path, line: reader.line, reason: "column \(c) value '\(f)' is not a finite number")
                    }
                    v = x
                }
                if c == labelColumn {
                    guard !v.isNaN else { throw DatasetError.badRow(path: path, line: reader.line, reason: "missing label") }
                    labels.append(v)
                } else {
                    values.append(v)
                }
            }
        }
        guard !labels.isEmpty else { throw DatasetError.empty(path: path) }
        var data = LabeledData(features: try Matrix(rows: labels.count, columns: width - 1, storage: values), labels: labels)
        if let queryFile { data.groups = try readGroups(queryFile, rows: labels.count) }
        if let weightFile { data.weights = try readWeights(weightFile, rows: labels.count) }
        return data
    }

    /// The largest feature index + 1 a data file may use (LightGBM models are held to the same).
    public static let maxFeatures = 1 << 20

    /// The most feature values a dense data set may hold (2^30 floats, 4 GiB).
    public static let maxDenseCells = 1 << 30

    /// LightGBM's `.query` file: one group size per line, summing to the row count.
    public static func readGroups(_ path: String, rows: Int) throws -> [Int] {
        let text = String(decoding: try DatasetError.readFile(path), as: UTF8.self)
        var g = [0]
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let t = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if t.isEmpty { continue }
            guard let size = Int(t), size > 0, size <= rows else {
                throw DatasetError.badRow(path: path, line: i + 1, reason: "group size '\(t)' is not a positive integer of at most \(rows) (the rows)")
            }
            let (sum, overflow) = g.last!.addingReportingOverflow(size)
            guard !overflow, sum <= rows else {
                throw DatasetError.badFormat(path: path, reason: "group sizes up to line \(i + 1) add up to more than the \(rows) rows")
            }
            g.append(sum)
        }
        guard g.last! == rows else {
            throw DatasetError.badFormat(path: path, reason: "group sizes add up to \(g.last!), the data has \(rows) rows")
        }
        return g
    }

    /// One weight per line, as many as rows.
    public static func readWeights(_ path: String, rows: Int) throws -> [Float] {
        let text = String(decoding: try DatasetError.readFile(path), as: UTF8.self)
        var w = [Float]()
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let t = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if t.isEmpty { continue }
            guard let v = DecimalNumber.float(t), v >= 0 else {
                throw DatasetError.badRow(path: path, line: i + 1, reason: "weight '\(t)' is not a non-negative number")
            }
            w.append(v)
        }
        guard w.count == rows else {
            throw DatasetError.badFormat(path: path, reason: "\(w.count) weights for \(rows) rows")
        }
        return w
    }
}

extension LabeledData {
    /// Rows of several sets one after another (query groups and weights kept).
    /// - Throws: `DatasetError.invalid` when feature counts differ, or some sets have query
    ///   groups or weights and others do not.
    public static func concatenate(_ parts: [LabeledData]) throws -> LabeledData {
        guard let first = parts.first else { throw DatasetError.invalid("nothing to concatenate") }
        var storage = [Float](), labels = [Float](), groups: [Int]? = first.groups == nil ? nil : [0]
        var weights: [Float]? = first.weights == nil ? nil : []
        for (n, p) in parts.enumerated() {
            guard p.featureCount == first.featureCount else {
                throw DatasetError.invalid("part \(n) has \(p.featureCount) features, part 0 has \(first.featureCount)")
            }
            guard (p.groups == nil) == (groups == nil), (p.weights == nil) == (weights == nil) else {
                throw DatasetError.invalid("part \(n) differs from part 0 in having query groups or weights")
            }
            if let g = p.groups { groups! += g.dropFirst().map { $0 + labels.count } }
            if let w = p.weights { weights! += w }
            storage += p.features.storage
            labels += p.labels
        }
        return LabeledData(features: try Matrix(rows: labels.count, columns: first.featureCount, storage: storage),
                           labels: labels, groups: groups, weights: weights)
    }
}
