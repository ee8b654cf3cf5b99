import LinearAlgebra

/// The element type of a vector file.
public enum VectorElement: String, Sendable, Equatable {
    case float32, float64, uint8, int8, int16, int32

    public var byteWidth: Int {
        switch self {
        case .uint8, .int8: return 1
        case .int16: return 2
        case .float32, .int32: return 4
        case .float64: return 8
        }
    }
}

/// A set of equally long vectors as read from a file, in the file's element type.
public struct VectorSet: Sendable, Equatable {
    public enum Storage: Sendable, Equatable {
        case float32([Float])
        case uint8([UInt8])
        case int8([Int8])
        case int32([Int32])
    }

    public let rows: Int
    public let columns: Int
    public var storage: Storage

    public init(rows: Int, columns: Int, storage: Storage) {
        self.rows = rows
        self.columns = columns
        self.storage = storage
    }

    public var element: VectorElement {
        switch storage {
        case .float32: return .float32
        case .uint8: return .uint8
        case .int8: return .int8
        case .int32: return .int32
        }
    }

    /// The vectors as a Float matrix (integers convert exactly below 2^24).
    public func floatMatrix() -> Matrix {
        let values: [Float]
        switch storage {
        case .float32(let v): values = v
        case .uint8(let v): values = v.map { Float($0) }
        case .int8(let v): values = v.map { Float($0) }
        case .int32(let v): values = v.map { Float($0) }
        }
        // The loaders guarantee rows * columns elements.
        return try! Matrix(rows: rows, columns: columns, storage: values)
    }

    /// The vectors as Int32 (for ground-truth id files); nil for float data.
    public func int32Values() -> [Int32]? {
        switch storage {
        case .int32(let v): return v
        case .uint8(let v): return v.map { Int32($0) }
        case .int8(let v): return v.map { Int32($0) }
        case .float32: return nil
        }
    }

    /// The first `n` rows.
    public func prefix(_ n: Int) -> VectorSet {
        let r = max(0, min(n, rows)), e = r * columns
        switch storage {
        case .float32(let v): return VectorSet(rows: r, columns: columns, storage: .float32(Array(v[0..<e])))
        case .uint8(let v): return VectorSet(rows: r, columns: columns, storage: .uint8(Array(v[0..<e])))
        case .int8(let v): return VectorSet(rows: r, columns: columns, storage: .int8(Array(v[0..<e])))
        case .int32(let v): return VectorSet(rows: r, columns: columns, storage: .int32(Array(v[0..<e])))
        }
    }
}
