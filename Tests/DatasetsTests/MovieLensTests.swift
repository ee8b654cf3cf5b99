import _TestSupport
import Foundation
import Testing
import Datasets

@Suite("MovieLens ml-100k loader")
struct MovieLensTests {
    /// A three-movie folder in the ml-100k layout, with a Latin-1 title.
    func miniFolder(_ dir: TempDir) {
        let flags = { (on: [Int]) in (0..<19).map { on.contains($0) ? "1" : "0" }.joined(separator: "|") }
        var item: [UInt8] = Array("1|Toy Story (1995)|01-Jan-1995||http://x|\(flags([3, 4, 5]))\n".utf8)
        item += Array("2|Caf".utf8) + [0xE9] + Array(" (1996)|15-Mar-1996||http://y|\(flags([8]))\n".utf8)
        item += Array("3|unknown|||http://z|\(flags([0]))\n".utf8)
        _ = dir.write("u.item", bytes: item)
        _ = dir.write("u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
        _ = dir.write("u.data", "1\t2\t5\t881250949\n2\t1\t3\t891717742\n1\t3\t1\t878887116\n")
    }

    @Test("reads ratings, Latin-1 titles, genres, dates and user attributes")
    func mini() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        miniFolder(dir)
        let ml = try MovieLens.load(directory: dir.path)
        #expect(ml.interactions.count == 3)
        #expect(ml.interactions.weights == [5, 3, 1])
        #expect(ml.interactions.items[ml.interactions.itemIndex[0]] == "2")
        guard case .text(let titles)? = ml.items.columns["title"], case .numeric(let year)? = ml.items.columns["year"],
              case .timestamp(let released)? = ml.items.columns["release_date"] else { Issue.record("columns"); return }
        #expect(titles[1] == "Café (1996)")
        #expect(year[0] == 1995 && year[1] == 1996 && year[2].isNaN)
        #expect(released[0] == 788_918_400 && released[2] == Timestamp.missing)
        #expect(ml.items.multiValues("genres", row: 0) == ["Animation", "Children's", "Comedy"])
        #expect(ml.items.multiValues("genres", row: 2) == ["unknown"])
        let (occ, codes) = try #require(ml.users.categoricalCodes("occupation"))
        #expect(codes.map { occ[$0] } == ["technician", "other"])
    }

    @Test("a rating for an unknown item, or a short line, names the file and line")
    func errors() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        miniFolder(dir)
        _ = dir.write("u.data", "1\t2\t5\t881250949\n1\t9\t5\t881250949\n")
        #expect(throws: DatasetError.badRow(path: dir.file("u.data"), line: 2, reason: "item 9 is not in u.item")) {
            try MovieLens.load(directory: dir.path)
        }
        _ = dir.write("u.data", "1\t2\t5\n")
        #expect(throws: DatasetError.self) { try MovieLens.load(directory: dir.path) }
        _ = dir.write("u.data", "1\t2\t5\t1\n")
        _ = dir.write("u.user", "1|24|M|technician\n")
        #expect(throws: DatasetError.self) { try MovieLens.load(directory: dir.path) }
    }

    @Test("the real ml-100k in ../shared/data, when present, has its documented counts")
    func realData() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../shared/data/ml-100k").standardized.path
        guard FileManager.default.fileExists(atPath: path + "/u.data") else {
            print("ml-100k not found at \(path): real-data check skipped (the generated-folder tests above still ran)")
            return
        }
        let ml = try MovieLens.load(directory: path)
        #expect(ml.interactions.count == 100_000)
        #expect(ml.users.count == 943)
        #expect(ml.items.count == 1682)
        #expect(Set(ml.interactions.userIndex).count == 943)
        #expect(ml.interactions.weights!.allSatisfy { (1...5).contains($0) })
    }
}
