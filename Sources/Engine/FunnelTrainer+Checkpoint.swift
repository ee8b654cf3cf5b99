import Datasets
import Foundation
import Persistence
import TwoTower

/// A towers' checkpoint in a folder: `towers.fnl` (the model, checksummed) and
/// `towers.json` (how many epochs it holds and what it was trained on), each written
/// atomically, the model first. Rank 0 writes one after every epoch when
/// `FunnelTrainingConfig.checkpoint` names a folder; a run started again with the same
/// folder, data and settings (on any number of ranks) resumes after the last epoch saved,
/// and a finished run removes it.
struct TowerCheckpoint {
    let folder: String
    var modelPath: String { folder + "/towers.fnl" }
    var statePath: String { folder + "/towers.json" }

    /// What must match for a checkpoint to be resumed.
    static func identity(_ data: TrainingData, _ p: TwoTowerParameters) -> [String: Any] {
        ["interactions": data.log.count, "users": data.log.users.count, "items": data.log.items.count,
         "dimension": p.dimension, "hidden": p.hidden, "batch_size": p.batchSize, "epochs": p.epochs, "seed": Int(truncatingIfNeeded: p.seed)]
    }

    /// The checkpoint's epoch count after loading its weights into `model`; 0 when the
    /// folder holds none.
    /// - Throws: `EngineError.invalidData` when it was made for other data or settings, or
    ///   its files do not load (a checksum, a size).
    func resume(_ model: TwoTowerModel, data: TrainingData, parameters p: TwoTowerParameters) throws -> Int {
        guard FileManager.default.fileExists(atPath: statePath) else { return 0 }
        guard let bytes = FileManager.default.contents(atPath: statePath),
              let state = try? JSONSerialization.jsonObject(with: bytes) as? [String: Any],
              let epochs = state["epochs_done"] as? Int, let saved = state["identity"] as? [String: Any] else {
            throw EngineError.invalidData("\(statePath): not a towers checkpoint (remove the folder to train from the start)")
        }
        let now = Self.identity(data, p)
        for (k, v) in now where "\(saved[k] ?? "none")" != "\(v)" {
            throw EngineError.invalidData("\(folder): the checkpoint was made with \(k) = \(saved[k] ?? "none"), this run has \(v); "
                                          + "remove the folder to train from the start")
        }
        let (saved_, _, _) = try TwoTowerModel.load(from: modelPath)
        try model.adoptWeights(of: saved_)
        return epochs
    }

    /// Saves `model` as trained through `epoch`.
    func save(_ model: TwoTowerModel, epoch: Int, data: TrainingData, parameters p: TwoTowerParameters) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try model.save(to: modelPath, userIDs: data.log.users.keys, itemIDs: data.log.items.keys)
        let state: [String: Any] = ["epochs_done": epoch, "identity": Self.identity(data, p)]
        let json = try JSONSerialization.data(withJSONObject: state, options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(Array(json) + [10], to: statePath)
    }

    /// Removes the checkpoint once the run it belongs to has finished.
    func remove() {
        try? FileManager.default.removeItem(atPath: statePath)
        try? FileManager.default.removeItem(atPath: modelPath)
        try? FileManager.default.removeItem(atPath: folder)  // only when empty
    }
}
