import Collectives
import Testing

/// The in-process group against sums, gathers and exchanges computed by hand.
@Suite struct LocalGroupTests {
    @Test(arguments: [1, 2, 3, 4])
    func allreduceSumsEveryRanksValues(ranks: Int) throws {
        // Rank r offers r * 10 + i at index i: the sum is 10 * (0 + ... + P-1) + P * i.
        let results = try LocalGroup.run(ranks: ranks) { comm -> [Double] in
            var v = (0..<5).map { Double(comm.rank * 10 + $0) }
            comm.allreduceSum(&v)
            return v
        }
        let base = Double(10 * ranks * (ranks - 1) / 2)
        for r in results { #expect(r == (0..<5).map { base + Double(ranks * $0) }) }
    }

    @Test func maxAnyAndBroadcast() throws {
        let results = try LocalGroup.run(ranks: 3) { comm -> (Int32, Bool, Bool, [Float]) in
            var b: [Float] = comm.rank == 1 ? [1, 2, 3] : []
            comm.broadcast(&b, root: 1)
            return (comm.max(Int32(7 - comm.rank * 3)), comm.any(comm.rank == 2), comm.any(false), b)
        }
        for r in results {
            #expect(r.0 == 7)
            #expect(r.1 && !r.2)
            #expect(r.3 == [1, 2, 3])
        }
    }

    @Test func allgatherConcatenatesInRankOrder() throws {
        // Rank r gives r copies of r (rank 0 gives nothing).
        let results = try LocalGroup.run(ranks: 4) { comm in comm.allgather([Int32](repeating: Int32(comm.rank), count: comm.rank)) }
        for r in results {
            #expect(r.counts == [0, 1, 2, 3])
            #expect(r.values == [1, 2, 2, 3, 3, 3])
        }
    }

    @Test func alltoallDeliversEachPartToItsRank() throws {
        // Rank s sends to rank d the values 100 s + d, (d + 1) times.
        let results = try LocalGroup.run(ranks: 3) { comm -> ([Int64], [Int]) in
            var send = [Int64](), counts = [Int]()
            for d in 0..<comm.size {
                counts.append(d + 1)
                send += [Int64](repeating: Int64(100 * comm.rank + d), count: d + 1)
            }
            let r = comm.alltoall(send, counts: counts)
            return (r.values, r.counts)
        }
        for (d, r) in results.enumerated() {
            #expect(r.1 == [d + 1, d + 1, d + 1])
            #expect(r.0 == (0..<3).flatMap { s in [Int64](repeating: Int64(100 * s + d), count: d + 1) })
        }
    }

    @Test func aFailingRankFailsTheGroupWithoutHangingTheOthers() throws {
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            _ = try LocalGroup.run(ranks: 3) { comm -> Int in
                if comm.rank == 1 { throw Boom() }
                var v = [1.0]
                for _ in 0..<100 { comm.allreduceSum(&v) }  // returns at once once abandoned
                return 0
            }
        }
    }

    @Test func shareCutsARangeIntoContiguousParts() throws {
        let parts = try LocalGroup.run(ranks: 3) { comm in comm.share(of: 10) }
        #expect(parts == [0..<3, 3..<6, 6..<10])
    }
}

@Suite struct SelfCheckTests {
    @Test(arguments: [1, 2, 5])
    func theLocalGroupPassesTheSelfCheck(ranks: Int) throws {
        let problems = try LocalGroup.run(ranks: ranks) { collectiveSelfCheck($0) }
        #expect(problems.allSatisfy { $0.isEmpty }, "\(problems)")
        #expect(collectiveSelfCheck(SingleProcess.shared).isEmpty)
    }

    /// A transport that drops one rank's part of every sum must be caught.
    @Test func aBrokenSumIsReported() throws {
        final class Lossy: Communicator, @unchecked Sendable {
            let inner: any Communicator
            init(_ inner: any Communicator) { self.inner = inner }
            var rank: Int { inner.rank }
            var size: Int { inner.size }
            func allreduceSum<T: CollectiveScalar>(_ v: UnsafeMutableBufferPointer<T>) {
                if rank == 1 { for i in v.indices { v[i] = 0 } }
                inner.allreduceSum(v)
            }
            func allreduceMax<T: CollectiveScalar>(_ v: UnsafeMutableBufferPointer<T>) { inner.allreduceMax(v) }
            func allgather<T: CollectiveScalar>(_ v: [T]) -> (values: [T], counts: [Int]) { inner.allgather(v) }
            func alltoall<T: CollectiveScalar>(_ v: [T], counts: [Int]) -> (values: [T], counts: [Int]) { inner.alltoall(v, counts: counts) }
            func broadcast<T: CollectiveScalar>(_ v: inout [T], root: Int) { inner.broadcast(&v, root: root) }
            func barrier() { inner.barrier() }
        }
        let problems = try LocalGroup.run(ranks: 3) { collectiveSelfCheck(Lossy($0)) }
        #expect(problems.allSatisfy { $0.contains { $0.contains("allreduce(sum") } })
    }
}
