/// Errors from building, querying, saving or loading an HNSW index.
public enum HNSWError: Error, CustomStringConvertible, Equatable {
    case dimensionMismatch(expected: Int, got: Int)
    case nonFinite(row: Int, column: Int)
    case invalidParameter(String)
    case unknownLabel(UInt64)
    case duplicateLabel(UInt64)
    case readOnly
    case corruptFile(path: String, reason: String)

    public var description: String {
        switch self {
        case .dimensionMismatch(let e, let g): return "dimension mismatch: the index holds \(e)-d vectors, got \(g)-d"
        case .nonFinite(let r, let c): return "vector \(r) has a NaN or infinite value at column \(c)"
        case .invalidParameter(let why): return why
        case .unknownLabel(let l): return "no item with id \(l) in the index"
        case .duplicateLabel(let l): return "id \(l) is already in the index (use update to replace its vector)"
        case .readOnly: return "this index was loaded memory-mapped and is read-only; load it without mmap to modify it"
        case .corruptFile(let p, let r): return "\(p): \(r)"
        }
    }
}
