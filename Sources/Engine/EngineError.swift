/// Errors of the engine layer, each naming what is wrong and where.
public enum EngineError: Error, CustomStringConvertible, Equatable {
    /// Training data or a catalog that cannot make a funnel.
    case invalidData(String)
    /// A bundle file that is missing, of the wrong size or checksum, or disagrees with the others.
    case corruptBundle(folder: String, file: String, reason: String)
    /// A request naming a user or item the model does not know.
    case unknown(kind: String, id: String)
    /// A request that is wrong in itself (k out of range, a bad vector, a bad mode).
    case invalidRequest(String)

    public var description: String {
        switch self {
        case .invalidData(let s): return "invalid data: \(s)"
        case let .corruptBundle(folder, file, reason): return "bundle \(folder): \(file): \(reason)"
        case let .unknown(kind, id): return "unknown \(kind) '\(id)'"
        case .invalidRequest(let s): return "invalid request: \(s)"
        }
    }
}
