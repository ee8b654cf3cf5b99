import Foundation

/// Ranks as threads of one process, exchanging through shared memory: the same
/// collectives as MPI with no launcher, so data-parallel code is tested by `swift test`
/// and runs on a machine without MPI.
///
/// ```swift
/// let losses = try LocalGroup.run(ranks: 4) { comm in try train(part: comm.rank, of: comm.size, comm) }
/// ```
public final class LocalGroup: @unchecked Sendable {
    let size: Int
    private let condition = NSCondition()
    private var arrived = 0
    private var generation = 0
    private var broken = false
    /// Per rank: a pointer to the data it offers in the current collective, its count,
    /// and per-destination counts (alltoall). Each rank writes only its own cell, between
    /// barriers, so the cells are raw memory rather than arrays shared across threads.
    fileprivate let slots: UnsafeMutablePointer<UnsafeRawPointer?>
    fileprivate let counts: UnsafeMutablePointer<Int>
    fileprivate let extra: UnsafeMutablePointer<[Int]>

    init(size: Int) {
        self.size = size
        slots = .allocate(capacity: size)
        slots.initialize(repeating: nil, count: size)
        counts = .allocate(capacity: size)
        counts.initialize(repeating: 0, count: size)
        extra = .allocate(capacity: size)
        extra.initialize(repeating: [], count: size)
    }

    deinit {
        slots.deallocate()
        counts.deallocate()
        extra.deinitialize(count: size)
        extra.deallocate()
    }

    /// Runs `body` on `ranks` threads, each with its rank's communicator, and returns
    /// their results in rank order. When a rank throws, the first error (in rank order)
    /// is rethrown after every rank has ended: the group is abandoned, and the other
    /// ranks' collectives return at once without exchanging anything (their results are
    /// then meaningless and dropped).
    public static func run<R>(ranks: Int, stackSize: Int = 8 << 20,
                              _ body: @escaping @Sendable (any Communicator) throws -> R) throws -> [R] {
        precondition(ranks >= 1, "a group needs at least one rank")
        let group = LocalGroup(size: ranks)
        let results = ResultBox<R>(count: ranks)
        let done = DispatchGroup()
        for r in 0..<ranks {
            done.enter()
            let thread = Thread {
                defer { done.leave() }
                let comm = LocalCommunicator(group: group, rank: r)
                do { results.set(r, .success(try body(comm))) } catch {
                    results.set(r, .failure(error))
                    group.abandon()
                }
            }
            thread.stackSize = stackSize
            thread.start()
        }
        done.wait()
        return try results.values.map { try $0!.get() }
    }

    func abandon() {
        condition.lock()
        broken = true
        condition.broadcast()
        condition.unlock()
    }

    /// A barrier across the group; returns false when the group was abandoned.
    func wait() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if broken { return false }
        let g = generation
        arrived += 1
        if arrived == size {
            arrived = 0
            generation += 1
            condition.broadcast()
            return true
        }
        while generation == g && !broken { condition.wait() }
        return generation != g
    }
}

private final class ResultBox<R>: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var values: [Result<R, Error>?]
    init(count: Int) { values = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: Result<R, Error>) { lock.lock(); values[i] = r; lock.unlock() }
}

/// One rank's view of a `LocalGroup`.
final class LocalCommunicator: Communicator, @unchecked Sendable {
    let group: LocalGroup
    let rank: Int
    var size: Int { group.size }

    init(group: LocalGroup, rank: Int) {
        self.group = group
        self.rank = rank
    }

    /// A barrier; false once the group is abandoned.
    @discardableResult
    private func sync() -> Bool { group.wait() }

    /// Offers `pointer`/`count` to the group, runs `read` once every rank has offered
    /// (all offers visible), and returns once every rank has read.
    private func exchange<T>(_ pointer: UnsafePointer<T>?, count: Int, extra: [Int] = [],
                             read: ([UnsafePointer<T>?], [Int], [[Int]]) -> Void) {
        group.slots[rank] = pointer.map { UnsafeRawPointer($0) }
        group.counts[rank] = count
        group.extra[rank] = extra
        guard sync() else { return }
        let n = size
        read((0..<n).map { group.slots[$0]?.assumingMemoryBound(to: T.self) }, Array(UnsafeBufferPointer(start: group.counts, count: n)),
             Array(UnsafeBufferPointer(start: group.extra, count: n)))
        sync()
    }

    private func reduce<T: CollectiveScalar>(_ values: UnsafeMutableBufferPointer<T>, _ combine: (T, T) -> T) {
        let mine = Array(values)
        mine.withUnsafeBufferPointer { mp in
            exchange(mp.baseAddress, count: mp.count) { slots, counts, _ in
                for c in counts { precondition(c == values.count, "allreduce of \(values.count) values on rank \(rank), \(c) on another") }
                guard values.count > 0 else { return }
                for i in 0..<values.count {
                    var acc = slots[0]![i]
                    for r in 1..<slots.count { acc = combine(acc, slots[r]![i]) }
                    values[i] = acc
                }
            }
        }
    }

    func allreduceSum<T: CollectiveScalar>(_ values: UnsafeMutableBufferPointer<T>) { reduce(values, +) }
    func allreduceMax<T: CollectiveScalar>(_ values: UnsafeMutableBufferPointer<T>) { reduce(values) { Swift.max($0, $1) } }

    func allgather<T: CollectiveScalar>(_ values: [T]) -> (values: [T], counts: [Int]) {
        var out = [T](), outCounts = [Int]()
        values.withUnsafeBufferPointer { vp in
            exchange(vp.baseAddress, count: vp.count) { slots, counts, _ in
                outCounts = counts
                out.reserveCapacity(counts.reduce(0, +))
                for (r, c) in counts.enumerated() where c > 0 { out.append(contentsOf: UnsafeBufferPointer(start: slots[r]!, count: c)) }
            }
        }
        return (out, outCounts)
    }

    func alltoall<T: CollectiveScalar>(_ values: [T], counts: [Int]) -> (values: [T], counts: [Int]) {
        precondition(counts.count == size && counts.reduce(0, +) == values.count,
                     "alltoall: counts \(counts) for \(values.count) values on \(size) ranks")
        var out = [T](), outCounts = [Int]()
        values.withUnsafeBufferPointer { vp in
            exchange(vp.baseAddress, count: vp.count, extra: counts) { slots, _, sendCounts in
                for r in 0..<size {
                    let offset = sendCounts[r].prefix(rank).reduce(0, +), c = sendCounts[r][rank]
                    outCounts.append(c)
                    if c > 0 { out.append(contentsOf: UnsafeBufferPointer(start: slots[r]! + offset, count: c)) }
                }
            }
        }
        return (out, outCounts)
    }

    func broadcast<T: CollectiveScalar>(_ values: inout [T], root: Int) {
        precondition((0..<size).contains(root), "broadcast from rank \(root) of \(size)")
        var received = [T]()
        values.withUnsafeBufferPointer { vp in
            exchange(vp.baseAddress, count: vp.count) { slots, counts, _ in
                if rank != root { received = counts[root] > 0 ? Array(UnsafeBufferPointer(start: slots[root]!, count: counts[root])) : [] }
            }
        }
        if rank != root { values = received }
    }

    func barrier() { sync() }
}
