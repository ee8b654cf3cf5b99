import ArgumentParser
import Foundation
import Funnel

/// Where `train`, `pipeline-eval` and `learning-curve` read their data: CSV files with a
/// schema (the general path), or the MovieLens shortcut.
struct TrainingSource: ParsableArguments {
    @Option(help: "MovieLens ml-100k folder (u.data, u.item, u.user): a shortcut for its files with a built-in schema.") var movielens: String?
    @Option(help: "Interaction log CSV with a header; columns from --schema, else user_id, item_id, timestamp.")
    var interactions: String?
    @Option(help: "Item attributes CSV (key column and feature columns from --schema).") var items: String?
    @Option(help: "User attributes CSV (key column and feature columns from --schema).") var users: String?
    @Option(help: "Feature schema JSON: interaction columns, and per side the key column, features, category, created_at and title.")
    var schema: String?

    var given: Bool { movielens != nil || interactions != nil }

    /// The data source named on the command line.
    func source() throws -> DataSource {
        switch (movielens, interactions) {
        case (let dir?, nil):
            guard items == nil, users == nil, schema == nil else {
                throw ValidationError("--items, --users and --schema go with --interactions, not --movielens")
            }
            return .movieLens(directory: dir)
        case (nil, let file?):
            return .csv(interactions: file, items: items, users: users, schema: try schema.map(FeatureSchema.load) ?? FeatureSchema())
        default:
            throw ValidationError("give either --interactions FILE.csv (with --items, --users, --schema) or --movielens DIR")
        }
    }

    /// The data, its notes printed.
    func load() throws -> TrainingData {
        let data = try source().load()
        for note in data.notes { print("note: \(note)") }
        return data
    }
}

/// Where a command finds a model: a bundle folder, or a name in a registry.
struct ModelOptions: ParsableArguments {
    @Option(help: "A model bundle folder, or a model name in the registry (production version; canary users get the canary).")
    var model: String
    @Option(help: "Registry root.") var registry: String = "indexes"
    @Option(name: .customLong("root"), help: .hidden) var rootAlias: String?

    var root: String { rootAlias ?? registry }

    /// Whether `--model` names a bundle folder rather than a registry model.
    var isFolder: Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: model, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    /// The bundle folder `--model` stands for, with its registry name and version when it
    /// came from the registry (the version `user` is routed to, when given).
    func resolve(user: String? = nil) throws -> (folder: String, name: String?, version: String?) {
        if isFolder { return (model, nil, nil) }
        let registry = ModelRegistry(root: root)
        let v = try user.map { try registry.route(model, userID: $0).version } ?? registry.current(model)
        return (try registry.checkedFolder(model, v), model, "v\(v.version)")
    }

    /// The kind of bundle `--model` stands for (read from its manifest alone).
    func kind() throws -> ModelBundle.Kind { try ModelBundle.manifest(of: try resolve().folder).kind }

    /// The engine for the model (the version `user` is routed to, when given).
    func engine(user: String? = nil, inline: Bool = false) throws -> Engine {
        let (folder, name, version) = try resolve(user: user)
        return try Engine(folder: folder, name: name, version: version, inline: inline)
    }
}
