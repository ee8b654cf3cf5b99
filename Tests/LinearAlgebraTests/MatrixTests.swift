import LinearAlgebra
import Testing

@Suite("Matrix and BLAS wrappers")
struct MatrixTests {
    func naiveProduct(_ a: Matrix, _ ta: Bool, _ b: Matrix, _ tb: Bool) -> [Double] {
        let m = ta ? a.columns : a.rows, k = ta ? a.rows : a.columns, n = tb ? b.rows : b.columns
        var out = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k {
                    let x = ta ? a[p, i] : a[i, p]
                    let y = tb ? b[j, p] : b[p, j]
                    s += Double(x) * Double(y)
                }
                out[i * n + j] = s
            }
        }
        return out
    }

    func random(_ r: Int, _ c: Int, _ seed: UInt64) -> Matrix {
        var rng = SeededGenerator(seed: seed)
        var m = Matrix(rows: r, columns: c)
        for i in m.storage.indices { m.storage[i] = rng.nextGaussian() }
        return m
    }

    @Test("gemm matches a naive triple loop for every transpose combination",
          arguments: [(1, 1, 1), (3, 5, 7), (17, 9, 33), (64, 70, 5)], [false, true])
    func gemm(shape: (Int, Int, Int), transposeA: Bool) throws {
        let (m, k, n) = shape
        for transposeB in [false, true] {
            let a = transposeA ? random(k, m, 1) : random(m, k, 1)
            let b = transposeB ? random(n, k, 2) : random(k, n, 2)
            let c = try Matrix.multiply(a, transposeA: transposeA, b, transposeB: transposeB)
            let ref = naiveProduct(a, transposeA, b, transposeB)
            #expect(c.rows == m && c.columns == n)
            for i in ref.indices { #expect(abs(Double(c.storage[i]) - ref[i]) <= 1e-4 * Double(k)) }
        }
    }

    @Test("gemm with beta accumulates into C")
    func gemmBeta() throws {
        let a = random(4, 3, 5), b = random(3, 6, 6)
        var c = random(4, 6, 7)
        let before = c
        try Matrix.gemm(a, b, alpha: 2, beta: 0.5, into: &c)
        let ref = naiveProduct(a, false, b, false)
        for i in ref.indices { #expect(abs(Double(c.storage[i]) - (2 * ref[i] + 0.5 * Double(before.storage[i]))) <= 1e-4) }
    }

    @Test("gemv matches gemm with one column, both orientations")
    func gemv() throws {
        let a = random(7, 5, 8)
        let x = (0..<5).map { Float($0) - 2 }
        var y = [Float](repeating: 0, count: 7)
        try a.gemv(x, into: &y)
        let ref = naiveProduct(a, false, try Matrix(rows: 5, columns: 1, storage: x), false)
        for i in 0..<7 { #expect(abs(Double(y[i]) - ref[i]) <= 1e-4) }
        let xt = (0..<7).map { Float($0) * 0.5 }
        var yt = [Float](repeating: 0, count: 5)
        try a.gemv(xt, transpose: true, into: &yt)
        let reft = naiveProduct(a, true, try Matrix(rows: 7, columns: 1, storage: xt), false)
        for i in 0..<5 { #expect(abs(Double(yt[i]) - reft[i]) <= 1e-4) }
    }

    @Test("shape errors are reported, not crashed on")
    func shapeErrors() {
        let a = random(3, 4, 1), b = random(5, 2, 2)
        var c = Matrix(rows: 3, columns: 2)
        #expect(throws: LinearAlgebraError.self) { try Matrix.gemm(a, b, into: &c) }
        #expect(throws: LinearAlgebraError.self) { try Matrix(rows: 2, columns: 2, storage: [1, 2, 3]) }
        var y = [Float](repeating: 0, count: 2)
        #expect(throws: LinearAlgebraError.self) { try a.gemv([1, 2], into: &y) }
    }

    @Test("normalizeRows gives unit rows and leaves zero rows alone")
    func normalize() {
        var m = random(10, 9, 4)
        for c in 0..<9 { m[3, c] = 0 }
        m.normalizeRows()
        let norms = m.rowSquaredNorms()
        for (i, n) in norms.enumerated() { #expect(i == 3 ? n == 0 : abs(n - 1) < 1e-5) }
    }

    @Test("transpose twice is the identity")
    func transpose() {
        let m = random(5, 8, 9)
        #expect(m.transposed().transposed() == m)
        #expect(m.transposed()[2, 4] == m[4, 2])
    }
}

@Suite("OpenBLAS core selection") struct BLASCoreTests {
    @Test("a core below the CPU is raised to the best class OpenBLAS has for it; a good one is kept")
    func recommendation() {
        let avx512: CPUFeatures = [.avx2, .fma, .avx512f, .avx512bw, .avx512vl, .avx512dq]
        let avx2: CPUFeatures = [.avx2, .fma]
        #expect(BLASCore.recommended(core: "Prescott", cpu: avx512) == "SkylakeX")
        #expect(BLASCore.recommended(core: "Haswell", cpu: avx512) == "SkylakeX")
        #expect(BLASCore.recommended(core: "Cooperlake", cpu: avx512) == nil)
        #expect(BLASCore.recommended(core: "SkylakeX", cpu: avx512) == nil)
        #expect(BLASCore.recommended(core: "Prescott", cpu: avx2) == "Haswell")
        #expect(BLASCore.recommended(core: "Zen", cpu: avx2) == nil)
        #expect(BLASCore.recommended(core: "Prescott", cpu: [.sse42]) == nil)
        // AVX-512F alone (no BW/VL/DQ) is not enough for the SkylakeX kernels.
        #expect(BLASCore.recommended(core: "Prescott", cpu: [.avx2, .fma, .avx512f]) == "Haswell")
        // Whatever this process runs, OpenBLAS reports a core name.
        #expect(!BLASCore.current.isEmpty)
    }
}
