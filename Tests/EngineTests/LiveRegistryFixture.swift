import Engine
import Foundation
import Registry
import _TestSupport

/// A trained catalog registered as shop v1 (production), served by a `LiveService` with a
/// write-ahead log: the start of the retrain loop's tests.
struct LiveRegistryFixture {
    let world: TrainedWorld
    let root: String
    let registry: ModelRegistry
    let wal: String
    let models: LiveModels
    let live: LiveService

    init() throws {
        world = try TrainedWorld()
        root = "\(world.cat.folder)/registry"
        registry = ModelRegistry(root: root)
        let copy = "\(world.cat.folder)/copy"
        try FileManager.default.copyItem(atPath: world.folder, toPath: copy)
        try registry.promote("shop", version: try registry.register("shop", from: copy, dataFingerprint: "x").version)
        wal = "\(root)/shop.wal"
        models = try LiveModels(root: root, name: "shop", writable: true)
        live = try LiveService(models: models, logPath: wal)
    }

    /// Retrains production on the whole log (one epoch, folded through its last record),
    /// registers the result as the next version and promotes it.
    @discardableResult
    func retrainFromLogAndPromote() throws -> (base: Engine, changes: Retraining.LoggedChanges, bundle: ModelBundle, result: Retraining.Result) {
        let base = try Engine(folder: registry.folder("shop", try registry.current("shop")))
        let changes = try Retraining.changes(inLog: wal, over: base)
        var options = Retraining.Options()
        options.epochs = 1
        options.changeLogThrough = changes.through
        let (bundle, result) = try Retraining.retrain(base, interactions: changes.interactions, items: changes.items,
                                                      options: options, to: "\(world.cat.folder)/v2")
        let v2 = try registry.register("shop", from: bundle.folder, dataFingerprint: bundle.manifest.dataFingerprint)
        try registry.promote("shop", version: v2.version)
        return (base, changes, bundle, result)
    }
}
