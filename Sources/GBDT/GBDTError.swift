/// Errors from training, loading or applying a gradient-boosted model.
public enum GBDTError: Error, CustomStringConvertible, Equatable {
    case invalidParameter(String)
    case invalidData(String)
    case featureCountMismatch(expected: Int, got: Int)
    case corruptModel(path: String, reason: String)

    public var description: String {
        switch self {
        case .invalidParameter(let s): return "invalid parameter: \(s)"
        case .invalidData(let s): return "invalid data: \(s)"
        case .featureCountMismatch(let e, let g): return "the model uses \(e) features, the data has \(g)"
        case .corruptModel(let p, let r): return "\(p): \(r)"
        }
    }
}
