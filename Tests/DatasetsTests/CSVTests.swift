import _TestSupport
import Foundation
import Testing
import Datasets

@Suite("CSV: RFC 4180 reading, interaction logs and attribute tables")
struct CSVTests {
    func rows(_ text: String, delimiter: Character = ",") throws -> [[String]] {
        var r = try CSVReader(bytes: Array(text.utf8), path: "mem.csv", delimiter: delimiter)
        var out = [[String]]()
        while let row = try r.next() { out.append(row) }
        return out
    }

    @Test("quoted fields hold delimiters, doubled quotes and line breaks; CRLF and BOM are handled")
    func rfc4180() throws {
        let text = "\u{FEFF}a,b,c\r\n\"x, y\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n,,\n\nlast,\"\",z"
        #expect(try rows(text) == [["a", "b", "c"], ["x, y", "say \"hi\"", "two\nlines"], ["", "", ""], ["last", "", "z"]])
        #expect(try rows("p\tq\n1\t\"2\t3\"\n", delimiter: "\t") == [["p", "q"], ["1", "2\t3"]])
        #expect(try rows("a,b,") == [["a", "b", ""]])
    }

    @Test("writer output reads back to the same fields")
    func writerRoundTrip() throws {
        let fields = [["id", "text"], ["1", "plain"], ["2", "comma, inside"], ["3", "quote \" inside"], ["4", "line\nbreak"], ["5", ""]]
        var w = CSVWriter()
        for f in fields { w.row(f) }
        #expect(try rows(w.text) == fields)
    }

    @Test("malformed quoting is an error naming the line")
    func malformed() throws {
        #expect(throws: DatasetError.badRow(path: "mem.csv", line: 2, reason: "a quoted field is never closed")) {
            try rows("a,b\n\"open,1\n2,3\n")
        }
        do {
            _ = try rows("a,b\n\"x\"y,1\n")
            Issue.record("expected an error")
        } catch let DatasetError.badRow(_, line, reason) {
            #expect(line == 2 && reason.contains("after a closing quote"))
        }
        do {
            _ = try rows("a,b\nx\"y,1\n")
            Issue.record("expected an error")
        } catch let DatasetError.badRow(_, line, _) {
            #expect(line == 2)
        }
    }

    @Test("interaction log: columns chosen by name, in any order, with weights and ISO dates")
    func interactions() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let path = dir.write("log.csv", """
        ts,rating,item,extra,user
        100,4.5,"i,1",x,u1
        2021-01-01T00:00:00Z,3,i2,y,u2
        300,1,"i,1",z,u2
        """)
        let log = try InteractionLog.readCSV(path, columns: .init(user: "user", item: "item", timestamp: "ts", weight: "rating"))
        #expect(log.count == 3)
        #expect(log.users.keys == ["u1", "u2"])
        #expect(log.items.keys == ["i,1", "i2"])
        #expect(log.userIndex == [0, 1, 1] && log.itemIndex == [0, 1, 0])
        #expect(log.timestamps == [100, 1_609_459_200, 300])
        #expect(log.weights == [4.5, 3, 1])
        #expect(log.chronologicalOrder() == [0, 2, 1])
    }

    @Test("interaction log errors: missing column, short row, bad timestamp, non-finite weight, empty file")
    func interactionErrors() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let cols = InteractionLog.Columns(user: "u", item: "i", timestamp: "t", weight: "w")
        #expect(throws: DatasetError.missingColumn(path: dir.file("a.csv"), column: "w", available: ["u", "i", "t"])) {
            try InteractionLog.readCSV(dir.write("a.csv", "u,i,t\n1,2,3\n"), columns: cols)
        }
        for (name, body, line) in [("b.csv", "u,i,t,w\n1,2,3,1\n1,2\n", 3), ("c.csv", "u,i,t,w\n1,2,yesterday,1\n", 2),
                                   ("d.csv", "u,i,t,w\n1,2,3,1\n1,2,3,nan\n", 3), ("e.csv", "u,i,t,w\n,2,3,1\n", 2)] {
            do {
                _ = try InteractionLog.readCSV(dir.write(name, body), columns: cols)
                Issue.record("expected an error for \(name)")
            } catch let DatasetError.badRow(_, l, _) {
                #expect(l == line, "\(name)")
            }
        }
        #expect(throws: DatasetError.empty(path: dir.file("f.csv"))) {
            try InteractionLog.readCSV(dir.write("f.csv", "u,i,t,w\n"), columns: cols)
        }
        #expect(throws: DatasetError.self) {
            try InteractionLog.readCSV(dir.write("g.csv", "u,i,t\n9,2,3\n"), columns: .init(user: "u", item: "i", timestamp: "t"),
                                       users: Vocabulary(["1"]), items: Vocabulary(["2"]), allowNewIDs: false)
        }
    }

    @Test("ids stay distinct or are refused: invalid UTF-8 and other Unicode forms of a known id name the line")
    func idSpelling() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        // Two user ids that differ only in an invalid byte would both decode to "u\u{FFFD}".
        let invalid = Array("user,item\nu".utf8) + [0xFF] + Array(",a\nu".utf8) + [0xFE] + Array(",b\n".utf8)
        let path = dir.file("bytes.csv")
        FileManager.default.createFile(atPath: path, contents: Data(invalid))
        do {
            _ = try InteractionLog.readCSV(path, columns: .init(user: "user", item: "item", timestamp: nil))
            Issue.record("invalid UTF-8 was read")
        } catch let DatasetError.badRow(_, line, reason) {
            #expect(line == 2 && reason.contains("not valid UTF-8"), "\(reason)")
        }
        // NFC "café" and NFD "cafe\u{301}" are equal Swift strings: one user, unless refused.
        let nfc = "caf\u{E9}", nfd = "cafe\u{301}"
        #expect(nfc == nfd && Array(nfc.utf8) != Array(nfd.utf8))
        do {
            _ = try InteractionLog.readCSV(dir.write("forms.csv", "user,item\n\(nfc),a\nx,b\n\(nfd),c\n"), columns: .init(user: "user", item: "item", timestamp: nil))
            Issue.record("two Unicode forms of one id were merged")
        } catch let DatasetError.badRow(_, line, reason) {
            #expect(line == 4 && reason.contains("U+0301") && reason.contains("U+00E9"), "\(reason)")
        }
        do {
            _ = try AttributeTable.readCSV(dir.write("items.csv", "id,c\n\(nfd),x\n\(nfc),y\n"), key: "id", columns: [ColumnSpec("c", .categorical)])
            Issue.record("two Unicode forms of one key were merged")
        } catch let DatasetError.badRow(_, line, reason) {
            #expect(line == 3 && reason.contains("another Unicode form"), "\(reason)")
        }
        // The same id spelled the same way twice is one id, as always.
        let log = try InteractionLog.readCSV(dir.write("same.csv", "user,item\n\(nfc),a\n\(nfc),b\n"), columns: .init(user: "user", item: "item", timestamp: nil))
        #expect(log.users.count == 1)
    }

    @Test("attribute table: typed columns, missing values, duplicate keys")
    func attributes() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let path = dir.write("items.csv", """
        id,genre,tags,price,released,title
        a,rock,x|y,1.5,1995-01-01,"Hello, world"
        b,jazz,,,,Plain
        c,rock,y|z|x,3,01-Feb-1996,T
        """)
        let table = try AttributeTable.readCSV(path, key: "id", columns: [
            ColumnSpec("genre", .categorical), ColumnSpec("tags", .multiCategorical(separator: "|")),
            ColumnSpec("price", .numeric), ColumnSpec("released", .timestamp), ColumnSpec("title", .text),
        ])
        #expect(table.count == 3 && table.columnOrder.first == "genre")
        let (gv, gc) = try #require(table.categoricalCodes("genre"))
        #expect(gc.map { gv[$0] } == ["rock", "jazz", "rock"])
        #expect(table.multiValues("tags", row: 0) == ["x", "y"])
        #expect(table.multiValues("tags", row: 1) == [])
        #expect(table.multiValues("tags", row: 2) == ["y", "z", "x"])
        guard case .numeric(let p)? = table.columns["price"], case .timestamp(let t)? = table.columns["released"],
              case .text(let title)? = table.columns["title"] else { Issue.record("column kinds"); return }
        #expect(p[0] == 1.5 && p[1].isNaN && p[2] == 3)
        #expect(t == [788_918_400, Timestamp.missing, 823_132_800])
        #expect(title[0] == "Hello, world")

        #expect(throws: DatasetError.self) {
            try AttributeTable.readCSV(dir.write("dup.csv", "id,g\na,1\na,2\n"), key: "id", columns: [ColumnSpec("g", .categorical)])
        }
        #expect(throws: DatasetError.self) {
            try AttributeTable.readCSV(dir.write("num.csv", "id,p\na,cheap\n"), key: "id", columns: [ColumnSpec("p", .numeric)])
        }
    }

    @Test("timestamps: epoch seconds, ISO 8601 with offsets, MovieLens dates", arguments: [
        ("0", Int64(0)), ("881250949", 881_250_949), ("1970-01-02", 86_400), ("2000-03-01T12:30:15Z", 951_913_815),
        ("2000-03-01 12:30:15", 951_913_815), ("2000-03-01T12:30:15+01:00", 951_910_215), ("2000-03-01T12:30:15.250Z", 951_913_815),
        ("01-Jan-1995", 788_918_400), ("4-Feb-1971", 34_473_600), ("1.5", 1),
    ])
    func timestamps(text: String, expected: Int64) {
        #expect(Timestamp.parse(text) == expected)
    }

    @Test("timestamps that are not dates, or past year 9999, are rejected",
          arguments: ["", "yesterday", "2000-13-01", "32-Jan-1995", "2000-01-01T25:00", "9223372036854775807", "-9223372036854775808", "1e14", "253402300800"])
    func badTimestamps(text: String) {
        #expect(Timestamp.parse(text) == nil)
    }
}

@Suite("Strict numbers and dates") struct StrictParsingTests {
    @Test("decimal numbers only: no hex floats, nan, inf or text after a NUL")
    func decimals() {
        for (text, value) in [("12", 12.0), ("-3.5", -3.5), ("+.25", 0.25), ("1e3", 1000), ("2.5E-2", 0.025), ("7.", 7)] {
            #expect(DecimalNumber.parse(text) == value, "\(text)")
        }
        for text in ["0x1p3", "nan", "inf", "12\u{0}34", "1e", "e5", "--1", "1-2", "1.2.3", "", " ", "١٢"] {
            #expect(DecimalNumber.parse(text) == nil, "\(text.debugDescription)")
        }
        #expect(DecimalNumber.float("1e60") == nil)  // beyond Float
    }

    @Test("dates that do not exist are refused")
    func dates() {
        #expect(Timestamp.parse("2024-02-29") == Timestamp.daysFromCivil(2024, 2, 29) * 86_400)
        #expect(Timestamp.parse("2024-02-30") == nil)
        #expect(Timestamp.parse("2023-02-29") == nil)
        #expect(Timestamp.parse("2100-02-29") == nil)
        #expect(Timestamp.parse("2000-02-29") != nil)
        #expect(Timestamp.parse("31-Apr-1995") == nil)
        #expect(Timestamp.parse("30-Apr-1995") != nil)
        #expect(Timestamp.parse("0x10") == nil)
    }
}
