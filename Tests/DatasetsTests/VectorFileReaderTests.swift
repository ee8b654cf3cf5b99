import _TestSupport
import Foundation
import Testing
import Datasets
import LinearAlgebra

@Suite("Vector files read a slice at a time")
struct VectorFileReaderTests {
    /// Every slice, concatenated.
    func readAll(_ path: String, slice: Int) throws -> Matrix {
        let reader = try VectorFileReader(path: path)
        var values = [Float]()
        var sizes = [Int]()
        while let part = try reader.next(maxRows: slice) {
            values += part.storage
            sizes.append(part.rows)
        }
        #expect(reader.position == reader.rows)
        #expect(sizes.dropLast().allSatisfy { $0 == slice })
        return try Matrix(rows: reader.rows, columns: reader.columns, storage: values)
    }

    @Test("fvecs, bvecs and npy slices join to what the whole-file reader reads", arguments: [1, 7, 64, 1000])
    func slicesMatchWholeFile(slice: Int) throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let m = randomMatrix(203, 13, seed: 5)
        try VectorFile.writeFvecs(m, to: dir.file("a.fvecs"))
        #expect(try readAll(dir.file("a.fvecs"), slice: slice) == VectorFile.readMatrix(dir.file("a.fvecs")))
        try VectorFile.writeNpy(VectorSet(rows: m.rows, columns: m.columns, storage: .float32(m.storage)), to: dir.file("a.npy"))
        #expect(try readAll(dir.file("a.npy"), slice: slice) == m)
        let bytes = (0..<(50 * 9)).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        try VectorFile.writeBvecs(bytes, columns: 9, to: dir.file("b.bvecs"))
        #expect(try readAll(dir.file("b.bvecs"), slice: slice) == VectorFile.readMatrix(dir.file("b.bvecs")))
        try VectorFile.writeNpy(VectorSet(rows: 50, columns: 9, storage: .uint8(bytes)), to: dir.file("b.npy"))
        #expect(try readAll(dir.file("b.npy"), slice: slice).storage == bytes.map(Float.init))
    }

    @Test("a cut record, a record of another dimension, NaN and an unstreamable format are refused with the file's name")
    func malformed() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let m = randomMatrix(10, 4, seed: 2)
        try VectorFile.writeFvecs(m, to: dir.file("a.fvecs"))
        var bytes = bytesOf(dir.file("a.fvecs"))
        try Data(bytes.dropLast(3)).write(to: URL(fileURLWithPath: dir.file("cut.fvecs")))
        #expect(throws: DatasetError.self) { try VectorFileReader(path: dir.file("cut.fvecs")) }
        // Record 6 claims dimension 5 (the file size still divides).
        bytes[6 * 20] = 5
        try Data(bytes).write(to: URL(fileURLWithPath: dir.file("dim.fvecs")))
        let r = try VectorFileReader(path: dir.file("dim.fvecs"))
        _ = try r.next(maxRows: 6)
        #expect(throws: DatasetError.inconsistentDimension(path: dir.file("dim.fvecs"), record: 6, expected: 4, got: 5)) { try r.next(maxRows: 6) }
        var nan = m
        nan[3, 2] = .nan
        try VectorFile.writeFvecs(nan, to: dir.file("nan.fvecs"))
        #expect(throws: DatasetError.nonFinite(path: dir.file("nan.fvecs"), row: 3, column: 2)) {
            let r = try VectorFileReader(path: dir.file("nan.fvecs"))
            while try r.next(maxRows: 2) != nil {}
        }
        try VectorFile.writeIDX(VectorSet(rows: 2, columns: 2, storage: .float32([1, 2, 3, 4])), to: dir.file("x-idx3-ubyte"))
        #expect(throws: DatasetError.self) { try VectorFileReader(path: dir.file("x-idx3-ubyte"), format: .idx) }
        #expect(throws: DatasetError.self) { try VectorFileReader(path: dir.file("missing.fvecs")) }
    }
}
