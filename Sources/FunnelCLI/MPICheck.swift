import ArgumentParser
import Foundation
import Funnel

/// `funnel mpi-check`: whether the ranks of an mpirun job can talk.
struct MPICheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mpi-check",
        abstract: "Check that the ranks of an MPI job exchange data correctly (run it under mpirun).",
        discussion: "Runs allreduce, allgather, alltoall and broadcast on values with known results, on every rank. Example: mpirun -np 4 funnel mpi-check")

    func run() throws {
        try FunnelCLI.run {
            let comm = try defaultCommunicator()
            let problems = collectiveSelfCheck(comm)
            let all = comm.allgather(Array(problems.joined(separator: "\n").utf8))
            guard comm.isRoot else { if !problems.isEmpty { throw ExitCode(1) }; return }
            var offset = 0
            var failures = [String]()
            for c in all.counts {
                let text = String(decoding: all.values[offset..<(offset + c)], as: UTF8.self)
                if !text.isEmpty { failures.append(text) }
                offset += c
            }
            let transport = comm is MPICommunicator ? "MPI" : "one process (not started by mpirun)"
            if failures.isEmpty {
                print("mpi-check: \(comm.size) ranks over \(transport): allreduce, allgather, alltoall and broadcast correct")
            } else {
                for f in failures { print(f) }
                throw ExitCode(1)
            }
        }
    }
}
