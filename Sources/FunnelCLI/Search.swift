import ArgumentParser
import Foundation
import Funnel

/// `funnel search`: a typed query through the funnel (see `Engine.search`).
struct Search: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Search items by text: BM25 + embedding neighbours, fused (RRF), then re-ranked; each item explained.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "The query text.") var query: String
    @Option var k: Int = 10
    @Option(help: "Candidates from each generator.") var candidates: Int = 100
    @Option(help: "lexical: BM25 only; hybrid: BM25 fused with embedding neighbours.") var mode: String = "hybrid"
    @Option(help: "Write the answer as JSON.") var json: String?
    @Flag(help: "Re-order the fused candidates with the model's GBDT ranker (trained on recommendation requests, so it favours what users pick over what the query says).")
    var rank = false
    @Option(name: .customLong("movielens"), help: .hidden) var movielens: String?

    func run() throws {
        guard let mode = SearchMode(rawValue: mode) else { throw ValidationError("--mode must be lexical or hybrid, not '\(self.mode)'") }
        let engine = try modelOptions.engine()
        let answer = try engine.search(query, k: k, mode: mode, candidates: candidates, rank: rank)
        if answer.items.isEmpty { print("no item matches '\(query)'") }
        try show(answer, header: "'\(query)' (\(mode.rawValue)), top \(k)", json: json)
    }
}
