/// A scalar type the collectives move: its values cross ranks bit for bit.
public protocol CollectiveScalar: Numeric, Comparable, Sendable {
    /// The element code the MPI shim maps to an MPI datatype.
    static var collectiveCode: Int32 { get }
}

extension Float: CollectiveScalar { public static var collectiveCode: Int32 { 0 } }
extension Double: CollectiveScalar { public static var collectiveCode: Int32 { 1 } }
extension Int32: CollectiveScalar { public static var collectiveCode: Int32 { 2 } }
extension Int64: CollectiveScalar { public static var collectiveCode: Int32 { 3 } }
extension UInt8: CollectiveScalar { public static var collectiveCode: Int32 { 4 } }

/// A fixed group of ranks that train one model together (data parallelism): each holds
/// part of the data and the ranks agree through collective operations.
///
/// Every rank must call the same collectives in the same order with compatible sizes,
/// as in MPI. Results are identical on every rank (sums are taken in one order), so
/// decisions drawn from them (a tree's split, a stopping round) agree without further talk.
/// Implementations: `SingleProcess` (one rank), `LocalGroup` (ranks as threads of one
/// process, for tests and for a machine without MPI), `MPICommunicator` (Open MPI,
/// when launched by `mpirun`).
public protocol Communicator: AnyObject, Sendable {
    /// This process's rank, 0 ..< size.
    var rank: Int { get }
    /// The number of ranks.
    var size: Int { get }
    /// Sums `values` element-wise across the ranks, in place.
    /// - Complexity: O(count) per rank, plus the transport's cost.
    func allreduceSum<T: CollectiveScalar>(_ values: UnsafeMutableBufferPointer<T>)
    /// Element-wise maximum across the ranks, in place.
    func allreduceMax<T: CollectiveScalar>(_ values: UnsafeMutableBufferPointer<T>)
    /// Every rank's `values`, concatenated in rank order, and how many each rank gave.
    func allgather<T: CollectiveScalar>(_ values: [T]) -> (values: [T], counts: [Int])
    /// Personalized exchange (MPI_Alltoallv): `values` holds the parts for ranks 0, 1, ...
    /// back to back, `counts[i]` long for rank i. Returns what each rank sent to this
    /// one, concatenated in rank order, with the counts.
    func alltoall<T: CollectiveScalar>(_ values: [T], counts: [Int]) -> (values: [T], counts: [Int])
    /// Replaces `values` on every rank with the root's (sizes included).
    func broadcast<T: CollectiveScalar>(_ values: inout [T], root: Int)
    /// Waits until every rank has reached the barrier.
    func barrier()
}

extension Communicator {
    /// Whether this is rank 0, the one that writes files and prints.
    public var isRoot: Bool { rank == 0 }

    /// Sums an array element-wise across the ranks, in place.
    public func allreduceSum<T: CollectiveScalar>(_ values: inout [T]) {
        values.withUnsafeMutableBufferPointer { allreduceSum($0) }
    }

    /// The sum of one value over the ranks.
    public func sum<T: CollectiveScalar>(_ value: T) -> T {
        var v = [value]
        allreduceSum(&v)
        return v[0]
    }

    /// The maximum of one value over the ranks.
    public func max<T: CollectiveScalar>(_ value: T) -> T {
        var v = [value]
        v.withUnsafeMutableBufferPointer { allreduceMax($0) }
        return v[0]
    }

    /// Whether `flag` holds on any rank.
    public func any(_ flag: Bool) -> Bool { max(flag ? 1 as Int32 : 0) != 0 }

    /// The part of `0 ..< count` this rank owns when it is cut into `size` contiguous
    /// pieces of nearly equal length (rank order = index order).
    public func share(of count: Int) -> Range<Int> {
        (rank * count / size)..<((rank + 1) * count / size)
    }
}

/// The group of one: every collective is the identity.
public final class SingleProcess: Communicator {
    public static let shared = SingleProcess()
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allreduceSum<T: CollectiveScalar>(_ values: UnsafeMutableBufferPointer<T>) {}
    public func allreduceMax<T: CollectiveScalar>(_ values: UnsafeMutableBufferPointer<T>) {}
    public func allgather<T: CollectiveScalar>(_ values: [T]) -> (values: [T], counts: [Int]) { (values, [values.count]) }
    public func alltoall<T: CollectiveScalar>(_ values: [T], counts: [Int]) -> (values: [T], counts: [Int]) {
        precondition(counts.count == 1 && counts[0] == values.count, "alltoall: counts \(counts) for \(values.count) values on 1 rank")
        return (values, counts)
    }
    public func broadcast<T: CollectiveScalar>(_ values: inout [T], root: Int) {
        precondition(root == 0, "broadcast from rank \(root) of 1")
    }
    public func barrier() {}
}
