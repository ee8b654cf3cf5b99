import _TestSupport
import Testing
import Datasets
import LinearAlgebra

@Suite("Synthetic catalogs and clustered vectors")
struct SyntheticTests {
    func small(seed: UInt64 = 42) -> SyntheticCatalog.Config {
        var c = SyntheticCatalog.Config()
        c.users = 300
        c.items = 2_000
        c.interactions = 40_000
        c.seed = seed
        return c
    }

    @Test("the same seed gives the same catalog whatever the thread count; another seed differs")
    func determinism() {
        let a = SyntheticCatalog.generate(small(), threads: 1)
        let b = SyntheticCatalog.generate(small(), threads: 2)
        #expect(Bool(a.interactions == b.interactions))
        #expect(Bool(a.items == b.items && a.users == b.users))
        let c = SyntheticCatalog.generate(small(seed: 7), threads: 2)
        #expect(Bool(a.interactions.itemIndex != c.interactions.itemIndex))
    }

    @Test("time order, creation before interaction, cold items untouched, popularity skewed")
    func structure() throws {
        let cat = SyntheticCatalog.generate(small())
        let log = cat.interactions
        #expect(log.count == 40_000)
        #expect(zip(log.timestamps, log.timestamps.dropFirst()).allSatisfy { $0 <= $1 })
        guard case .timestamp(let created)? = cat.items.columns["created_at"] else { Issue.record("created_at"); return }
        for n in 0..<log.count { #expect(created[Int(log.itemIndex[n])] <= log.timestamps[n]) }
        let cold = Set(cat.coldItems)
        #expect(cold.count == 100)
        #expect(!log.itemIndex.contains { cold.contains($0) })
        var counts = [Int](repeating: 0, count: 2_000)
        for i in log.itemIndex { counts[Int(i)] += 1 }
        let sorted = counts.sorted(by: >)
        // Zipf-like: the top 10% of items take far more than 10% of interactions.
        #expect(Double(sorted.prefix(200).reduce(0, +)) / Double(log.count) > 0.3)
    }

    @Test("users choose items that match their taste more often than popularity alone would")
    func tasteMatters() {
        let cat = SyntheticCatalog.generate(small())
        let log = cat.interactions
        var rng = SeededGenerator(seed: 1)
        var chosen = 0.0, random = 0.0
        for n in stride(from: 0, to: log.count, by: 10) {
            let u = cat.userTaste.row(Int(log.userIndex[n]))
            chosen += Double(Distance.dot(u, cat.itemTraits.row(Int(log.itemIndex[n]))))
            random += Double(Distance.dot(u, cat.itemTraits.row(Int(log.itemIndex[rng.nextInt(below: log.count)]))))
        }
        #expect(chosen > random * 1.5)
    }

    @Test("CSV export reads back to the same catalog")
    func csvRoundTrip() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let cat = SyntheticCatalog.generate(small())
        try cat.writeCSV(to: dir.path)
        let log = try InteractionLog.readCSV(dir.file("interactions.csv"))
        let src = cat.interactions
        // Vocabularies are in first-seen order; compare the external ids row by row.
        let sameRows = log.count == src.count && (0..<log.count).allSatisfy { n in
            log.users[log.userIndex[n]] == src.users[src.userIndex[n]] && log.items[log.itemIndex[n]] == src.items[src.itemIndex[n]]
                && log.timestamps[n] == src.timestamps[n]
        }
        #expect(sameRows)
        let items = try AttributeTable.readCSV(dir.file("items.csv"), key: "item_id", columns: SyntheticCatalog.itemColumns)
        #expect(Bool(items.keys == cat.items.keys))
        #expect(Bool(items.columns["tags"] == cat.items.columns["tags"]))
        #expect(Bool(items.columns["created_at"] == cat.items.columns["created_at"]))
        #expect(Bool(items.columns["title"] == cat.items.columns["title"]))
        let users = try AttributeTable.readCSV(dir.file("users.csv"), key: "user_id", columns: SyntheticCatalog.userColumns)
        #expect(Bool(users == cat.users))
    }

    @Test("Gaussian mixture samples are deterministic and sit near their centers", arguments: [1, 7, 64])
    func mixture(dim: Int) {
        let mix = GaussianMixture(dimension: dim, clusters: 5, spread: 0.1, seed: 3)
        let a = mix.sample(5_000, stream: 1, threads: 1), b = mix.sample(5_000, stream: 1, threads: 2)
        #expect(Bool(a == b))
        #expect(Bool(a != mix.sample(5_000, stream: 2)))
        // Every point is within a few spreads of some center.
        for r in stride(from: 0, to: 5_000, by: 50) {
            let p = a.row(r)
            let nearest = (0..<5).map { Distance.squaredL2(p, mix.centers.row($0)) }.min()!
            #expect(nearest < 0.01 * Float(dim) * 4 + 0.1)
        }
    }
}
