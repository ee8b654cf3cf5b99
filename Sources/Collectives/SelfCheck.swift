/// Runs each collective on values whose results are known in closed form and returns
/// what came back wrong (empty: the group works). For an operator checking that the
/// ranks of a job can talk (`funnel mpi-check`) and for the tests of every transport.
///
/// Every rank must call it. Rank r offers values built from r, so each result is a
/// formula in the rank count P (for example, the sum of r over the ranks is P(P-1)/2).
/// - Complexity: O(P * 1,000) values moved per rank.
public func collectiveSelfCheck(_ comm: any Communicator) -> [String] {
    var problems = [String]()
    let p = comm.size, r = comm.rank
    func fail(_ what: String) { problems.append("rank \(r) of \(p): \(what)") }

    // Sums of 1,000 doubles (exact: integers) and floats, and a maximum.
    var d = (0..<1000).map { Double(r * 1000 + $0) }
    comm.allreduceSum(&d)
    for i in 0..<1000 where d[i] != Double(1000 * p * (p - 1) / 2 + p * i) { fail("allreduce(sum, double)[\(i)] = \(d[i])"); break }
    var f = [Float](repeating: Float(r + 1), count: 7)
    comm.allreduceSum(&f)
    if f != [Float](repeating: Float(p * (p + 1) / 2), count: 7) { fail("allreduce(sum, float) = \(f)") }
    if comm.max(Int64(r * r)) != Int64((p - 1) * (p - 1)) { fail("allreduce(max, int64)") }

    // Allgather of uneven parts: rank r gives r + 1 copies of r.
    let g = comm.allgather([Int32](repeating: Int32(r), count: r + 1))
    if g.counts != (0..<p).map({ $0 + 1 }) || g.values != (0..<p).flatMap({ [Int32](repeating: Int32($0), count: $0 + 1) }) {
        fail("allgather gave counts \(g.counts)")
    }

    // Alltoall: rank s sends rank t the values 1000 s + t, t + 1 times (none to itself when P > 1).
    var send = [Float](), counts = [Int]()
    for t in 0..<p {
        let n = p > 1 && t == r ? 0 : t + 1
        counts.append(n)
        send += [Float](repeating: Float(1000 * r + t), count: n)
    }
    let a = comm.alltoall(send, counts: counts)
    let expected = (0..<p).flatMap { s in [Float](repeating: Float(1000 * s + r), count: p > 1 && s == r ? 0 : r + 1) }
    if a.values != expected { fail("alltoall gave \(a.values.count) values, counts \(a.counts)") }

    // Broadcast from the last rank, of a size only it knows.
    var b: [UInt8] = r == p - 1 ? Array("from the last rank".utf8) : []
    comm.broadcast(&b, root: p - 1)
    if b != Array("from the last rank".utf8) { fail("broadcast gave \(b.count) bytes") }
    comm.barrier()
    return problems
}
