import Foundation
import Testing
@testable import TwoTower
import Datasets
import LinearAlgebra

/// A folder of small CSV files and a schema over them.
private func writeFiles(schema: String) throws -> (dir: String, schema: String) {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("funnel-schema-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let files = [
        "items.csv": """
        item_id,genres,brand,price,released,title
        i1,Action|Drama,a,10,2020-01-01,The Big Fight
        i2,Drama,b,20,2020-06-01,Quiet drama
        i3,Comedy,a,,2019-01-01,Laughs
        i4,Action,c,30,,Big laughs
        """,
        "users.csv": "user_id,country\nu1,fr\nu2,de\n",
        "interactions.csv": """
        user_id,item_id,timestamp
        u1,i1,1593561600
        u1,i2,1593648000
        u2,i2,1593734400
        u3,i9,1593820800
        u2,i4,1593907200
        """,
        "schema.json": schema,
    ]
    for (name, text) in files { try (text + "\n").write(toFile: "\(dir)/\(name)", atomically: true, encoding: .utf8) }
    return (dir, "\(dir)/schema.json")
}

private let goodSchema = """
{
  "interactions": {"user": "user_id", "item": "item_id"},
  "items": {
    "key": "item_id", "category": "genres", "created_at": "released",
    "features": [
      {"column": "genres", "type": "multi_categorical", "separator": "|", "pooling": "sum"},
      {"column": "brand", "type": "hashed_categorical", "buckets": 7},
      {"column": "price", "type": "numeric"},
      {"column": "released", "type": "age", "buckets": 6},
      {"column": "title", "type": "text", "buckets": 50, "dimension": 8}
    ]
  },
  "users": {"key": "user_id", "id_dimension": 5, "features": [{"column": "country", "type": "categorical"}]}
}
"""

@Suite("Feature schemas and CSV training data")
struct FeatureSchemaTests {
    @Test("CSV files with a schema become aligned tables and tower features, checked by hand")
    func loadsCSV() throws {
        let (dir, schemaPath) = try writeFiles(schema: goodSchema)
        let data = try TrainingData.csv(interactions: "\(dir)/interactions.csv", items: "\(dir)/items.csv",
                                        users: "\(dir)/users.csv", schema: try FeatureSchema.load(schemaPath))
        // Catalog: the 4 described items plus i9, which only the log knows; users u1, u2, u3.
        #expect(data.log.items.keys == ["i1", "i2", "i3", "i4", "i9"])
        #expect(data.log.users.keys == ["u1", "u2", "u3"])
        #expect(data.notes.count == 2, "\(data.notes)")
        let f = data.itemFeatures
        #expect(f.fields.map(\.name) == ["id", "genres", "brand", "price", "released", "title"])
        // genres: i1 has two values, summed; i9 has none (the unknown row).
        let genres = f.fields[1]
        #expect(genres.kind == .multiCategorical(column: "genres", pooling: .sum))
        #expect(genres.offsets == [0, 2, 3, 4, 5, 5])
        // brand "a" hashed with 64-bit FNV-1a (published vector: FNV-1a("a") = 0xaf63dc4c8601ec8c) into 7 buckets.
        let brandA = Int32(0xaf63_dc4c_8601_ec8c as UInt64 % 7) + 1
        #expect(f.fields[2].codes[0] == brandA && f.fields[2].codes[2] == brandA && f.fields[2].vocabularySize == 8)
        #expect(f.fields[2].codes[4] == 0, "i9 has no brand")
        // price standardized over the present values 10, 20, 30: mean 20, sd sqrt(200/3).
        let sd = (200.0 / 3).squareRoot()
        let expected = [-10 / sd, 0, 0, 10 / sd, 0].map(Float.init)
        #expect(f.fields[3].dimension == 1 && f.fields[3].vocabularySize == 0)
        #expect(zip(f.fields[3].values, expected).allSatisfy { abs($0 - $1) < 1e-5 }, "\(f.fields[3].values)")
        // released: ages at the newest interaction (2020-07-05): i1 186 days -> bucket floor(log2(187)) = 7,
        // clamped to 5, + 1; i4 and i9 missing -> 0.
        #expect(f.fields[4].codes == [6, 6, 6, 0, 0])
        // title: a width from the schema; "big" is shared by i1 and i4.
        #expect(f.fields[5].dimension == 8)
        #expect(Set(f.fields[5].codes[0..<3]).contains(f.fields[5].codes[Int(f.fields[5].offsets[3])]))
        #expect(data.userFeatures.fields.map(\.dimension).first == 5)
        #expect(data.itemCategories()?.lists == [[0, 1], [1], [2], [0], []])
    }

    @Test("a tower feeds standardized values as they are and sums summed lookups")
    func towerInputs() throws {
        let (dir, schemaPath) = try writeFiles(schema: goodSchema)
        let data = try TrainingData.csv(interactions: "\(dir)/interactions.csv", items: "\(dir)/items.csv",
                                        users: "\(dir)/users.csv", schema: try FeatureSchema.load(schemaPath))
        let tower = Tower(features: data.itemFeatures, hidden: [6], outputDimension: 4, seed: 3)
        var rng = SeededGenerator(seed: 1)
        _ = tower.forward([0, 3], rng: &rng)
        let x = tower.acts[0].array(2 * tower.widths[0])
        let f = data.itemFeatures.fields, off = tower.fieldOffsets
        // Row 0 (i1): genres = table row (Action) + table row (Drama), not their mean.
        let d = f[1].dimension
        for j in 0..<d {
            let sum = tower.tables[1][Int(f[1].codes[0]) * d + j] + tower.tables[1][Int(f[1].codes[1]) * d + j]
            #expect(abs(x[off[1] + j] - sum) < 1e-6)
        }
        // Row 1 (i4): price is its standardized value.
        #expect(x[tower.widths[0] + off[3]] == f[3].values[3])
        // Save and load: the same embeddings.
        var p = TwoTowerParameters()
        p.dimension = 4
        p.hidden = [6]
        let model = TwoTowerModel(userFeatures: data.userFeatures, itemFeatures: data.itemFeatures, parameters: p)
        for _ in 0..<5 { model.trainStep(users: [0, 0, 1, 2, 1], items: [0, 1, 1, 4, 3], rng: &rng) }
        let path = "\(dir)/towers.fnl"
        try model.save(to: path, userIDs: data.log.users.keys, itemIDs: data.log.items.keys)
        let loaded = try TwoTowerModel.load(from: path).model
        #expect(loaded.items.features.fields[3].values == f[3].values)
        let a = model.embedAll(model.items).storage, b = loaded.embedAll(loaded.items).storage
        #expect(zip(a, b).allSatisfy { abs($0 - $1) < 1e-6 })
    }

    @Test("schema mistakes are refused with what is wrong", arguments: [
        (#"{"items": {"key": "item_id", "features": [{"column": "g", "type": "genre"}]}}"#, "genre"),
        (#"{"items": {"key": "item_id", "features": [{"column": "g", "type": "multi_categorical", "seperator": ";"}]}}"#, "items.features[0].seperator"),
        (#"{"items": {"key": "item_id", "features": [{"column": "g", "type": "categorical"}, {"column": "g", "type": "text"}]}}"#, "appears twice"),
        (#"{"items": {"key": "item_id", "features": [{"column": "g", "type": "hashed_categorical", "buckets": 1}]}}"#, "buckets 1"),
        (#"{"items": {"key": "item_id", "features": [{"column": "g", "type": "text", "separator": "ab"}]}}"#, "separator"),
        (#"{"items": {"features": []}}"#, "key"),
        // A table the schema would ask for must fit: 2^24 buckets of a text feature is refused, not allocated.
        (#"{"items": {"key": "item_id", "features": [{"column": "t", "type": "text", "buckets": 16777216}]}}"#, "buckets 16777216"),
        (#"{"items": {"key": "item_id", "features": [{"column": "t", "type": "text", "buckets": 4194304, "dimension": 64}]}}"#, "t"),
        (#"{"items": [1, 2]"#, "schema"),
    ])
    func refusesMistakes(json: String, mentions: String) throws {
        let (_, schemaPath) = try writeFiles(schema: json)
        do {
            _ = try FeatureSchema.load(schemaPath)
            Issue.record("accepted \(json)")
        } catch let e as TwoTowerError {
            #expect("\(e)".contains(mentions), "\(e)")
        }
    }

    @Test("a schema naming item features without an item file, or a column the file lacks, is refused")
    func refusesMismatch() throws {
        let (dir, schemaPath) = try writeFiles(schema: goodSchema)
        let schema = try FeatureSchema.load(schemaPath)
        #expect(throws: TwoTowerError.self) { try TrainingData.csv(interactions: "\(dir)/interactions.csv", schema: schema) }
        var wrong = schema
        wrong.items?.features.append(.init(column: "colour", type: .categorical))
        #expect(throws: (any Error).self) {
            try TrainingData.csv(interactions: "\(dir)/interactions.csv", items: "\(dir)/items.csv", users: "\(dir)/users.csv", schema: wrong)
        }
        // Without a schema: ids only, default columns.
        let plain = try TrainingData.csv(interactions: "\(dir)/interactions.csv")
        #expect(plain.itemFeatures.fields.map(\.name) == ["id"] && plain.log.count == 5)
    }
}

@Suite("Attribute tables joined to a log")
struct AlignedTableTests {
    @Test("rows follow the log's vocabulary; unknown keys get missing values")
    func aligned() throws {
        var b = AttributeTable.Builder(specs: [ColumnSpec("c", .categorical), ColumnSpec("x", .numeric), ColumnSpec("m", .multiCategorical(separator: "|"))])
        try b.append(fields: ["red", "1", "a|b"]) { _ in TwoTowerError.invalidData("") }
        try b.append(fields: ["blue", "2", "c"]) { _ in TwoTowerError.invalidData("") }
        let table = b.table(keys: Vocabulary(["k1", "k2"]))
        let (t, missing) = table.aligned(to: Vocabulary(["k2", "k9", "k1"]))
        #expect(missing == 1)
        #expect(t.categoricalCodes("c")?.codes == [1, -1, 0])
        guard case .numeric(let x)? = t.columns["x"] else { Issue.record("x"); return }
        #expect(x[0] == 2 && x[1].isNaN && x[2] == 1)
        #expect(t.multiValues("m", row: 0) == ["c"] && t.multiValues("m", row: 1).isEmpty && t.multiValues("m", row: 2) == ["a", "b"])
    }
}

@Suite("New entities coded as the old ones")
struct AppendingTableTests {
    func table(_ rows: [[String]]) throws -> AttributeTable {
        var b = AttributeTable.Builder(specs: [
            ColumnSpec("c", .categorical), ColumnSpec("m", .multiCategorical(separator: "|")), ColumnSpec("x", .numeric),
            ColumnSpec("when", .timestamp), ColumnSpec("t", .text),
        ])
        for r in rows { try b.append(fields: r) { _ in TwoTowerError.invalidData("") } }
        return b.table(keys: Vocabulary((0..<rows.count).map { "e\($0)" }))
    }

    @Test("appending rows of a table: the old vocabularies, edges and standardization; unseen values get new codes; saved and loaded")
    func appendingTable() throws {
        let rows = [
            ["red", "a|b", "1", "2020-01-01", "big red"], ["blue", "b", "2", "2020-02-01", "small"],
            ["red", "c", "3", "", "red"], ["green", "a", "4", "2020-03-01", "tiny"],
            // New: a known colour, a new one; a new tag; values beyond the old range.
            ["blue", "a|d", "10", "2020-03-05", "big"], ["violet", "", "", "2019-12-01", "new words"],
        ]
        let specs: [FeatureSpec] = [
            FeatureSpec("id", .id), FeatureSpec("c", .categorical(column: "c")), FeatureSpec("h", .hashedCategorical(column: "c", buckets: 5)),
            FeatureSpec("m", .multiCategorical(column: "m")), FeatureSpec("xb", .numericBuckets(column: "x", buckets: 3)),
            FeatureSpec("xs", .numericStandardized(column: "x")), FeatureSpec("age", .ageBuckets(column: "when", now: 1_584_000_000, buckets: 8)),
            FeatureSpec("t", .hashedText(column: "t", buckets: 50)),
        ]
        let old = try EntityFeatures.build(count: 4, table: try table(Array(rows.prefix(4))), features: specs)
        let full = try table(rows)
        // The columns a file of new entities must hold, typed as the table above.
        #expect(old.attributeColumns() == [ColumnSpec("c", .categorical), ColumnSpec("m", .multiCategorical(separator: "|")),
                                           ColumnSpec("x", .numeric), ColumnSpec("when", .timestamp), ColumnSpec("t", .text)])
        let (grown, uncoded) = old.appending(table: full, from: 4)
        #expect(uncoded.isEmpty && grown.count == 6)
        // Built together, categorical codes come out the same (values are coded in order of appearance).
        let together = try EntityFeatures.build(count: 6, table: full, features: specs)
        for name in ["id", "c", "h", "m", "age", "t"] {
            let a = grown.fields.first { $0.name == name }!, b = together.fields.first { $0.name == name }!
            #expect(a.codes == b.codes && a.offsets == b.offsets && a.vocabularySize == b.vocabularySize, "field \(name)")
        }
        #expect(grown.fields[1].vocabulary == ["red", "blue", "green", "violet"])
        // Old entities keep their codes in every field.
        for (g, o) in zip(grown.fields, old.fields) {
            #expect(Array(g.codes.prefix(o.codes.count)) == o.codes && Array(g.values.prefix(o.values.count)) == o.values, "field \(g.name)")
        }
        // Buckets by the old edges (from 1, 2, 3, 4 in 3 buckets: edges 2 and 3): 10 -> bucket 3 + 1; missing -> 0.
        #expect(old.fields[4].edges == [2, 3])
        #expect(Array(grown.fields[4].codes.suffix(2)) == [3, 0])
        // Standardized by the old mean 2.5 and sd sqrt(1.25).
        #expect(abs(grown.fields[5].values[4] - Float((10 - 2.5) / 1.25.squareRoot())) < 1e-5 && grown.fields[5].values[5] == 0)
        // The coding state survives a save and a load.
        var p = TwoTowerParameters()
        p.dimension = 4
        p.hidden = [4]
        let model = TwoTowerModel(userFeatures: try EntityFeatures.build(count: 2, table: nil, kinds: [("id", .id)]), itemFeatures: old, parameters: p)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("funnel-state-\(UUID().uuidString).fnl").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try model.save(to: path, userIDs: ["u0", "u1"], itemIDs: (0..<4).map { "e\($0)" })
        let loaded = try TwoTowerModel.load(from: path).model.items.features
        for (l, o) in zip(loaded.fields, old.fields) {
            #expect(l.vocabulary == o.vocabulary && l.edges == o.edges && l.mean == o.mean && l.scale == o.scale, "field \(o.name)")
        }
        // And a grown tower takes the new codes (a new colour needs a new row).
        let tower = try model.items.grown(to: grown, seed: 1)
        var rng = SeededGenerator(seed: 1)
        let out = tower.forward([4, 5], rng: &rng)
        #expect(out.allSatisfy { $0.isFinite })
    }
}

@Suite("Vectors for users the model has not seen")
struct NewUserVectorTests {
    @Test("pooled touched items give the normalized mean of their embeddings; features alone give what the tower gives a known user with them")
    func newUsers() throws {
        var b = AttributeTable.Builder(specs: [ColumnSpec("c", .categorical), ColumnSpec("x", .numeric)])
        for r in [["a", "1"], ["b", "2"], ["a", "3"]] { try b.append(fields: r) { _ in TwoTowerError.invalidData("") } }
        let users = try EntityFeatures.build(count: 3, table: b.table(keys: Vocabulary(["u0", "u1", "u2"])), features: [
            FeatureSpec("id", .id), FeatureSpec("c", .categorical(column: "c")), FeatureSpec("x", .numericStandardized(column: "x")),
        ])
        var p = TwoTowerParameters()
        p.dimension = 6
        p.hidden = [8]
        let model = TwoTowerModel(userFeatures: users, itemFeatures: try tinyFeatures(10, seed: 5), parameters: p)
        var rng = SeededGenerator(seed: 1)
        for _ in 0..<10 { model.trainStep(users: [0, 1, 2, 0], items: [1, 2, 3, 4], rng: &rng) }
        // Pooled: by hand from embedAll.
        let all = model.embedAll(model.items)
        var mean = [Float](repeating: 0, count: 6)
        for i in [2, 7] { for j in 0..<6 { mean[j] += all[i, j] / 2 } }
        let n = mean.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let pooled = try model.userVector(touched: [2, 7])
        #expect(zip(pooled, mean).allSatisfy { abs($0 - $1 / n) < 1e-5 })
        #expect(throws: TwoTowerError.self) { try model.userVector(touched: [10]) }
        // A new user u3 with u0's attributes embeds like u0 without its id.
        try b.append(fields: ["a", "1"]) { _ in TwoTowerError.invalidData("") }
        let grown = users.appending(table: b.table(keys: Vocabulary(["u0", "u1", "u2", "u3"])), from: 3).features
        let fresh = try model.userVector(features: grown, row: 3)
        let known = model.embedAll(model.users, withoutID: true)
        #expect(zip(fresh, known.row(0)).allSatisfy { abs($0 - $1) < 1e-5 })
    }
}
