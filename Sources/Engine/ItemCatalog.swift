import Datasets
import Foundation
import Persistence
import Serving
import TwoTower

/// What serving needs to know about a catalog besides the models: who the users and items
/// are (their ids), how people name items (titles), the attributes ranking and re-ranking
/// read (categories, creation times, numeric attributes), the text search indexes, and the
/// interaction log that the ranking statistics and every user's history come from.
///
/// Saved in a bundle as `catalog.fnl` (Funnel's checksummed container).
public struct ItemCatalog: Sendable {
    public var userIDs: [String]
    public var itemIDs: [String]
    /// Display names, one per item (empty where unknown); nil when the schema names no title column.
    public var titles: [String]?
    public var attributes: ItemAttributes
    /// The text each item is found by: its title, text columns and category values.
    public var searchText: [String]
    public var log: InteractionLog

    public init(userIDs: [String], itemIDs: [String], titles: [String]?, attributes: ItemAttributes,
                searchText: [String], log: InteractionLog) throws {
        guard attributes.count == itemIDs.count, searchText.count == itemIDs.count, titles.map({ $0.count == itemIDs.count }) ?? true else {
            throw EngineError.invalidData("catalog: \(itemIDs.count) items, but \(attributes.count) attribute rows, "
                                          + "\(searchText.count) search texts and \(titles?.count ?? 0) titles")
        }
        guard log.users.count <= userIDs.count, log.items.count <= itemIDs.count else {
            throw EngineError.invalidData("catalog: the log knows \(log.users.count) users and \(log.items.count) items, the catalog \(userIDs.count) and \(itemIDs.count)")
        }
        self.userIDs = userIDs
        self.itemIDs = itemIDs
        self.titles = titles
        self.attributes = attributes
        self.searchText = searchText
        self.log = log
    }

    /// The catalog of some training data: titles from the schema's `title` column, the
    /// ranker's category and creation-time columns, the items' `numeric` columns as ranker
    /// features (a `numeric_buckets` column stays a tower input only), and
    /// search text from the title, text and categorical columns.
    public init(_ data: TrainingData) throws {
        let items = data.items.count == data.log.items.count ? data.items : AttributeTable(keys: data.log.items)
        let numeric = (data.schema?.items?.features ?? [])
            .filter { $0.type == .numeric }.map(\.column)
            .filter { if case .numeric? = items.columns[$0] { return true } else { return false } }
        let attributes: ItemAttributes
        do {
            attributes = try ItemAttributes(table: items, category: data.category, createdAt: data.createdAt, numeric: numeric)
        } catch {
            throw EngineError.invalidData("item attributes: \(error)")
        }
        var titles: [String]? = nil
        if let column = data.title {
            switch items.columns[column] {
            case .text(let t)?: titles = t
            case .categorical(let v, let codes)?: titles = codes.map { $0 >= 0 ? v[$0] : "" }
            case nil: throw EngineError.invalidData("the title column '\(column)' is not in the item table")
            default: throw EngineError.invalidData("the title column '\(column)' is not text")
            }
        }
        // Search text: the title first, then text columns, then category-like values.
        var text = titles ?? [String](repeating: "", count: items.count)
        for column in items.columnOrder where column != data.title {
            switch items.columns[column] {
            case .text(let t)?: for i in text.indices where !t[i].isEmpty { text[i] += " " + t[i] }
            case .categorical(let v, let codes)?: for i in text.indices where codes[i] >= 0 { text[i] += " " + v[codes[i]] }
            case .multiCategorical?: for i in text.indices { text[i] += " " + items.multiValues(column, row: i).joined(separator: " ") }
            default: break
            }
        }
        try self.init(userIDs: data.log.users.keys, itemIDs: data.log.items.keys, titles: titles, attributes: attributes,
                      searchText: text, log: data.log)
    }

    /// The ranking features over this catalog (requests replayed as of their time see only their past).
    public func rankingFeatures() throws -> RankingFeatures {
        let statistics = InteractionStatistics(log: log, users: userIDs.count, items: itemIDs.count)
        do { return try RankingFeatures(items: attributes, statistics: statistics) } catch {
            throw EngineError.invalidData("ranking features: \(error)")
        }
    }

    /// An item's display name: its title, else its id.
    public func name(_ item: Int) -> String {
        if let t = titles?[item], !t.isEmpty { return t }
        return itemIDs[item]
    }

    // MARK: - Persistence

    static let magic = "FNLCATLG"
    static let formatVersion: UInt32 = 1

    /// Writes the catalog atomically (temp file, fsync, rename) in a checksummed container.
    public func save(to path: String) throws {
        try FunnelFile.write(to: path, magic: Self.magic, version: Self.formatVersion) { w in
            w.write(strings: userIDs)
            w.write(strings: itemIDs)
            w.write(UInt8(titles == nil ? 0 : 1))
            if let titles { w.write(strings: titles) }
            let a = attributes
            w.write(strings: a.categoryNames)
            w.write(array: a.categoryOffsets)
            w.write(array: a.categoryCodes)
            w.write(UInt8(a.createdAt == nil ? 0 : 1))
            if let c = a.createdAt { w.write(array: c) }
            w.write(strings: a.numericNames)
            for v in a.numericValues { w.write(array: v) }
            w.write(strings: searchText)
            w.write(UInt64(log.users.count))
            w.write(UInt64(log.items.count))
            w.write(array: log.userIndex)
            w.write(array: log.itemIndex)
            w.write(array: log.timestamps)
            w.write(UInt8(log.weights == nil ? 0 : 1))
            if let weights = log.weights { w.write(array: weights) }
        }
    }

    /// Reads a catalog, checking the container and every count and code before using it.
    /// - Throws: `PersistenceError.corrupt` or `EngineError.invalidData` naming the file and what is wrong.
    public static func load(from path: String) throws -> ItemCatalog {
        var (_, r) = try FunnelFile.read(path, magic: magic, versions: 1...formatVersion)
        let users = try r.readStrings("user ids")
        let items = try r.readStrings("item ids")
        func bad(_ s: String) -> EngineError { .invalidData("\(path): \(s)") }
        let titles = try r.read(UInt8.self, "title flag") == 1 ? try r.readStrings("titles") : nil
        let categoryNames = try r.readStrings("category names")
        let offsets = try r.readArray(Int32.self, "category offsets", maxCount: items.count + 1)
        let codes = try r.readArray(Int32.self, "category codes", maxCount: r.remaining)
        guard offsets.count == items.count + 1, offsets.first == 0, offsets.last.map({ Int($0) == codes.count }) ?? false,
              zip(offsets, offsets.dropFirst()).allSatisfy({ $0 <= $1 }) else {
            throw bad("category offsets do not describe \(items.count) items over \(codes.count) codes")
        }
        let createdAt = try r.read(UInt8.self, "creation flag") == 1 ? try r.readArray(Int64.self, "creation times", maxCount: items.count) : nil
        if let createdAt, let t = createdAt.first(where: { $0 != Timestamp.missing && !Timestamp.range.contains($0) }) {
            throw bad("creation time \(t) is outside years -9999...9999")
        }
        let numericNames = try r.readStrings("numeric names")
        var numeric = [(name: String, values: [Float])]()
        for name in numericNames { numeric.append((name, try r.readArray(Float.self, "numeric '\(name)'", maxCount: items.count))) }
        let searchText = try r.readStrings("search text")
        let logUsers = try r.readCount("log users", max: users.count), logItems = try r.readCount("log items", max: items.count)
        let userIndex = try r.readArray(Int32.self, "log users", maxCount: r.remaining)
        let itemIndex = try r.readArray(Int32.self, "log items", maxCount: userIndex.count)
        let times = try r.readArray(Int64.self, "log times", maxCount: userIndex.count)
        let weights = try r.read(UInt8.self, "weight flag") == 1 ? try r.readArray(Float.self, "log weights", maxCount: userIndex.count) : nil
        guard itemIndex.count == userIndex.count, times.count == userIndex.count, weights.map({ $0.count == userIndex.count }) ?? true else {
            throw bad("the log's columns have different lengths")
        }
        if let u = userIndex.first(where: { $0 < 0 || Int($0) >= logUsers }) { throw bad("log user \(u) outside 0..<\(logUsers)") }
        if let i = itemIndex.first(where: { $0 < 0 || Int($0) >= logItems }) { throw bad("log item \(i) outside 0..<\(logItems)") }
        var lists = [[Int32]]()
        lists.reserveCapacity(items.count)
        for i in 0..<items.count { lists.append(Array(codes[Int(offsets[i])..<Int(offsets[i + 1])])) }
        let attributes: ItemAttributes
        do {
            attributes = try ItemAttributes(count: items.count, categories: lists, categoryNames: categoryNames,
                                            createdAt: createdAt, numeric: numeric)
        } catch { throw bad("\(error)") }
        var log = InteractionLog(users: Vocabulary(Array(users.prefix(logUsers))), items: Vocabulary(Array(items.prefix(logItems))),
                                 hasWeights: weights != nil)
        log.userIndex = userIndex
        log.itemIndex = itemIndex
        log.timestamps = times
        log.weights = weights
        do {
            return try ItemCatalog(userIDs: users, itemIDs: items, titles: titles, attributes: attributes, searchText: searchText, log: log)
        } catch { throw bad("\(error)") }
    }
}

extension PayloadWriter {
    /// Strings as one UTF-8 blob and their end offsets.
    mutating func write(strings: [String]) {
        var blob = [UInt8](), ends = [UInt64]()
        ends.reserveCapacity(strings.count)
        for s in strings {
            blob.append(contentsOf: s.utf8)
            ends.append(UInt64(blob.count))
        }
        write(array: ends)
        write(array: blob)
    }
}

extension RawReader {
    /// Strings written by `PayloadWriter.write(strings:)`, every offset checked.
    mutating func readStrings(_ what: String) throws -> [String] {
        let ends = try readArray(UInt64.self, "\(what) offsets", maxCount: remaining / 8)
        let blob = try readArray(UInt8.self, what, maxCount: remaining)
        var out = [String](), start = 0
        out.reserveCapacity(ends.count)
        for e in ends {
            guard e >= UInt64(start), e <= UInt64(blob.count) else {
                throw PersistenceError.corrupt(path: path, reason: "\(what): offset \(e) outside \(start)...\(blob.count)")
            }
            out.append(String(decoding: blob[start..<Int(e)], as: UTF8.self))
            start = Int(e)
        }
        return out
    }
}

