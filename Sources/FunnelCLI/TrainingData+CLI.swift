import Foundation
import Funnel

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
