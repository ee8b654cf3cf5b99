import Foundation
import Testing
@testable import HNSW
import LinearAlgebra
import ExactSearch

@Suite("HNSW deletes, updates and filters")
struct HNSWMutationTests {
    @Test("after deleting 30%, deleted items never come back and recall stays within 0.02 of a fresh build")
    func deletes() throws {
        let n = 3000, d = 24
        let base = clustered(n, d, seed: 4)
        let queries = clustered(60, d, seed: 4, stream: 3)
        let index = try HNSWIndex(dimension: d, parameters: .init(M: 12, efConstruction: 100))
        try index.add(base, ids: (0..<UInt64(n)).map { $0 }, threads: 2)
        var rng = SeededGenerator(seed: 9)
        var deleted = Set<Int>()
        while deleted.count < n * 3 / 10 { deleted.insert(rng.nextInt(below: n)) }
        for i in deleted { try index.remove(UInt64(i)) }
        #expect(index.count == n - deleted.count)
        #expect(!index.contains(UInt64(deleted.first!)))

        let got = try index.searchLabels(queries, k: 10, ef: 64)
        #expect(!got.ids.contains { deleted.contains(Int($0)) })
        #expect(!got.ids.contains(-1))
        let afterDelete = try recall(got: got.ids, k: 10, queries: queries, base: base, metric: .l2, allowed: { !deleted.contains($0) })

        let keptRows = (0..<n).filter { !deleted.contains($0) }
        var kept = Matrix(rows: keptRows.count, columns: d)
        for (i, r) in keptRows.enumerated() { for j in 0..<d { kept[i, j] = base[r, j] } }
        let fresh = try HNSWIndex(dimension: d, parameters: .init(M: 12, efConstruction: 100))
        try fresh.add(kept, ids: keptRows.map { UInt64($0) }, threads: 2)
        let freshGot = try fresh.searchLabels(queries, k: 10, ef: 64)
        let freshRecall = try recall(got: freshGot.ids, k: 10, queries: queries, base: base, metric: .l2, allowed: { !deleted.contains($0) })
        #expect(afterDelete >= freshRecall - 0.02, "after delete \(afterDelete), fresh \(freshRecall)")
    }

    @Test("refresh updates exactly the moved vectors and inserts new ones; searches then match brute force over the new vectors")
    func refresh() throws {
        let n = 1500, d = 16
        let old = clustered(n, d, seed: 12)
        let index = try HNSWIndex(dimension: d, parameters: .init(M: 12, efConstruction: 100))
        try index.add(old, threads: 2)
        // 10% of the rows move (replaced by other points), 50 are new; the rest are unchanged.
        var new = Matrix(rows: n + 50, columns: d)
        let fresh = clustered(n + 50, d, seed: 13)
        var moved = Set<Int>()
        var rng = SeededGenerator(seed: 3)
        while moved.count < n / 10 { moved.insert(rng.nextInt(below: n)) }
        for r in 0..<(n + 50) {
            for c in 0..<d { new[r, c] = (r < n && !moved.contains(r)) ? old[r, c] : fresh[r, c] }
        }
        let (updated, inserted) = try index.refresh(new, previous: old)
        #expect(updated == moved.count && inserted == 50 && index.count == n + 50)
        let queries = clustered(40, d, seed: 12, stream: 7)
        let got = try index.searchLabels(queries, k: 10, ef: 128)
        let r = try recall(got: got.ids, k: 10, queries: queries, base: new, metric: .l2)
        #expect(r >= 0.95, "recall after refresh \(r)")
    }

    @Test("inserts reuse deleted slots and the new items are found")
    func slotReuse() throws {
        let base = clustered(1000, 8, seed: 5)
        let index = try HNSWIndex(dimension: 8, parameters: .init(M: 8, efConstruction: 64))
        try index.add(base, ids: (0..<1000).map { UInt64($0) })
        for i in 0..<100 { try index.remove(UInt64(i)) }
        let slotsBefore = index.slotCount
        let fresh = clustered(100, 8, seed: 55)
        try index.add(fresh, ids: (5000..<5100).map { UInt64($0) })
        #expect(index.slotCount == slotsBefore)
        #expect(index.count == 1000)
        var found = 0
        for i in 0..<100 where try index.search(fresh.row(i), k: 1, ef: 64).first?.id == 5000 + i { found += 1 }
        #expect(found >= 97)
        // Deleted ids may be inserted again as new items.
        try index.add(base.rows(0..<1), ids: [0])
        #expect(index.contains(0))
    }

    @Test("update replaces an item's vector")
    func update() throws {
        let base = clustered(500, 6, seed: 6)
        let index = try HNSWIndex(dimension: 6, parameters: .init(M: 8, efConstruction: 64))
        try index.add(base, ids: (0..<500).map { UInt64($0) })
        let target: [Float] = [50, 50, 50, 50, 50, 50]
        try index.update(7, vector: target)
        #expect(try index.search(target, k: 1).first?.id == 7)
        #expect(try index.search(base.row(7), k: 1).first?.id != 7)
        #expect(index.count == 500)
    }

    @Test("filters return only allowed items: broad filters through the graph, narrow ones exactly",
          arguments: [0.5, 0.1, 0.005])
    func filters(fraction: Double) throws {
        let n = 6000, d = 16
        let base = clustered(n, d, seed: 7)
        let queries = clustered(30, d, seed: 7, stream: 2)
        let index = try HNSWIndex(dimension: d, parameters: .init(M: 12, efConstruction: 100))
        try index.add(base, ids: (0..<UInt64(n)).map { $0 }, threads: 2)
        let modulus = Int((1 / fraction).rounded())
        let allowed: (Int) -> Bool = { $0 % modulus == 0 }
        let filter = SearchFilter { allowed(Int($0)) }
        let got = try index.searchLabels(queries, k: 10, ef: 128, filter: filter)
        #expect(got.ids.allSatisfy { $0 >= 0 && allowed(Int($0)) })
        let r = try recall(got: got.ids, k: 10, queries: queries, base: base, metric: .l2, allowed: allowed)
        #expect(r >= (fraction < 0.02 ? 1.0 : 0.9), "recall \(r)")
    }

    @Test("a filter that allows fewer than k items returns exactly those")
    func tinyFilter() throws {
        let base = clustered(5000, 8, seed: 8)
        let index = try HNSWIndex(dimension: 8)
        try index.add(base, ids: (0..<5000).map { UInt64($0) })
        let got = try index.search(base.row(0), k: 10, filter: .allowing([17, 4242, 99]))
        #expect(Set(got.map(\.id)) == [17, 4242, 99])
    }
}

@Suite("HNSW under concurrent writers")
struct HNSWConcurrencyTests {
    @Test("searches on several threads while one thread inserts and deletes: no crash, no deleted id returned")
    func stress() throws {
        let d = 16
        let initial = clustered(2000, d, seed: 10)
        let extra = clustered(2000, d, seed: 11)
        let index = try HNSWIndex(dimension: d, parameters: .init(M: 8, efConstruction: 48))
        try index.add(initial, ids: (0..<2000).map { UInt64($0) })
        // Deletion order, published through a lock so searchers know what is gone.
        let toDelete = (0..<600).map { UInt64($0 * 3) }
        let lock = NSLock()
        var deletedSoFar = 0
        var violations = 0
        var searches = 0
        let queries = clustered(64, d, seed: 12)
        // Three searcher threads run until the writer is done.
        let done = DispatchGroup()
        for worker in 1...3 {
            done.enter()
            Thread {
                var q = worker
                while true {
                    lock.lock(); let gone = deletedSoFar; lock.unlock()
                    let goneSet = Set(toDelete[0..<gone])
                    let res = try! index.search(queries.row(q % 64), k: 10, ef: 32)
                    let bad = res.filter { goneSet.contains(UInt64($0.id)) }.count
                    lock.lock(); violations += bad; searches += 1; lock.unlock()
                    if gone >= toDelete.count { break }
                    q += 3
                }
                done.leave()
            }.start()
        }
        for i in 0..<toDelete.count {
            try index.add(extra.rows(i..<(i + 1)), ids: [UInt64(10_000 + i)], threads: 1)
            try index.remove(toDelete[i])
            lock.lock(); deletedSoFar = i + 1; lock.unlock()
        }
        done.wait()
        #expect(violations == 0)
        #expect(searches > 3)
        #expect(index.count == 2000)
        let r = try index.searchLabels(queries, k: 10, ef: 200)
        let liveRows = Set((0..<2000).filter { $0 % 3 != 0 || $0 >= 1800 })
        #expect(r.ids.allSatisfy { $0 >= 10_000 || liveRows.contains(Int($0)) })
    }
}
