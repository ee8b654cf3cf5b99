import Datasets
import Foundation
import TwoTower

/// Where a funnel's training data comes from. Every source yields the same value, a
/// `TrainingData` (interaction log, item and user attribute tables, feature schema and the
/// features built from it), and nothing downstream knows which source it was.
///
/// CSV files with a schema are the general path; MovieLens ml-100k is one adapter that
/// reads its own files into tables and describes them with a built-in schema
/// (`DataSource.movieLensSchema`), so ml-100k read as CSV with that schema trains the
/// same model.
public enum DataSource: Sendable {
    /// An interaction log CSV, optional item and user attribute CSVs, described by a schema.
    case csv(interactions: String, items: String? = nil, users: String? = nil, schema: FeatureSchema = FeatureSchema())
    /// A MovieLens ml-100k folder (u.data, u.item, u.user, u.genre).
    case movieLens(directory: String)
    /// A generated catalog (no files).
    case synthetic(SyntheticCatalog.Config)

    /// Reads the data and builds the towers' features.
    /// - Throws: `DatasetError` naming the file and line of a bad row, `TwoTowerError` for a
    ///   schema that does not fit the files.
    public func load() throws -> TrainingData {
        switch self {
        case let .csv(interactions, items, users, schema):
            return try TrainingData.csv(interactions: interactions, items: items, users: users, schema: schema)
        case .movieLens(let directory):
            let ml = try MovieLens.load(directory: directory)
            return try TrainingData.build(label: "ml-100k", log: ml.interactions, items: ml.items, users: ml.users,
                                          schema: Self.movieLensSchema)
        case .synthetic(let config):
            let catalog = SyntheticCatalog.generate(config)
            return try TrainingData.build(label: "generated", log: catalog.interactions, items: catalog.items, users: catalog.users,
                                          schema: Self.syntheticSchema)
        }
    }

    /// The features of PROTOCOLS.md section 2 for ml-100k: user id, age buckets, gender,
    /// occupation; item id, genres, release-year buckets; genres as categories, release
    /// dates as creation times, ratings as weights, titles as names.
    public static let movieLensSchema = FeatureSchema(
        interactions: .init(user: "user_id", item: "item_id", timestamp: "timestamp", weight: "rating"),
        users: .init(key: "user_id", features: [
            .init(column: "age", type: .numericBuckets, buckets: 8),
            .init(column: "gender", type: .categorical),
            .init(column: "occupation", type: .categorical),
        ]),
        items: .init(key: "item_id", features: [
            .init(column: "genres", type: .multiCategorical, separator: "|"),
            .init(column: "year", type: .numericBuckets, buckets: 10),
        ], category: "genres", createdAt: "release_date", title: "title"))

    /// The schema of `SyntheticCatalog`'s tables (and of the files `funnel generate catalog` writes).
    public static let syntheticSchema = FeatureSchema(
        interactions: .init(user: "user_id", item: "item_id", timestamp: "timestamp"),
        users: .init(key: "user_id", features: [
            .init(column: "region", type: .categorical),
            .init(column: "age", type: .numericBuckets, buckets: 8),
        ]),
        items: .init(key: "item_id", features: [
            .init(column: "category", type: .categorical),
            .init(column: "tags", type: .multiCategorical, separator: "|"),
            .init(column: "created_at", type: .age, buckets: 12),
            .init(column: "price", type: .numeric),
            .init(column: "title", type: .text, buckets: 4096),
        ], category: "category", createdAt: "created_at", title: "title"))
}

extension FeatureSchema {
    /// The schema as JSON (what `FeatureSchema.load` reads back).
    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}
