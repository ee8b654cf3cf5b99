import Foundation
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

    @Test("each user touches distinct items, at least the floor of them, and the log's size is exact")
    func distinctPerUser() {
        let cat = SyntheticCatalog.generate(small())
        let log = cat.interactions
        var seen = [Set<Int32>](repeating: [], count: 300), count = [Int](repeating: 0, count: 300)
        for n in 0..<log.count {
            let u = Int(log.userIndex[n])
            #expect(seen[u].insert(log.itemIndex[n]).inserted, "user \(u) repeats item \(log.itemIndex[n])")
            count[u] += 1
        }
        #expect(count.min()! >= 20)
        #expect(count.reduce(0, +) == 40_000)
        // Activity is skewed: the most active user has many times the median.
        #expect(count.max()! > 4 * count.sorted()[150])
    }

    @Test("long-tail preset: far more items than users, most items seen a few times, a head of popular ones, and tastes beat popularity")
    func longTail() {
        let cat = SyntheticCatalog.generate(.longTail)
        let events = cat.interactions
        #expect(events.count == 100_000 && cat.userTaste.rows == 600 && cat.itemTraits.rows == 10_000)
        var counts = [Int](repeating: 0, count: 10_000)
        for i in events.itemIndex { counts[Int(i)] += 1 }
        let sorted = counts.sorted(by: >), touched = counts.filter { $0 > 0 }.sorted()
        #expect(Double(sorted.prefix(100).reduce(0, +)) / Double(events.count) > 0.1, "the top 1% of items")
        // A long tail: many items seen at most three times, and the median item well below the mean.
        let mean = Double(events.count) / Double(touched.count)
        #expect(Double(touched.filter { $0 <= 3 }.count) > 0.15 * Double(touched.count))
        #expect(Double(touched[touched.count / 2]) < 0.75 * mean, "median \(touched[touched.count / 2]), mean \(mean)")
        // Each user's last interaction, ranked among the items that exist by then that the
        // user has not touched: by the generative model's own score (log of the chance of
        // being a candidate, plus sharpness x taste: the oracle a model can approach) and by
        // the popularity of everything before it. The oracle must win clearly.
        guard case .timestamp(let created)? = cat.items.columns["created_at"] else { Issue.record("created_at"); return }
        let c = cat.config, m = Double(c.candidates)
        var last = [Int](repeating: -1, count: 600), before = [Set<Int32>](repeating: [], count: 600)
        for n in 0..<events.count { last[Int(events.userIndex[n])] = n }
        var popularity = [Int](repeating: 0, count: 10_000)
        var oracleHits = 0, popularHits = 0
        for n in 0..<events.count {
            let u = Int(events.userIndex[n]), target = Int(events.itemIndex[n])
            if last[u] == n {
                let t = events.timestamps[n], taste = cat.userTaste.row(u)
                let exists = (0..<10_000).filter { created[$0] <= t }
                let weight = exists.reduce(0.0) { $0 + cat.itemPopularity[$1] }
                let uniform: Double = (1 - c.popularityShare) * m / Double(exists.count)
                func oracle(_ i: Int) -> Double {
                    let candidate: Double = c.popularityShare * m * cat.itemPopularity[i] / weight + uniform
                    return Foundation.log(candidate) + Double(c.sharpness * Distance.dot(taste, cat.itemTraits.row(i)))
                }
                let os = oracle(target), ps = popularity[target]
                var oracleRank = 0, popularRank = 0
                for i in exists where i != target && !before[u].contains(Int32(i)) {
                    if oracle(i) >= os { oracleRank += 1 }
                    if popularity[i] >= ps { popularRank += 1 }
                }
                oracleHits += oracleRank < 10 ? 1 : 0
                popularHits += popularRank < 10 ? 1 : 0
            }
            before[u].insert(Int32(target))
            popularity[target] += 1
        }
        #expect(popularHits > 0)
        #expect(Double(oracleHits) > 2 * Double(popularHits), "oracle HR@10 \(oracleHits)/600, popularity \(popularHits)/600")
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
