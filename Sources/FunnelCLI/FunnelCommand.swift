import ArgumentParser
import Funnel

@main
struct FunnelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "funnel",
        abstract: "A recommendation and search retrieval engine: embeddings, ANN retrieval, ranking, re-ranking.",
        subcommands: [Demo.self, TrainCommand.self, Eval.self, Recommend.self, Similar.self, LearningCurve.self, AnnBench.self, Generate.self, GBDTCommand.self]
    )
}

/// Turns library errors into a clean message and a non-zero exit, with no stack trace.
func run<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let e as ValidationError {
        throw e
    } catch let e as CustomStringConvertible {
        // Library errors describe themselves; show that text, not a type dump.
        throw ValidationError("\(e)")
    }
}
