import Datasets
import Foundation

/// Training data for the towers: the interaction log, the user and item attribute tables
/// aligned with the log's vocabularies (row i describes user or item i), the towers'
/// features, and the item columns a ranker and a content baseline read.
public struct TrainingData: Sendable {
    public var label: String
    public var log: InteractionLog
    public var users: AttributeTable
    public var items: AttributeTable
    public var userFeatures: EntityFeatures
    public var itemFeatures: EntityFeatures
    /// Item column of categories (categorical or multi-valued).
    public var category: String?
    /// Item column of creation times.
    public var createdAt: String?
    /// Item column that names an item for people (shown with served items, searched).
    public var title: String?
    /// The schema the data was read with: a bundle keeps it, so a model names its columns.
    public var schema: FeatureSchema?
    /// What loading noticed and the user should know (ids without attributes).
    public var notes: [String] = []

    public init(label: String, log: InteractionLog, users: AttributeTable, items: AttributeTable,
                userFeatures: EntityFeatures, itemFeatures: EntityFeatures, category: String? = nil, createdAt: String? = nil,
                title: String? = nil, schema: FeatureSchema? = nil) {
        self.label = label
        self.log = log
        self.users = users
        self.items = items
        self.userFeatures = userFeatures
        self.itemFeatures = itemFeatures
        self.category = category
        self.createdAt = createdAt
        self.title = title
        self.schema = schema
    }

    /// CSV files described by a schema (`FeatureSchema`; without one the log's columns are
    /// user_id, item_id and timestamp and the towers see ids only). Attribute files are
    /// optional; the users and items they describe that never interact are still part of
    /// the catalog (cold ones, embedded from their features), and ids of the log they lack
    /// get missing values (noted in `notes`). Ages are measured at the newest interaction.
    /// - Throws: `DatasetError` naming the file and line of a bad row, `TwoTowerError` for
    ///   a schema that does not fit the files.
    public static func csv(interactions: String, items: String? = nil, users: String? = nil,
                           schema: FeatureSchema = FeatureSchema()) throws -> TrainingData {
        try schema.validate()
        let delimiter = Character(schema.delimiter ?? ",")
        func table(_ file: String?, _ side: FeatureSchema.Side?, _ name: String, defaultKey: String) throws -> AttributeTable {
            guard let file else {
                if let side, !side.features.isEmpty || side.category != nil || side.createdAt != nil || side.title != nil {
                    throw TwoTowerError.invalidData("the schema describes \(name) features but no \(name) file was given")
                }
                return AttributeTable()
            }
            let side = side ?? FeatureSchema.Side(key: defaultKey, features: [])
            return try AttributeTable.readCSV(file, key: side.key, columns: FeatureSchema.columnSpecs(side), delimiter: delimiter)
        }
        let itemTable = try table(items, schema.items, "items", defaultKey: schema.interactions.item)
        let userTable = try table(users, schema.users, "users", defaultKey: schema.interactions.user)
        let columns = InteractionLog.Columns(user: schema.interactions.user, item: schema.interactions.item,
                                             timestamp: schema.interactions.timestamp, weight: schema.interactions.weight)
        let log = try InteractionLog.readCSV(interactions, columns: columns, delimiter: delimiter,
                                             users: userTable.keys, items: itemTable.keys, allowNewIDs: true)
        guard log.count > 0 else { throw DatasetError.empty(path: interactions) }
        var data = try build(label: (interactions as NSString).lastPathComponent, log: log, items: itemTable, users: userTable, schema: schema)
        // Name the files the missing attributes were looked for in.
        data.notes = data.notes.map { note in
            if let items, note.hasPrefix("items") { return note + " (\(items))" }
            if let users, note.hasPrefix("users") { return note + " (\(users))" }
            return note
        }
        return data
    }

    /// Training data from a log and attribute tables already read (any source: CSV files,
    /// MovieLens, a generator): the tables are aligned with the log's vocabularies and the
    /// towers' features built as `schema` describes. Every data source goes through here,
    /// so the same schema gives the same features whichever files the data came from.
    /// - Throws: `TwoTowerError` for a schema that does not fit the tables.
    public static func build(label: String, log: InteractionLog, items itemTable: AttributeTable, users userTable: AttributeTable,
                             schema: FeatureSchema) throws -> TrainingData {
        try schema.validate()
        let (alignedItems, itemsMissing) = itemTable.aligned(to: log.items)
        let (alignedUsers, usersMissing) = userTable.aligned(to: log.users)
        let now = log.timestamps.max() ?? 0
        let userFeatures = try EntityFeatures.build(count: log.users.count, table: alignedUsers,
                                                    features: FeatureSchema.featureSpecs(schema.users, now: now))
        let itemFeatures = try EntityFeatures.build(count: log.items.count, table: alignedItems,
                                                    features: FeatureSchema.featureSpecs(schema.items, now: now))
        var data = TrainingData(label: label, log: log, users: alignedUsers, items: alignedItems,
                                userFeatures: userFeatures, itemFeatures: itemFeatures,
                                category: schema.items?.category, createdAt: schema.items?.createdAt,
                                title: schema.items?.title, schema: schema)
        if itemTable.count > 0, itemsMissing > 0 { data.notes.append("items: \(itemsMissing) of the log have no attributes; theirs are missing") }
        if userTable.count > 0, usersMissing > 0 { data.notes.append("users: \(usersMissing) of the log have no attributes; theirs are missing") }
        return data
    }

    /// Each item's categories (codes into the category column's vocabulary) and how many
    /// categories there are, when a category column is known.
    public func itemCategories() -> (count: Int, lists: [[Int32]])? {
        guard let category else { return nil }
        switch items.columns[category] {
        case .categorical(let v, let codes)?: return (v.count, codes.map { $0 >= 0 ? [$0] : [] })
        case .multiCategorical(let v, let offsets, let codes)?:
            return (v.count, (0..<items.count).map { Array(codes[Int(offsets[$0])..<Int(offsets[$0 + 1])]) })
        default: return nil
        }
    }
}
