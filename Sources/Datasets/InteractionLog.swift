import Foundation

/// Who interacted with what, and when: the training signal of every stage.
///
/// Users and items are dense indices into `users` and `items` (their external ids).
/// Columns are parallel arrays; `weights` is nil for purely implicit feedback.
public struct InteractionLog: Sendable, Equatable {
    public var users: Vocabulary
    public var items: Vocabulary
    public var userIndex: [Int32] = []
    public var itemIndex: [Int32] = []
    /// Unix seconds.
    public var timestamps: [Int64] = []
    /// Ratings or strengths, when the source has them.
    public var weights: [Float]?

    public init(users: Vocabulary = Vocabulary(), items: Vocabulary = Vocabulary(), hasWeights: Bool = false) {
        self.users = users
        self.items = items
        weights = hasWeights ? [] : nil
    }

    /// The number of interactions.
    public var count: Int { userIndex.count }

    /// Appends one interaction by dense indices.
    public mutating func append(user: Int32, item: Int32, timestamp: Int64, weight: Float? = nil) {
        userIndex.append(user)
        itemIndex.append(item)
        timestamps.append(timestamp)
        if weights != nil { weights!.append(weight ?? 1) }
    }

    /// Column names for reading a CSV log.
    public struct Columns: Sendable {
        public var user: String
        public var item: String
        public var timestamp: String?
        public var weight: String?

        public init(user: String = "user_id", item: String = "item_id",
                    timestamp: String? = "timestamp", weight: String? = nil) {
            self.user = user
            self.item = item
            self.timestamp = timestamp
            self.weight = weight
        }
    }

    /// Reads a CSV log with a header row, taking the columns named in `columns`.
    ///
    /// - Parameters:
    ///   - users, items: vocabularies to extend (e.g. those of attribute tables), so that
    ///     indices agree across files.
    ///   - allowNewIDs: when false, an id absent from the given vocabulary is an error.
    /// - Throws: `DatasetError` naming the file, line and problem: a missing column, a
    ///   short row, an empty id, a timestamp or weight that does not parse, a non-finite weight.
    public static func readCSV(
        _ path: String, columns: Columns = Columns(), delimiter: Character = ",",
        users: Vocabulary = Vocabulary(), items: Vocabulary = Vocabulary(), allowNewIDs: Bool = true
    ) throws -> InteractionLog {
        var reader = try CSVReader(path: path, delimiter: delimiter)
        guard let header = try reader.next() else { throw DatasetError.empty(path: path) }
        var names = [columns.user, columns.item]
        if let t = columns.timestamp { names.append(t) }
        if let w = columns.weight { names.append(w) }
        let idx = try CSVReader.columnIndices(header: header, names: names, path: path)
        let needed = (idx.max() ?? 0) + 1
        var log = InteractionLog(users: users, items: items, hasWeights: columns.weight != nil)
        let tCol = columns.timestamp != nil ? idx[2] : nil
        let wCol = columns.weight != nil ? idx[columns.timestamp != nil ? 3 : 2] : nil
        while let row = try reader.next() {
            guard row.count >= needed else {
                throw DatasetError.badRow(path: path, line: reader.line,
                                          reason: "\(row.count) fields, the named columns need \(needed)")
            }
            let u = row[idx[0]], it = row[idx[1]]
            guard !u.isEmpty else { throw DatasetError.badRow(path: path, line: reader.line, reason: "empty \(columns.user)") }
            guard !it.isEmpty else { throw DatasetError.badRow(path: path, line: reader.line, reason: "empty \(columns.item)") }
            let ui: Int32, ii: Int32
            if allowNewIDs {
                func exact(_ v: inout Vocabulary, _ id: String) throws -> Int32 {
                    switch v.internExact(id) {
                    case .success(let i): return i
                    case .failure(let c): throw DatasetError.badRow(path: path, line: reader.line, reason: "\(c)")
                    }
                }
                ui = try exact(&log.users, u)
                ii = try exact(&log.items, it)
            } else {
                guard let a = log.users.lookup(u) else {
                    throw DatasetError.badRow(path: path, line: reader.line, reason: "unknown \(columns.user) '\(u)'")
                }
                guard let b = log.items.lookup(it) else {
                    throw DatasetError.badRow(path: path, line: reader.line, reason: "unknown \(columns.item) '\(it)'")
                }
                ui = a
                ii = b
            }
            var ts: Int64 = Int64(log.count)
            if let tCol {
                guard let t = Timestamp.parse(row[tCol]) else {
                    throw DatasetError.badRow(path: path, line: reader.line, reason: "cannot read timestamp '\(row[tCol])'")
                }
                ts = t
            }
            var w: Float? = nil
            if let wCol {
                guard let v = DecimalNumber.float(row[wCol].trimmingCharacters(in: .whitespaces)) else {
                    throw DatasetError.badRow(path: path, line: reader.line, reason: "weight '\(row[wCol])' is not a finite number")
                }
                w = v
            }
            log.append(user: ui, item: ii, timestamp: ts, weight: w)
        }
        guard log.count > 0 else { throw DatasetError.empty(path: path) }
        return log
    }

    /// Positions of the interactions sorted by (timestamp, user, item): a stable time order.
    public func chronologicalOrder() -> [Int] {
        (0..<count).sorted { a, b in
            if timestamps[a] != timestamps[b] { return timestamps[a] < timestamps[b] }
            if userIndex[a] != userIndex[b] { return userIndex[a] < userIndex[b] }
            return itemIndex[a] < itemIndex[b]
        }
    }
}
