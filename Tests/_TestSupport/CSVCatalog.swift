import Datasets
import Engine
import Foundation
import TwoTower

/// A small generated catalog written as CSV files, with a schema that names a title, a
/// multi-valued category column (the tags), a creation time and a numeric attribute.
public struct CSVCatalog {
    public let folder: String
    public let catalog: SyntheticCatalog
    public let schema: FeatureSchema

    public init(users: Int = 200, items: Int = 400, interactions: Int = 8_000, seed: UInt64 = 7) throws {
        folder = NSTemporaryDirectory() + "funnel-engine-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var config = SyntheticCatalog.Config()
        config.users = users
        config.items = items
        config.interactions = interactions
        config.categories = 8
        config.tags = 30
        config.seed = seed
        catalog = SyntheticCatalog.generate(config, threads: 1)
        try catalog.writeCSV(to: folder)
        var s = DataSource.syntheticSchema
        s.items?.category = "tags"
        schema = s
    }

    public var source: DataSource {
        .csv(interactions: "\(folder)/interactions.csv", items: "\(folder)/items.csv", users: "\(folder)/users.csv", schema: schema)
    }

    public static func config() -> FunnelTrainingConfig {
        var c = FunnelTrainingConfig()
        c.towers.epochs = 2
        c.towers.dimension = 16
        c.towers.batchSize = 256
        c.ranker.rounds = 20
        c.ranker.minDataInLeaf = 20
        c.baselines = false
        c.indexThreads = 1
        return c
    }

    public func remove() { try? FileManager.default.removeItem(atPath: folder) }
}


/// A trained bundle over a generated CSV catalog, and its items' rows as written.
public struct TrainedWorld {
    public let cat: CSVCatalog
    public let folder: String
    /// Each item's CSV row as attribute values (what an item write would give).
    public let rows: [String: [String: AttributeValue]]

    public init() throws {
        cat = try CSVCatalog(users: 150, items: 300, interactions: 6_000)
        let funnel = try FunnelTrainer.train(try cat.source.load(), config: CSVCatalog.config())
        folder = "\(cat.folder)/bundle"
        try funnel.writeBundle(to: folder)
        let lines = try String(contentsOfFile: "\(cat.folder)/items.csv", encoding: .utf8).split(separator: "\n").map(String.init)
        let header = lines[0].split(separator: ",").map(String.init)
        var rows = [String: [String: AttributeValue]]()
        for line in lines.dropFirst() {
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            var a = [String: AttributeValue]()
            for (c, name) in header.enumerated().dropFirst() where !f[c].isEmpty { a[name] = .string(f[c]) }
            rows[f[0]] = a
        }
        self.rows = rows
    }

    public func engine() throws -> Engine { try Engine(folder: folder, inline: true, writable: true) }
}

