import CMPI
import Foundation

/// MPI_COMM_WORLD of Open MPI, for a process started by `mpirun`.
///
/// MPI is initialized on first use with MPI_THREAD_SERIALIZED (Funnel calls MPI from one
/// thread at a time) and finalized at exit. A failed collective cannot be retried (the
/// other ranks are inside it too): it prints MPI's message and aborts the whole job, the
/// way MPI's default error handler would, but naming the call.
public final class MPICommunicator: Communicator, @unchecked Sendable {
    public let rank: Int
    public let size: Int

    private static let lock = NSLock()
    nonisolated(unsafe) private static var world: MPICommunicator?

    private init(rank: Int, size: Int) {
        self.rank = rank
        self.size = size
    }

    /// Whether this process was started by an MPI launcher (`mpirun`, `mpiexec`, `srun`
    /// with PMIx), judged from the environment the launcher sets.
    public static var isLaunched: Bool {
        let env = ProcessInfo.processInfo.environment
        return ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"].contains { env[$0] != nil }
    }

    /// The world communicator, initializing MPI the first time.
    /// - Throws: `CollectiveError.mpi` when MPI cannot start or lacks thread support.
    public static func shared() throws -> MPICommunicator {
        lock.lock()
        defer { lock.unlock() }
        if let world { return world }
        var provided: Int32 = 0
        let rc = fmpi_init(&provided)
        guard rc == 0 else { throw CollectiveError.mpi("MPI_Init_thread failed: \(message(rc))") }
        guard provided >= fmpi_thread_serialized() else {
            throw CollectiveError.mpi("this MPI library gives thread level \(provided); Funnel needs MPI_THREAD_SERIALIZED")
        }
        atexit { _ = fmpi_finalize() }
        let w = MPICommunicator(rank: Int(fmpi_rank()), size: Int(fmpi_size()))
        world = w
        return w
    }

    /// Ends the whole job when this process is one of several MPI ranks: prints `message`
    /// with this rank's number and calls MPI_Abort. A rank that merely exited would leave
    /// the others waiting in their next collective (and MPI_Finalize waiting for them).
    /// Returns when MPI is not running or the job has one rank.
    public static func abortJobIfParallel(_ message: String) {
        lock.lock()
        let w = world
        lock.unlock()
        guard let w, w.size > 1 else { return }
        FileHandle.standardError.write(Data("funnel: rank \(w.rank) of \(w.size): \(message); aborting the job\n".utf8))
        _ = fmpi_abort(1)
        exit(1)
    }

    static func message(_ code: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: Int(fmpi_max_error_string()) + 1)
        fmpi_error_string(code, &buffer, Int32(buffer.count))
        let text = String(cString: buffer)
        return text.isEmpty ? "MPI error \(code)" : text
    }

    private func check(_ rc: Int32, _ call: @autoclosure () -> String) {
        guard rc != 0 else { return }
        FileHandle.standardError.write(Data("funnel: rank \(rank): \(call()) failed: \(Self.message(rc)); aborting the job\n".utf8))
        _ = fmpi_abort(1)
        exit(1)
    }

    private func count32(_ n: Int, _ call: String) -> Int32 {
        guard let c = Int32(exactly: n) else {
            check(-1, "\(call) of \(n) elements (MPI counts are 32-bit)")
            return 0
        }
        return c
    }

    public func allreduceSum<T: CollectiveScalar>(_ values: UnsafeMutableBufferPointer<T>) {
        guard let base = values.baseAddress, values.count > 0 else { return }
        check(fmpi_allreduce_sum(base, count32(values.count, "MPI_Allreduce"), T.collectiveCode), "MPI_Allreduce(sum, \(values.count))")
    }

    public func allreduceMax<T: CollectiveScalar>(_ values: UnsafeMutableBufferPointer<T>) {
        guard let base = values.baseAddress, values.count > 0 else { return }
        check(fmpi_allreduce_max(base, count32(values.count, "MPI_Allreduce"), T.collectiveCode), "MPI_Allreduce(max, \(values.count))")
    }

    /// Counts per rank, exchanged first so every receiver can size its buffer.
    private func gatherCounts(_ n: Int) -> [Int32] {
        var mine = count32(n, "MPI_Allgather")
        var all = [Int32](repeating: 0, count: size)
        check(fmpi_allgather_int32(&mine, &all), "MPI_Allgather(counts)")
        return all
    }

    private static func displacements(_ counts: [Int32]) -> [Int32] {
        var d = [Int32](), o: Int32 = 0
        for c in counts { d.append(o); o += c }
        return d
    }

    public func allgather<T: CollectiveScalar>(_ values: [T]) -> (values: [T], counts: [Int]) {
        let counts = gatherCounts(values.count)
        let total = counts.reduce(0) { $0 + Int($1) }
        _ = count32(total, "MPI_Allgatherv")
        let displs = Self.displacements(counts)
        var out = [T](repeating: 0, count: total)
        values.withUnsafeBufferPointer { vp in
            out.withUnsafeMutableBufferPointer { op in
                check(fmpi_allgatherv(vp.baseAddress, Int32(values.count), op.baseAddress, counts, displs, T.collectiveCode),
                      "MPI_Allgatherv(\(total))")
            }
        }
        return (out, counts.map(Int.init))
    }

    public func alltoall<T: CollectiveScalar>(_ values: [T], counts: [Int]) -> (values: [T], counts: [Int]) {
        precondition(counts.count == size && counts.reduce(0, +) == values.count,
                     "alltoall: counts \(counts) for \(values.count) values on \(size) ranks")
        let send = counts.map { count32($0, "MPI_Alltoallv") }
        var receive = [Int32](repeating: 0, count: size)
        check(fmpi_alltoall_int32(send, &receive), "MPI_Alltoall(counts)")
        let total = receive.reduce(0) { $0 + Int($1) }
        _ = count32(total, "MPI_Alltoallv")
        var out = [T](repeating: 0, count: total)
        let sd = Self.displacements(send), rd = Self.displacements(receive)
        values.withUnsafeBufferPointer { vp in
            out.withUnsafeMutableBufferPointer { op in
                check(fmpi_alltoallv(vp.baseAddress, send, sd, op.baseAddress, receive, rd, T.collectiveCode), "MPI_Alltoallv(\(total))")
            }
        }
        return (out, receive.map(Int.init))
    }

    public func broadcast<T: CollectiveScalar>(_ values: inout [T], root: Int) {
        precondition((0..<size).contains(root), "broadcast from rank \(root) of \(size)")
        var n = [Int64(values.count)]
        check(fmpi_bcast(&n, 1, Int64.collectiveCode, Int32(root)), "MPI_Bcast(size)")
        if rank != root { values = [T](repeating: 0, count: Int(n[0])) }
        let c = count32(Int(n[0]), "MPI_Bcast")
        guard c > 0 else { return }
        values.withUnsafeMutableBufferPointer { vp in
            check(fmpi_bcast(vp.baseAddress, c, T.collectiveCode, Int32(root)), "MPI_Bcast(\(c))")
        }
    }

    public func barrier() { check(fmpi_barrier(), "MPI_Barrier") }
}

/// Errors starting a group of ranks.
public enum CollectiveError: Error, CustomStringConvertible {
    case mpi(String)

    public var description: String {
        switch self {
        case .mpi(let m): return m
        }
    }
}

/// The communicator a command should train with: MPI's world when started by `mpirun`,
/// otherwise the group of one.
public func defaultCommunicator() throws -> any Communicator {
    MPICommunicator.isLaunched ? try MPICommunicator.shared() : SingleProcess.shared
}
