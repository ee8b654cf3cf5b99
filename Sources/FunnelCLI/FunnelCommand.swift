import ArgumentParser
import Foundation
import Funnel
#if canImport(Glibc)
import Glibc
#endif

@main
enum Main {
    static func main() async {
        BLASSelection.relaunchIfNeeded()
        // ArgumentParser's main, except that one rank of an MPI job that fails ends the
        // whole job: the others would wait for it in their next collective.
        do {
            var command = try FunnelCommand.parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            MPICommunicator.abortJobIfParallel(FunnelCommand.message(for: error))
            FunnelCommand.exit(withError: error)
        }
    }
}

/// Starts the process again with a better OpenBLAS core when the one OpenBLAS chose is far
/// below the CPU (see `BLASCore`): OpenBLAS reads `OPENBLAS_CORETYPE` only when it loads,
/// which is before any code of ours runs, so the variable must be set for a new process.
/// Never overrides a value the user set; `FUNNEL_BLAS_AUTO=0` turns it off.
enum BLASSelection {
    static func relaunchIfNeeded() {
        let env = ProcessInfo.processInfo.environment
        guard env["OPENBLAS_CORETYPE"] == nil, env["FUNNEL_BLAS_AUTO"] != "0", env["FUNNEL_BLAS_RELAUNCHED"] == nil,
              let core = BLASCore.recommended() else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        setenv("FUNNEL_BLAS_RELAUNCHED", BLASCore.current, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // exec failed: go on with the core OpenBLAS chose.
        unsetenv("OPENBLAS_CORETYPE")
    }
}

struct FunnelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "funnel",
        abstract: "A recommendation and search retrieval engine: embeddings, ANN retrieval, ranking, re-ranking.",
        subcommands: [Demo.self, Doctor.self, MPICheck.self, TrainCommand.self, IndexCommand.self, PipelineEval.self, PipelineBench.self, RegistryCommand.self, Serve.self, Search.self, Retrain.self, Eval.self, Recommend.self, Similar.self, LearningCurve.self, AnnBench.self, Generate.self, GBDTCommand.self]
    )
}

/// Runs a command body. Library errors describe themselves (CustomStringConvertible), and
/// ArgumentParser prints that description and exits non-zero, with no usage text.
func run<T>(_ body: () throws -> T) throws -> T {
    try body()
}
