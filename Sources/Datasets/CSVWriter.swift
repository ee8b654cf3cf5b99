import Persistence

/// Builds RFC 4180 CSV text: fields holding the delimiter, a quote or a line break are
/// quoted, with inner quotes doubled. `write(to:)` saves atomically.
public struct CSVWriter {
    public let delimiter: Character
    private var bytes: [UInt8] = []

    public init(delimiter: Character = ",") {
        self.delimiter = delimiter
    }

    public mutating func row(_ fields: [String]) {
        for (i, f) in fields.enumerated() {
            if i > 0 { bytes.append(delimiter.asciiValue!) }
            if f.contains(where: { $0 == delimiter || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
                bytes.append(UInt8(ascii: "\""))
                for b in f.utf8 {
                    if b == UInt8(ascii: "\"") { bytes.append(b) }
                    bytes.append(b)
                }
                bytes.append(UInt8(ascii: "\""))
            } else {
                bytes.append(contentsOf: f.utf8)
            }
        }
        bytes.append(UInt8(ascii: "\n"))
    }

    public var text: String { String(decoding: bytes, as: UTF8.self) }

    public func write(to path: String) throws {
        try AtomicFile.write(bytes, to: path)
    }
}

extension SyntheticCatalog {
    /// Writes `interactions.csv` (user_id,item_id,timestamp), `items.csv`
    /// (item_id,category,tags,created_at,price,title) and `users.csv` (user_id,region,age).
    public func writeCSV(to directory: String) throws {
        var w = CSVWriter()
        w.row(["user_id", "item_id", "timestamp"])
        let log = interactions
        for n in 0..<log.count {
            w.row([log.users[log.userIndex[n]], log.items[log.itemIndex[n]], String(log.timestamps[n])])
        }
        try w.write(to: "\(directory)/interactions.csv")

        var iw = CSVWriter()
        iw.row(["item_id", "category", "tags", "created_at", "price", "title"])
        guard case .categorical(let cv, let cc)? = items.columns["category"],
              case .timestamp(let created)? = items.columns["created_at"],
              case .numeric(let price)? = items.columns["price"],
              case .text(let title)? = items.columns["title"] else { preconditionFailure("generated columns") }
        for i in 0..<items.count {
            iw.row([items.keys[Int32(i)], cv[cc[i]], items.multiValues("tags", row: i).joined(separator: "|"),
                    String(created[i]), String(price[i]), title[i]])
        }
        try iw.write(to: "\(directory)/items.csv")

        var uw = CSVWriter()
        uw.row(["user_id", "region", "age"])
        guard case .categorical(let rv, let rc)? = users.columns["region"],
              case .numeric(let age)? = users.columns["age"] else { preconditionFailure("generated columns") }
        for u in 0..<users.count {
            uw.row([users.keys[Int32(u)], rv[rc[u]], String(Int(age[u]))])
        }
        try uw.write(to: "\(directory)/users.csv")
    }

    /// The column specs that read `items.csv` back.
    public static let itemColumns = [
        ColumnSpec("category", .categorical), ColumnSpec("tags", .multiCategorical(separator: "|")),
        ColumnSpec("created_at", .timestamp), ColumnSpec("price", .numeric), ColumnSpec("title", .text),
    ]
    /// The column specs that read `users.csv` back.
    public static let userColumns = [ColumnSpec("region", .categorical), ColumnSpec("age", .numeric)]
}
