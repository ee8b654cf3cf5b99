import ArgumentParser
import Funnel

@main
struct FunnelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "funnel",
        abstract: "A recommendation and search retrieval engine: embeddings, ANN retrieval, ranking, re-ranking.",
        subcommands: [Demo.self, TrainCommand.self, IndexCommand.self, PipelineEval.self, PipelineBench.self, RegistryCommand.self, Serve.self, Search.self, Retrain.self, Eval.self, Recommend.self, Similar.self, LearningCurve.self, AnnBench.self, Generate.self, GBDTCommand.self]
    )
}

/// Runs a command body. Library errors describe themselves (CustomStringConvertible), and
/// ArgumentParser prints that description and exits non-zero, with no usage text.
func run<T>(_ body: () throws -> T) throws -> T {
    try body()
}
