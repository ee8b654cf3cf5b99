import CBLAS

/// Thin, checked wrappers over OpenBLAS.
public enum BLAS {
    /// The number of threads OpenBLAS itself uses for one call.
    ///
    /// Funnel parallelizes across query blocks with its own threads and sets this
    /// to 1 inside those regions; set it higher only when one large call runs alone.
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(max(1, newValue))) }
    }

    /// Runs `body` with OpenBLAS pinned to `n` threads, then restores the old count.
    public static func withThreads<R>(_ n: Int, _ body: () throws -> R) rethrows -> R {
        let old = threads
        if old != n { threads = n }
        defer { if old != n { threads = old } }
        return try body()
    }

    /// C = alpha * op(A) * op(B) + beta * C on raw row-major buffers.
    ///
    /// `op(A)` is m x k, `op(B)` is k x n, C is m x n with leading dimension `ldc`.
    /// - Complexity: O(m * n * k).
    @inlinable
    public static func sgemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        alpha: Float, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        cblas_sgemm(CblasRowMajor,
                    transposeA ? CblasTrans : CblasNoTrans,
                    transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb),
                    beta, c, Int32(ldc))
    }
}

extension Matrix {
    /// C = alpha * op(A) * op(B) + beta * C.
    /// - Throws: `LinearAlgebraError.shapeMismatch` when the shapes do not chain.
    /// - Complexity: O(m * n * k) floating-point operations, through `cblas_sgemm`.
    public static func gemm(
        _ a: Matrix, transposeA: Bool = false, _ b: Matrix, transposeB: Bool = false,
        alpha: Float = 1, beta: Float = 0, into c: inout Matrix
    ) throws {
        let (m, ka) = transposeA ? (a.columns, a.rows) : (a.rows, a.columns)
        let (kb, n) = transposeB ? (b.columns, b.rows) : (b.rows, b.columns)
        guard ka == kb else {
            throw LinearAlgebraError.shapeMismatch("inner dimensions differ: \(ka) vs \(kb)")
        }
        guard c.rows == m, c.columns == n else {
            throw LinearAlgebraError.shapeMismatch("output is \(c.rows) x \(c.columns), product is \(m) x \(n)")
        }
        if m == 0 || n == 0 { return }
        if ka == 0 {
            // BLAS leaves C untouched when k == 0 only if beta == 1; make the result explicit.
            for i in c.storage.indices { c.storage[i] *= beta }
            return
        }
        a.storage.withUnsafeBufferPointer { pa in
            b.storage.withUnsafeBufferPointer { pb in
                c.storage.withUnsafeMutableBufferPointer { pc in
                    BLAS.sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: ka,
                               alpha: alpha, a: pa.baseAddress!, lda: max(1, a.columns),
                               b: pb.baseAddress!, ldb: max(1, b.columns),
                               beta: beta, c: pc.baseAddress!, ldc: max(1, n))
                }
            }
        }
    }

    /// op(A) * op(B) as a new matrix.
    public static func multiply(_ a: Matrix, transposeA: Bool = false,
                                _ b: Matrix, transposeB: Bool = false) throws -> Matrix {
        let m = transposeA ? a.columns : a.rows
        let n = transposeB ? b.rows : b.columns
        var c = Matrix(rows: m, columns: n)
        try gemm(a, transposeA: transposeA, b, transposeB: transposeB, into: &c)
        return c
    }

    /// y = alpha * op(A) * x + beta * y.
    /// - Complexity: O(rows * columns), through `cblas_sgemv`.
    public func gemv(_ x: [Float], transpose: Bool = false, alpha: Float = 1,
                     beta: Float = 0, into y: inout [Float]) throws {
        let (outLen, inLen) = transpose ? (columns, rows) : (rows, columns)
        guard x.count == inLen else {
            throw LinearAlgebraError.shapeMismatch("vector has \(x.count) elements, matrix needs \(inLen)")
        }
        guard y.count == outLen else {
            throw LinearAlgebraError.shapeMismatch("output has \(y.count) elements, product has \(outLen)")
        }
        if rows == 0 || columns == 0 {
            for i in y.indices { y[i] *= beta }
            return
        }
        storage.withUnsafeBufferPointer { pa in
            x.withUnsafeBufferPointer { px in
                y.withUnsafeMutableBufferPointer { py in
                    cblas_sgemv(CblasRowMajor, transpose ? CblasTrans : CblasNoTrans,
                                Int32(rows), Int32(columns), alpha, pa.baseAddress!, Int32(columns),
                                px.baseAddress!, 1, beta, py.baseAddress!, 1)
                }
            }
        }
    }

    /// The squared Euclidean norm of every row.
    /// - Complexity: O(rows * columns).
    public func rowSquaredNorms() -> [Float] {
        var out = [Float](repeating: 0, count: rows)
        storage.withUnsafeBufferPointer { p in
            guard let base = p.baseAddress else { return }
            for r in 0..<rows { out[r] = Distance.squaredNorm(base + r * columns, columns) }
        }
        return out
    }

    /// Scales every row to unit Euclidean norm; zero rows stay zero.
    public mutating func normalizeRows() {
        let cols = columns
        storage.withUnsafeMutableBufferPointer { p in
            guard let base = p.baseAddress else { return }
            for r in 0..<rows {
                let row = base + r * cols
                let n2 = Distance.squaredNorm(UnsafePointer(row), cols)
                guard n2 > 0 else { continue }
                let inv = 1 / n2.squareRoot()
                for c in 0..<cols { row[c] *= inv }
            }
        }
    }
}
