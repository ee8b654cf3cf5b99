/// A dense, row-major matrix of `Float`.
///
/// Rows are contiguous, so a row is a vector that BLAS and the distance kernels
/// read in place. The storage is a Swift array: copy-on-write, value semantics.
public struct Matrix: Sendable, Equatable {
    /// Number of rows (vectors).
    public let rows: Int
    /// Number of columns (the dimension of each row vector).
    public let columns: Int
    /// The elements, row after row: element (r, c) is at `r * columns + c`.
    public var storage: [Float]

    /// A matrix with every element set to `value`.
    /// - Complexity: O(rows * columns).
    public init(rows: Int, columns: Int, repeating value: Float = 0) {
        precondition(rows >= 0 && columns >= 0, "matrix shape must be non-negative")
        self.rows = rows
        self.columns = columns
        self.storage = [Float](repeating: value, count: rows * columns)
    }

    /// A matrix over existing row-major storage.
    /// - Throws: `LinearAlgebraError.shapeMismatch` when `storage.count != rows * columns`.
    public init(rows: Int, columns: Int, storage: [Float]) throws {
        guard rows >= 0, columns >= 0, storage.count == rows * columns else {
            throw LinearAlgebraError.shapeMismatch(
                "storage holds \(storage.count) floats, a \(rows) x \(columns) matrix needs \(max(0, rows * columns))")
        }
        self.rows = rows
        self.columns = columns
        self.storage = storage
    }

    /// A matrix from an array of equally long rows.
    /// - Throws: `LinearAlgebraError.shapeMismatch` when the rows differ in length.
    public init(rowArrays: [[Float]]) throws {
        let columns = rowArrays.first?.count ?? 0
        var storage = [Float]()
        storage.reserveCapacity(rowArrays.count * columns)
        for (i, row) in rowArrays.enumerated() {
            guard row.count == columns else {
                throw LinearAlgebraError.shapeMismatch("row \(i) has \(row.count) columns, row 0 has \(columns)")
            }
            storage.append(contentsOf: row)
        }
        try self.init(rows: rowArrays.count, columns: columns, storage: storage)
    }

    @inlinable
    public subscript(row: Int, column: Int) -> Float {
        get { storage[row * columns + column] }
        set { storage[row * columns + column] = newValue }
    }

    /// A copy of row `r`.
    public func row(_ r: Int) -> [Float] {
        precondition(r >= 0 && r < rows, "row \(r) out of range 0..<\(rows)")
        return Array(storage[(r * columns)..<((r + 1) * columns)])
    }

    /// The rows `range` as a new matrix.
    public func rows(_ range: Range<Int>) -> Matrix {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "row range out of bounds")
        // Force-try is safe: the slice has exactly range.count * columns elements.
        return try! Matrix(rows: range.count, columns: columns,
                           storage: Array(storage[(range.lowerBound * columns)..<(range.upperBound * columns)]))
    }

    /// Appends the rows of `other`, which must have the same number of columns.
    public mutating func append(rows other: Matrix) throws {
        guard other.columns == columns || rows == 0 else {
            throw LinearAlgebraError.shapeMismatch("cannot append rows of \(other.columns) columns to \(columns)")
        }
        if rows == 0 {
            self = other
            return
        }
        storage.append(contentsOf: other.storage)
        self = try Matrix(rows: rows + other.rows, columns: columns, storage: storage)
    }

    /// The transpose.
    /// - Complexity: O(rows * columns).
    public func transposed() -> Matrix {
        var t = Matrix(rows: columns, columns: rows)
        for r in 0..<rows {
            for c in 0..<columns {
                t.storage[c * rows + r] = storage[r * columns + c]
            }
        }
        return t
    }

    /// The index of the first element that is NaN or infinite, or nil when all are finite.
    public func firstNonFinite() -> (row: Int, column: Int)? {
        storage.withUnsafeBufferPointer { p in
            for i in 0..<p.count where !p[i].isFinite {
                return (i / max(columns, 1), i % max(columns, 1))
            }
            return nil
        }
    }
}

/// Errors from shapes and numbers handed to the linear-algebra layer.
public enum LinearAlgebraError: Error, CustomStringConvertible, Equatable {
    case shapeMismatch(String)
    case nonFinite(row: Int, column: Int)
    case lapack(routine: String, info: Int32)

    public var description: String {
        switch self {
        case .shapeMismatch(let why): return "shape mismatch: \(why)"
        case .nonFinite(let r, let c): return "non-finite value (NaN or infinity) at row \(r), column \(c)"
        case .lapack(let routine, let info): return "LAPACK \(routine) failed with info = \(info)"
        }
    }
}
