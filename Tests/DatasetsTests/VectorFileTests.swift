import _TestSupport
import Foundation
import Testing
import Datasets
import LinearAlgebra

func randomMatrix(_ r: Int, _ c: Int, seed: UInt64) -> Matrix {
    var rng = SeededGenerator(seed: seed)
    var m = Matrix(rows: r, columns: c)
    for i in m.storage.indices { m.storage[i] = rng.nextGaussian() }
    return m
}

func bytesOf(_ path: String) -> [UInt8] { Array(FileManager.default.contents(atPath: path)!) }

/// `bytes` with the first occurrence of `old` (ASCII) replaced by `new` of the same length.
func replacing(_ bytes: [UInt8], _ old: String, with new: String) -> [UInt8] {
    let o = Array(old.utf8), n = Array(new.utf8)
    precondition(o.count == n.count)
    var b = bytes
    for i in 0...(b.count - o.count) where Array(b[i..<(i + o.count)]) == o {
        b.replaceSubrange(i..<(i + o.count), with: n)
        return b
    }
    preconditionFailure("\(old) not found")
}

@Suite("Vector files: round trips and malformed input")
struct VectorFileTests {
    @Test("fvecs, npy and IDX round-trip float vectors", arguments: [(1, 1), (5, 3), (17, 128)])
    func floatRoundTrip(shape: (Int, Int)) throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let m = randomMatrix(shape.0, shape.1, seed: 1)
        try VectorFile.writeFvecs(m, to: dir.file("a.fvecs"))
        #expect(try VectorFile.readMatrix(dir.file("a.fvecs")) == m)
        let set = VectorSet(rows: m.rows, columns: m.columns, storage: .float32(m.storage))
        try VectorFile.writeNpy(set, to: dir.file("a.npy"))
        #expect(try VectorFile.read(dir.file("a.npy")) == set)
        try VectorFile.writeIDX(set, to: dir.file("a-idx3-ubyte"))
        #expect(try VectorFile.read(dir.file("a-idx3-ubyte")).floatMatrix() == m)
        // limit reads a prefix
        #expect(try VectorFile.readMatrix(dir.file("a.fvecs"), limit: 1) == m.rows(0..<1))
    }

    @Test("integer formats round-trip: ivecs, bvecs, npy uint8/int8/int32, IDX uint8/int32")
    func integerRoundTrip() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let ints: [Int32] = (0..<24).map { Int32($0 * 7 - 50) }
        try VectorFile.writeIvecs(ints, columns: 6, to: dir.file("g.ivecs"))
        let g = try VectorFile.read(dir.file("g.ivecs"))
        #expect(g.rows == 4 && g.columns == 6 && g.int32Values() == ints)
        let bytes: [UInt8] = (0..<30).map { UInt8($0 * 8 % 256) }
        try VectorFile.writeBvecs(bytes, columns: 10, to: dir.file("b.bvecs"))
        #expect(try VectorFile.read(dir.file("b.bvecs")) == VectorSet(rows: 3, columns: 10, storage: .uint8(bytes)))
        for set in [VectorSet(rows: 3, columns: 10, storage: .uint8(bytes)),
                    VectorSet(rows: 5, columns: 6, storage: .int8(bytes.map { Int8(bitPattern: $0) })),
                    VectorSet(rows: 4, columns: 6, storage: .int32(ints))] {
            try VectorFile.writeNpy(set, to: dir.file("x.npy"))
            #expect(try VectorFile.read(dir.file("x.npy")) == set)
            try VectorFile.writeIDX(set, to: dir.file("x.idx"))
            #expect(try VectorFile.read(dir.file("x.idx")) == set)
        }
        // A one-dimensional IDX file (labels) reads as one column.
        let labels = VectorSet(rows: 6, columns: 1, storage: .uint8([0, 1, 2, 3, 4, 5]))
        try VectorFile.writeIDX(labels, to: dir.file("l-idx1-ubyte"))
        #expect(try VectorFile.read(dir.file("l-idx1-ubyte")) == labels)
    }

    @Test("reads a NumPy header written by NumPy itself (version 1.0, padded)")
    func numpyHeader() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        // Bytes as np.save writes them for np.arange(6, dtype='<f4').reshape(2, 3).
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
        header += String(repeating: " ", count: 128 - 10 - header.count - 1) + "\n"
        var b: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.count), 0] + Array(header.utf8)
        for i in 0..<6 { withUnsafeBytes(of: Float(i).bitPattern.littleEndian) { b.append(contentsOf: $0) } }
        let set = try VectorFile.read(dir.write("n.npy", bytes: b))
        #expect(set.rows == 2 && set.columns == 3)
        #expect(set.floatMatrix().storage == [0, 1, 2, 3, 4, 5])
    }

    func expectError(_ path: String, _ check: (DatasetError) -> Bool, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try VectorFile.read(path)
            Issue.record("expected an error for \(path)", sourceLocation: sourceLocation)
        } catch let e as DatasetError {
            #expect(check(e), "unexpected error: \(e)", sourceLocation: sourceLocation)
            #expect(e.description.contains(path), sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected error type \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test("malformed texmex files: empty, truncated, inconsistent dimension, bad dimension, NaN, infinity")
    func malformedTexmex() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let m = randomMatrix(3, 4, seed: 2)
        try VectorFile.writeFvecs(m, to: dir.file("ok.fvecs"))
        let good = bytesOf(dir.file("ok.fvecs"))
        expectError(dir.write("empty.fvecs", bytes: [])) { if case .empty = $0 { return true }; return false }
        expectError(dir.write("cut.fvecs", bytes: Array(good.dropLast(3)))) { if case .truncated = $0 { return true }; return false }
        var dims = good
        // Record 1 claims 5 floats while the file size still divides into 20-byte records.
        dims[20] = 5
        expectError(dir.write("dims.fvecs", bytes: dims)) {
            if case .inconsistentDimension(_, let rec, 4, 5) = $0 { return rec == 1 }; return false
        }
        var zero = good
        zero[0] = 0
        expectError(dir.write("zero.fvecs", bytes: zero)) { if case .badFormat = $0 { return true }; return false }
        for (name, value) in [("nan.fvecs", Float.nan), ("inf.fvecs", Float.infinity)] {
            var bad = m
            bad[2, 1] = value
            try VectorFile.writeFvecs(bad, to: dir.file(name))
            expectError(dir.file(name)) { if case .nonFinite(_, 2, 1) = $0 { return true }; return false }
        }
    }

    @Test("malformed IDX and NPY: wrong magic, truncated, trailing bytes, unsupported dtype, Fortran order")
    func malformedIdxNpy() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let set = VectorSet(rows: 4, columns: 5, storage: .uint8((0..<20).map(UInt8.init)))
        try VectorFile.writeIDX(set, to: dir.file("ok.idx"))
        let idx = bytesOf(dir.file("ok.idx"))
        var magic = idx; magic[2] = 0x42
        expectError(dir.write("magic.idx", bytes: magic)) { if case .badFormat = $0 { return true }; return false }
        expectError(dir.write("cut.idx", bytes: Array(idx.dropLast(1)))) { if case .truncated = $0 { return true }; return false }
        expectError(dir.write("tail.idx", bytes: idx + [0])) { if case .badFormat = $0 { return true }; return false }
        expectError(dir.write("hdr.idx", bytes: Array(idx.prefix(6)))) { if case .truncated = $0 { return true }; return false }

        try VectorFile.writeNpy(set, to: dir.file("ok.npy"))
        let npy = bytesOf(dir.file("ok.npy"))
        var nm = npy; nm[1] = UInt8(ascii: "X")
        expectError(dir.write("magic.npy", bytes: nm)) { if case .badFormat = $0 { return true }; return false }
        expectError(dir.write("cut.npy", bytes: Array(npy.dropLast(2)))) { if case .truncated = $0 { return true }; return false }
        let f16 = replacing(npy, "'|u1'", with: "'<f2'")
        expectError(dir.write("f16.npy", bytes: f16)) { if case .badFormat(_, let r) = $0 { return r.contains("<f2") }; return false }
        let fortran = replacing(npy, "False", with: "True ")
        expectError(dir.write("f.npy", bytes: fortran)) { if case .badFormat(_, let r) = $0 { return r.contains("Fortran") }; return false }
        expectError(dir.write("nothing.npy", bytes: [])) { if case .empty = $0 { return true }; return false }
        expectError(dir.write("unknown.bin", bytes: [1, 2, 3])) { if case .badFormat = $0 { return true }; return false }
        #expect(throws: DatasetError.self) { try VectorFile.read(dir.file("missing.fvecs")) }
    }

    @Test("cutting or flipping bytes anywhere never crashes a loader", arguments: VectorFormat.allCases)
    func fuzz(format: VectorFormat) throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let m = randomMatrix(3, 5, seed: 9)
        let path = dir.file("f.\(format.rawValue)")
        switch format {
        case .fvecs: try VectorFile.writeFvecs(m, to: path)
        case .ivecs: try VectorFile.writeIvecs((0..<15).map(Int32.init), columns: 5, to: path)
        case .bvecs: try VectorFile.writeBvecs((0..<15).map(UInt8.init), columns: 5, to: path)
        case .idx: try VectorFile.writeIDX(VectorSet(rows: 3, columns: 5, storage: .float32(m.storage)), to: path)
        case .npy: try VectorFile.writeNpy(VectorSet(rows: 3, columns: 5, storage: .float32(m.storage)), to: path)
        }
        let good = bytesOf(path)
        var rng = SeededGenerator(seed: 77)
        let texmexRecord: Int? = [.fvecs: 24, .ivecs: 24, .bvecs: 9][format]
        for cut in 0..<good.count {
            if let r = texmexRecord, cut > 0, cut % r == 0 {
                // texmex files have no header: a cut at a record boundary is a shorter, valid file.
                #expect(try VectorFile.decode(Array(good.prefix(cut)), format: format, path: "cut").rows == cut / r)
            } else {
                #expect(throws: DatasetError.self) { try VectorFile.decode(Array(good.prefix(cut)), format: format, path: "cut") }
            }
        }
        for i in 0..<good.count {
            var b = good
            b[i] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
            // Either a clean error or a well-formed set: never a crash.
            if let s = try? VectorFile.decode(b, format: format, path: "flip") {
                #expect(s.rows >= 1 && s.columns >= 1)
            }
        }
    }
}
