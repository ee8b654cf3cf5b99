/// MovieLens 100K, read directly from its distribution folder (`u.data`, `u.item`,
/// `u.user`, optionally `u.genre`).
///
/// - `interactions`: every rating as an interaction, the rating as its weight.
/// - `items`: `title` (text, decoded from Latin-1), `release_date` (timestamp),
///   `year` (numeric), `genres` (multi-valued, from the 19 flags).
/// - `users`: `age` (numeric), `gender`, `occupation`, `zip` (categorical).
///
/// Item and user indices agree across the three: row i of `items` is item index i.
public struct MovieLens: Sendable {
    public var interactions: InteractionLog
    public var items: AttributeTable
    public var users: AttributeTable

    static let defaultGenres = [
        "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
        "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
        "Thriller", "War", "Western",
    ]

    /// Loads the ml-100k folder at `directory`.
    /// - Throws: `DatasetError` naming the file and line of any malformed record.
    public static func load(directory: String) throws -> MovieLens {
        let dir = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        let genres = try readGenres("\(dir)/u.genre")
        let items = try readItems("\(dir)/u.item", genres: genres)
        let users = try readUsers("\(dir)/u.user")
        let interactions = try readRatings("\(dir)/u.data", users: users.keys, items: items.keys)
        return MovieLens(interactions: interactions, items: items, users: users)
    }

    /// Splits a Latin-1 file into lines of `|`-separated fields.
    static func latin1Records(_ path: String, separator: UInt8) throws -> [(line: Int, fields: [String])] {
        let bytes = try DatasetError.readFile(path)
        guard !bytes.isEmpty else { throw DatasetError.empty(path: path) }
        var out = [(Int, [String])]()
        var lineNo = 0
        for raw in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNo += 1
            var line = raw
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            if line.isEmpty { continue }
            let fields = line.split(separator: separator, omittingEmptySubsequences: false).map { field in
                // Latin-1 maps each byte to the Unicode scalar of the same value.
                String(String.UnicodeScalarView(field.map { Unicode.Scalar($0) }))
            }
            out.append((lineNo, fields))
        }
        return out
    }

    static func readGenres(_ path: String) throws -> [String] {
        guard let records = try? latin1Records(path, separator: UInt8(ascii: "|")) else { return defaultGenres }
        var names = defaultGenres
        for (line, f) in records {
            guard f.count == 2, let i = Int(f[1]), i >= 0, i < 64 else {
                throw DatasetError.badRow(path: path, line: line, reason: "expected 'name|index'")
            }
            while names.count <= i { names.append("genre\(names.count)") }
            names[i] = f[0]
        }
        return names
    }

    static func readItems(_ path: String, genres: [String]) throws -> AttributeTable {
        let records = try latin1Records(path, separator: UInt8(ascii: "|"))
        var keys = Vocabulary()
        var builder = AttributeTable.Builder(specs: [
            ColumnSpec("title", .text), ColumnSpec("release_date", .timestamp),
            ColumnSpec("year", .numeric), ColumnSpec("genres", .multiCategorical(separator: "|")),
        ])
        for (line, f) in records {
            guard f.count == 5 + genres.count else {
                throw DatasetError.badRow(path: path, line: line,
                                          reason: "\(f.count) fields, expected \(5 + genres.count) (id|title|release|video|url|\(genres.count) genre flags)")
            }
            guard Int(f[0]) != nil else { throw DatasetError.badRow(path: path, line: line, reason: "item id '\(f[0])' is not an integer") }
            guard keys.lookup(f[0]) == nil else { throw DatasetError.badRow(path: path, line: line, reason: "duplicate item id \(f[0])") }
            keys.intern(f[0])
            var itemGenres = [String]()
            for (g, flag) in f[5...].enumerated() {
                switch flag {
                case "1": itemGenres.append(genres[g])
                case "0": break
                default: throw DatasetError.badRow(path: path, line: line, reason: "genre flag '\(flag)' is not 0 or 1")
                }
            }
            let date = f[2]
            // Dates read dd-Mon-yyyy; an empty one is missing (item 267).
            var year = ""
            if !date.isEmpty {
                guard Timestamp.parse(date) != nil, let y = Int(date.suffix(4)) else {
                    throw DatasetError.badRow(path: path, line: line, reason: "cannot read release date '\(date)'")
                }
                year = String(y)
            }
            try builder.append(fields: [f[1], date, year, itemGenres.joined(separator: "|")]) { reason in
                DatasetError.badRow(path: path, line: line, reason: reason)
            }
        }
        return builder.table(keys: keys)
    }

    static func readUsers(_ path: String) throws -> AttributeTable {
        let records = try latin1Records(path, separator: UInt8(ascii: "|"))
        var keys = Vocabulary()
        var builder = AttributeTable.Builder(specs: [
            ColumnSpec("age", .numeric), ColumnSpec("gender", .categorical),
            ColumnSpec("occupation", .categorical), ColumnSpec("zip", .categorical),
        ])
        for (line, f) in records {
            guard f.count == 5 else {
                throw DatasetError.badRow(path: path, line: line, reason: "\(f.count) fields, expected 5 (id|age|gender|occupation|zip)")
            }
            guard Int(f[0]) != nil else { throw DatasetError.badRow(path: path, line: line, reason: "user id '\(f[0])' is not an integer") }
            guard keys.lookup(f[0]) == nil else { throw DatasetError.badRow(path: path, line: line, reason: "duplicate user id \(f[0])") }
            keys.intern(f[0])
            try builder.append(fields: Array(f[1...])) { reason in
                DatasetError.badRow(path: path, line: line, reason: reason)
            }
        }
        return builder.table(keys: keys)
    }

    /// `u.data`: user \t item \t rating \t timestamp, parsed from bytes.
    static func readRatings(_ path: String, users: Vocabulary, items: Vocabulary) throws -> InteractionLog {
        let bytes = try DatasetError.readFile(path)
        guard !bytes.isEmpty else { throw DatasetError.empty(path: path) }
        var log = InteractionLog(users: users, items: items, hasWeights: true)
        var lineNo = 0
        for raw in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNo += 1
            var line = raw
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            if line.isEmpty { continue }
            let f = line.split(separator: UInt8(ascii: "\t"), omittingEmptySubsequences: false)
            guard f.count == 4 else {
                throw DatasetError.badRow(path: path, line: lineNo, reason: "\(f.count) fields, expected 4 (user, item, rating, timestamp)")
            }
            let s = f.map { String(decoding: $0, as: UTF8.self) }
            guard let u = log.users.lookup(s[0]) else {
                throw DatasetError.badRow(path: path, line: lineNo, reason: "user \(s[0]) is not in u.user")
            }
            guard let i = log.items.lookup(s[1]) else {
                throw DatasetError.badRow(path: path, line: lineNo, reason: "item \(s[1]) is not in u.item")
            }
            guard let r = Float(s[2]), r.isFinite else {
                throw DatasetError.badRow(path: path, line: lineNo, reason: "rating '\(s[2])' is not a number")
            }
            guard let t = Int64(s[3]) else {
                throw DatasetError.badRow(path: path, line: lineNo, reason: "timestamp '\(s[3])' is not an integer")
            }
            log.append(user: u, item: i, timestamp: t, weight: r)
        }
        guard log.count > 0 else { throw DatasetError.empty(path: path) }
        return log
    }
}
