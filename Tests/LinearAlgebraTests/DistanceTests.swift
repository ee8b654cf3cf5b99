import Testing
import LinearAlgebra
import _FunnelKernels
import Foundation

/// Naive double-precision oracles (index loops: cheap in debug and sanitizer builds).
func naiveDot(_ a: [Float], _ b: [Float]) -> Double {
    var s = 0.0
    for i in 0..<min(a.count, b.count) { s += Double(a[i]) * Double(b[i]) }
    return s
}
func naiveL2(_ a: [Float], _ b: [Float]) -> Double {
    var s = 0.0
    for i in 0..<min(a.count, b.count) { let t = Double(a[i]) - Double(b[i]); s += t * t }
    return s
}

func randomVector(_ n: Int, _ rng: inout SeededGenerator) -> [Float] { (0..<n).map { _ in rng.nextGaussian() } }

@Suite("Distance kernels against naive loops", .serialized)
struct DistanceTests {
    // Dimensions around every SIMD width and unroll boundary, plus a long one.
    static let dims = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 784, 1000]

    @Test("float dot and squared L2, SIMD and scalar paths", arguments: dims, [false, true])
    func floatKernels(dim: Int, scalar: Bool) {
        fk_force_scalar(scalar ? 1 : 0)
        defer { fk_force_scalar(0) }
        var rng = SeededGenerator(seed: UInt64(dim))
        for _ in 0..<5 {
            let a = randomVector(dim, &rng), b = randomVector(dim, &rng)
            let tol = 1e-5 * Double(dim).squareRoot() * 4
            #expect(abs(Double(Distance.dot(a, b)) - naiveDot(a, b)) <= tol * max(1, sqrt(naiveDot(a, a) * naiveDot(b, b))))
            #expect(abs(Double(Distance.squaredL2(a, b)) - naiveL2(a, b)) <= tol * max(1, naiveL2(a, b)))
        }
    }

    @Test("row scans equal pairwise kernels", arguments: [1, 5, 33, 128])
    func rowScans(dim: Int) {
        var rng = SeededGenerator(seed: 7)
        let q = randomVector(dim, &rng)
        let n = 37
        // Rows with a stride larger than the dimension.
        let stride = dim + 3
        let base = randomVector(n * stride, &rng)
        var l2 = [Float](repeating: 0, count: n), ip = [Float](repeating: 0, count: n)
        q.withUnsafeBufferPointer { qp in
            base.withUnsafeBufferPointer { bp in
                l2.withUnsafeMutableBufferPointer { Distance.squaredL2(query: qp.baseAddress!, rows: bp.baseAddress!, count: n, dimension: dim, stride: stride, into: $0.baseAddress!) }
                ip.withUnsafeMutableBufferPointer { Distance.dot(query: qp.baseAddress!, rows: bp.baseAddress!, count: n, dimension: dim, stride: stride, into: $0.baseAddress!) }
            }
        }
        for i in 0..<n {
            let row = Array(base[(i * stride)..<(i * stride + dim)])
            #expect(abs(Double(l2[i]) - naiveL2(q, row)) <= 1e-4 * max(1, naiveL2(q, row)))
            #expect(abs(Double(ip[i]) - naiveDot(q, row)) <= 1e-4 * max(1, sqrt(naiveDot(q, q) * naiveDot(row, row))))
        }
    }

    @Test("float16 conversion rounds like Swift's Float16, for every half value and edge cases", arguments: [false, true])
    func halfConversion(scalar: Bool) {
        fk_force_scalar(scalar ? 1 : 0)
        defer { fk_force_scalar(0) }
        // Every half bit pattern decodes to the value Swift's Float16 gives (NaNs stay NaN).
        for bits in 0...UInt16.max {
            let want = Float(Float16(bitPattern: bits)), got = fk_f16_to_f32(bits)
            #expect(want.isNaN ? got.isNaN : got.bitPattern == want.bitPattern, "bits \(bits)")
        }
        // Encoding: random floats over the whole half range, ties, subnormals, overflow.
        var rng = SeededGenerator(seed: 16)
        var values: [Float] = [0, -0, 1, -1, 65504, 65519.99, 65520, -65520, 1e-8, 2.98e-8, 5.96e-8, 6.1e-5,
                               .infinity, -.infinity, 1 + 1.0 / 2048, 1 + 3.0 / 2048, .leastNormalMagnitude]
        for _ in 0..<20_000 { values.append(Float(rng.nextGaussian()) * Float(pow(10, Double(rng.nextInt(below: 13)) - 8))) }
        var converted = [UInt16](repeating: 0, count: values.count)
        fk_to_half(values, &converted, values.count)
        for (v, h) in zip(values, converted) {
            #expect(fk_f32_to_f16(v) == Float16(v).bitPattern, "value \(v)")
            #expect(h == Float16(v).bitPattern, "value \(v) in a row")
        }
        var back = [Float](repeating: 0, count: values.count)
        fk_from_half(converted, &back, values.count)
        for (h, b) in zip(converted, back) { #expect(b.bitPattern == Float(Float16(bitPattern: h)).bitPattern) }
    }

    @Test("float-vs-half and half-vs-half distances, SIMD and scalar, against loops over the decoded values",
          arguments: dims, [false, true])
    func halfKernels(dim: Int, scalar: Bool) {
        fk_force_scalar(scalar ? 1 : 0)
        defer { fk_force_scalar(0) }
        var rng = SeededGenerator(seed: 61 &+ UInt64(dim))
        let q = randomVector(dim, &rng)
        let rows = (0..<6).map { _ in randomVector(dim, &rng).map { Float16($0).bitPattern } }
        let tol = 1e-5 * Double(dim).squareRoot() * 4
        for r in rows {
            let x = r.map { Float(Float16(bitPattern: $0)) }
            #expect(abs(Double(fk_l2sq_f16(q, r, dim)) - naiveL2(q, x)) <= tol * max(1, naiveL2(q, x)))
            #expect(abs(Double(fk_dot_f16(q, r, dim)) - naiveDot(q, x)) <= tol * max(1, sqrt(naiveDot(q, q) * naiveDot(x, x))))
            let y = rows[0].map { Float(Float16(bitPattern: $0)) }
            #expect(abs(Double(fk_l2sq_f16f16(r, rows[0], dim)) - naiveL2(x, y)) <= tol * max(1, naiveL2(x, y)))
            #expect(abs(Double(fk_dot_f16f16(r, rows[0], dim)) - naiveDot(x, y)) <= tol * max(1, sqrt(naiveDot(x, x) * naiveDot(y, y))))
        }
        // The graph batch (kinds 2 and 3): rows inside blocks with a stride and an offset.
        let stride = dim * 2 + 20, offset = 12
        var blocks = [UInt8](repeating: 0, count: rows.count * stride)
        for (i, r) in rows.enumerated() {
            r.withUnsafeBytes { src in for b in 0..<(dim * 2) { blocks[i * stride + offset + b] = src[b] } }
        }
        let ids: [UInt32] = [5, 0, 3, 3, 1, 4, 2]
        for (kind, oracle) in [(Int32(2), naiveL2), (3, naiveDot)] {
            var out = [Float](repeating: 0, count: ids.count)
            fk_distance_batch(kind, q, blocks, stride, offset, ids, ids.count, dim, &out)
            for (j, id) in ids.enumerated() {
                let x = rows[Int(id)].map { Float(Float16(bitPattern: $0)) }
                let want = oracle(q, x)
                #expect(abs(Double(out[j]) - want) <= tol * max(1, abs(want), sqrt(naiveDot(q, q) * naiveDot(x, x))))
            }
        }
    }

    @Test("Gram matrix equals pairwise dot products at every kernel level, every block and tail shape",
          arguments: [1, 3, 4, 5, 15, 16, 17, 21, 33, 47, 100], KernelLevelTests.levels)
    func gram(n: Int, level: Int) {
        fk_force_level(Int32(level))
        defer { fk_force_level(-1) }
        #expect(fk_simd_level() == Int32(level))
        var rng = SeededGenerator(seed: 5 &+ UInt64(n))
        for dim in [1, 7, 64] {
            let x = randomVector(n * dim, &rng)
            var g = [Float](repeating: .nan, count: n * n)
            fk_gram_f32(x, n, dim, &g)
            for i in 0..<n {
                for j in 0..<n {
                    let a = Array(x[(i * dim)..<((i + 1) * dim)]), b = Array(x[(j * dim)..<((j + 1) * dim)])
                    let want = naiveDot(a, b)
                    #expect(abs(Double(g[i * n + j]) - want) <= 1e-4 * max(1, sqrt(naiveDot(a, a) * naiveDot(b, b))), "level \(level) n \(n) dim \(dim) (\(i), \(j))")
                }
            }
        }
    }

    @Test("asymmetric int8 (int16 query, uint8 codes), single and batched, exact against Int64 sums",
          arguments: dims, [false, true])
    func asymmetricInt8(dim: Int, scalar: Bool) {
        fk_force_scalar(scalar ? 1 : 0)
        defer { fk_force_scalar(0) }
        var rng = SeededGenerator(seed: 77 &+ UInt64(dim))
        // The largest query magnitude the kernel's contract allows for this dimension.
        let limit = Int16(min(32767, Int(Int32.max) / (2 * 255 * max(1, (dim + 15) / 16)) - 1))
        let q = (0..<dim).map { j in j % 5 == 0 ? (j % 2 == 0 ? limit : -limit) : Int16(truncatingIfNeeded: rng.next()) % limit }
        let rows = (0..<7).map { r in (0..<dim).map { j in r == 0 ? UInt8(255) : UInt8(truncatingIfNeeded: rng.next() &+ UInt64(j)) } }
        func want(_ c: [UInt8]) -> Int64 { zip(q, c).reduce(0) { $0 + Int64($1.0) * Int64($1.1) } }
        for c in rows { #expect(Int64(fk_adc_dot_u8(q, c, dim)) == want(c)) }
        let stride = dim + 9, offset = 5
        var blocks = [UInt8](repeating: 0, count: rows.count * stride)
        for (i, c) in rows.enumerated() { for j in 0..<dim { blocks[i * stride + offset + j] = c[j] } }
        let ids: [UInt32] = [6, 0, 2, 2, 5, 1, 3, 4, 0]  // two blocks of four and a tail of one
        var out = [Float](repeating: 0, count: ids.count)
        fk_adc_batch_u8(q, blocks, stride, offset, ids, ids.count, dim, &out)
        for (j, id) in ids.enumerated() { #expect(Double(out[j]) == Double(Float(want(rows[Int(id)])))) }
    }

    @Test("int8 and uint8 kernels are exact, including extreme values", arguments: dims, [false, true])
    func integerKernels(dim: Int, scalar: Bool) {
        fk_force_scalar(scalar ? 1 : 0)
        defer { fk_force_scalar(0) }
        var rng = SeededGenerator(seed: 99 &+ UInt64(dim))
        for trial in 0..<4 {
            var a8 = (0..<dim).map { _ in Int8(truncatingIfNeeded: rng.next()) }
            var b8 = (0..<dim).map { _ in Int8(truncatingIfNeeded: rng.next()) }
            var au = (0..<dim).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            var bu = (0..<dim).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if trial == 0 {  // the extremes that overflow a careless 16-bit path
                a8 = Array(repeating: -128, count: dim); b8 = Array(repeating: 127, count: dim)
                au = Array(repeating: 255, count: dim); bu = Array(repeating: 0, count: dim)
            }
            let dot8 = zip(a8, b8).reduce(Int64(0)) { $0 + Int64($1.0) * Int64($1.1) }
            let l28 = zip(a8, b8).reduce(Int64(0)) { $0 + (Int64($1.0) - Int64($1.1)) * (Int64($1.0) - Int64($1.1)) }
            let dotu = zip(au, bu).reduce(Int64(0)) { $0 + Int64($1.0) * Int64($1.1) }
            let l2u = zip(au, bu).reduce(Int64(0)) { $0 + (Int64($1.0) - Int64($1.1)) * (Int64($1.0) - Int64($1.1)) }
            a8.withUnsafeBufferPointer { pa in b8.withUnsafeBufferPointer { pb in
                #expect(Distance.dot(pa.baseAddress!, pb.baseAddress!, dim) == dot8)
                #expect(Distance.squaredL2(pa.baseAddress!, pb.baseAddress!, dim) == l28)
            } }
            au.withUnsafeBufferPointer { pa in bu.withUnsafeBufferPointer { pb in
                #expect(Distance.dot(pa.baseAddress!, pb.baseAddress!, dim) == dotu)
                #expect(Distance.squaredL2(pa.baseAddress!, pb.baseAddress!, dim) == l2u)
            } }
        }
    }

    @Test("affine select keeps exactly the values below the threshold at every kernel level",
          arguments: [0, 1, 7, 8, 9, 15, 16, 17, 100, 1000], KernelLevelTests.levels)
    func affineSelect(n: Int, level: Int) {
        fk_force_level(Int32(level))
        defer { fk_force_level(-1) }
        #expect(fk_simd_level() == Int32(level))
        var rng = SeededGenerator(seed: 3 &+ UInt64(n))
        let x = randomVector(n, &rng), bias = randomVector(n, &rng)
        var idx = [UInt32](repeating: 0, count: n + 1), val = [Float](repeating: 0, count: n + 1)
        let count = fk_affine_select_below(x, bias, -2, n, 0.5, &idx, &val)
        let expected = (0..<n).filter { bias[$0] - 2 * x[$0] < 0.5 }
        #expect(Array(idx[0..<count].map(Int.init)) == expected)
        for j in 0..<count {
            #expect(abs(val[j] - (bias[Int(idx[j])] - 2 * x[Int(idx[j])])) <= 1e-5)
        }
        // Every lane kept (whole blocks of 16), and none.
        #expect(fk_affine_select_below(x, nil, 1, n, .infinity, &idx, &val) == n)
        #expect(Array(idx[0..<n].map(Int.init)) == Array(0..<n) && Array(val[0..<n]) == x)
        #expect(fk_affine_select_below(x, bias, 1, n, -.infinity, &idx, &val) == 0)
    }
}

@Suite("Kernel levels against the naive oracle", .serialized)
struct KernelLevelTests {
    /// Every level this CPU runs (scalar, AVX2+FMA, AVX-512, AVX-512 with VNNI), forced on this thread.
    static let levels = Array(0...Int(fk_simd_detected()))

    @Test("asymmetric int8 (int16 query, uint8 codes) at every level, exact, for dimensions that are not multiples of any width",
          arguments: levels, DistanceTests.dims + [5, 47, 111, 383])
    func asymmetricInt8AtEveryLevel(level: Int, dim: Int) {
        fk_force_level(Int32(level))
        defer { fk_force_level(-1) }
        #expect(fk_simd_level() == Int32(level))
        var rng = SeededGenerator(seed: UInt64(dim * 131 + level))
        // The kernel's contract: |q| small enough that no int32 partial sum overflows.
        let limit = Int16(min(32767, Int(Int32.max) / (255 * max(1, dim)) - 1))
        let q = (0..<dim).map { j in j % 7 == 0 ? (j % 2 == 0 ? limit : -limit) : Int16(truncatingIfNeeded: rng.next()) % max(1, limit) }
        let n = 9, stride = dim + 3, offset = 2
        var base = [UInt8](repeating: 0, count: n * stride)
        for i in 0..<(n * stride) { base[i] = i % 11 == 0 ? 255 : UInt8(truncatingIfNeeded: rng.next()) }
        func want(_ row: Int) -> Int64 {
            var s: Int64 = 0
            for j in 0..<dim { s += Int64(q[j]) * Int64(base[row * stride + offset + j]) }
            return s
        }
        for row in 0..<n {
            let got = base.withUnsafeBufferPointer { fk_adc_dot_u8(q, $0.baseAddress! + row * stride + offset, dim) }
            #expect(Int64(got) == want(row), "level \(level) dim \(dim) row \(row)")
        }
        for count in 1...n {
            let ids = (0..<count).map { UInt32((count - 1 - $0 * 2 + 2 * n) % n) }
            var out = [Float](repeating: .nan, count: count)
            fk_adc_batch_u8(q, base, stride, offset, ids, count, dim, &out)
            for (i, id) in ids.enumerated() {
                #expect(Double(out[i]) == Double(Float(want(Int(id)))), "level \(level) dim \(dim) count \(count)")
            }
        }
    }

    @Test("float and half dot and squared L2 at every level, for dimensions that are not multiples of any width",
          arguments: levels, DistanceTests.dims + [5, 47, 111, 383])
    func floatAtEveryLevel(level: Int, dim: Int) {
        fk_force_level(Int32(level))
        defer { fk_force_level(-1) }
        #expect(fk_simd_level() == Int32(level))
        var rng = SeededGenerator(seed: UInt64(dim * 31 + level))
        let tol = 1e-5 * Double(dim).squareRoot() * 4
        for _ in 0..<5 {
            let a = randomVector(dim, &rng), b = randomVector(dim, &rng)
            #expect(abs(Double(Distance.dot(a, b)) - naiveDot(a, b)) <= tol * max(1, sqrt(naiveDot(a, a) * naiveDot(b, b))))
            #expect(abs(Double(Distance.squaredL2(a, b)) - naiveL2(a, b)) <= tol * max(1, naiveL2(a, b)))
        }
        // The graph's batched kernel: rows at a stride, picked by id, 1 to 9 of them (tails of
        // four); float rows (kinds 0, 1) and half rows (kinds 2, 3, against the decoded values).
        let n = 9, stride = dim + 5
        let base = randomVector(n * stride, &rng), q = randomVector(dim, &rng)
        let halves = base.map { Float16($0).bitPattern }
        for count in 1...n {
            let ids = (0..<count).map { UInt32((count - 1 - $0) % n) }
            for kind in Int32(0)...3 {
                var out = [Float](repeating: 0, count: count)
                if kind < 2 {
                    base.withUnsafeBytes { fk_distance_batch(kind, q, $0.baseAddress!, stride * 4, 0, ids, count, dim, &out) }
                } else {
                    halves.withUnsafeBytes { fk_distance_batch(kind, q, $0.baseAddress!, stride * 2, 0, ids, count, dim, &out) }
                }
                for (i, id) in ids.enumerated() {
                    let at = Int(id) * stride
                    let row = kind < 2 ? Array(base[at..<(at + dim)]) : halves[at..<(at + dim)].map { Float(Float16(bitPattern: $0)) }
                    let l2 = kind % 2 == 0
                    let want = l2 ? naiveL2(q, row) : naiveDot(q, row)
                    let scale = l2 ? max(1, want) : max(1, sqrt(naiveDot(q, q) * naiveDot(row, row)))
                    #expect(abs(Double(out[i]) - want) <= tol * scale, "level \(level) dim \(dim) kind \(kind) count \(count)")
                }
            }
        }
    }
}
