import ArgumentParser
import Foundation
import Funnel

/// Where `train` and `learning-curve` read their data: MovieLens, or CSV files with a schema.
struct TrainingSource: ParsableArguments {
    @Option(help: "MovieLens ml-100k folder (u.data, u.item, u.user).") var movielens: String?
    @Option(help: "Interaction log CSV with a header (instead of --movielens); columns from --schema, else user_id, item_id, timestamp.")
    var interactions: String?
    @Option(help: "Item attributes CSV (key column and feature columns from --schema).") var items: String?
    @Option(help: "User attributes CSV (key column and feature columns from --schema).") var users: String?
    @Option(help: "Feature schema JSON: interaction columns, and per side the key column and features (see FeatureSchema).")
    var schema: String?

    /// The data named on the command line.
    func load() throws -> TrainingData {
        switch (movielens, interactions) {
        case (let dir?, nil):
            guard items == nil, users == nil, schema == nil else {
                throw ValidationError("--items, --users and --schema go with --interactions, not --movielens")
            }
            return try TrainingData.movieLens(dir)
        case (nil, let file?):
            let data = try TrainingData.csv(interactions: file, items: items, users: users,
                                            schema: try schema.map(FeatureSchema.load) ?? FeatureSchema())
            for note in data.notes { print("note: \(note)") }
            return data
        default:
            throw ValidationError("give either --movielens DIR or --interactions FILE.csv")
        }
    }
}

extension TrainingData {
    /// ml-100k with the features of PROTOCOLS.md section 2.
    static func movieLens(_ directory: String) throws -> TrainingData {
        let ml = try MovieLens.load(directory: directory)
        let (u, i) = try TrainCommand.movieLensFeatures(ml)
        return TrainingData(label: "ml-100k", log: ml.interactions, users: ml.users, items: ml.items,
                            userFeatures: u, itemFeatures: i, category: "genres", createdAt: "release_date")
    }

    /// Ranking features over this data (requests replayed as of their time see only their past).
    func rankingFeatures() throws -> RankingFeatures {
        let attributes = try ItemAttributes(table: items.count == log.items.count ? items : AttributeTable(keys: log.items),
                                            category: category, createdAt: createdAt)
        return try RankingFeatures(items: attributes, statistics: InteractionStatistics(log: log))
    }
}
