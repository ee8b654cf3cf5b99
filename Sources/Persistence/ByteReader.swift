#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Reads a whole file into memory.
public enum FileBytes {
    /// The bytes of the file at `path`.
    /// - Throws: `PersistenceError.io` naming the path and the system's reason.
    public static func read(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw PersistenceError.io(path: path, operation: "open", errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw PersistenceError.io(path: path, operation: "stat", errno: errno) }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            throw PersistenceError.io(path: path, operation: "read", errno: EISDIR)
        }
        let size = Int(st.st_size)
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        try bytes.withUnsafeMutableBytes { p in
            while done < size {
                let n = Glibc.read(fd, p.baseAddress! + done, size - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw PersistenceError.io(path: path, operation: "read", errno: errno)
                }
                if n == 0 { break }
                done += n
            }
        }
        if done < size { bytes.removeLast(size - done) }
        return bytes
    }
}

/// A cursor over bytes that checks every read against the end, so a truncated or
/// lying file produces an error naming what was being read, never a crash.
public struct ByteReader {
    public let bytes: [UInt8]
    public let path: String
    /// The next byte to read.
    public var offset: Int = 0

    public init(bytes: [UInt8], path: String) {
        self.bytes = bytes
        self.path = path
    }

    public var remaining: Int { bytes.count - offset }
    public var isAtEnd: Bool { offset >= bytes.count }

    /// Fails unless `count` more bytes exist.
    public func require(_ count: Int, for what: String) throws {
        guard count >= 0, count <= remaining else {
            throw PersistenceError.corrupt(
                path: path, reason: "truncated: \(what) needs \(count) bytes at offset \(offset), \(remaining) remain")
        }
    }

    private mutating func readRaw<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws -> T {
        try require(MemoryLayout<T>.size, for: what)
        var v: T = 0
        withUnsafeMutableBytes(of: &v) { dst in
            bytes.withUnsafeBytes { src in
                dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[offset..<(offset + MemoryLayout<T>.size)]))
            }
        }
        offset += MemoryLayout<T>.size
        return v
    }

    /// Reads a little-endian integer.
    public mutating func read<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws -> T {
        T(littleEndian: try readRaw(T.self, what))
    }

    /// Reads a big-endian integer (IDX files are big-endian).
    public mutating func readBigEndian<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws -> T {
        T(bigEndian: try readRaw(T.self, what))
    }

    public mutating func readFloat(_ what: String) throws -> Float {
        Float(bitPattern: try read(UInt32.self, what))
    }

    /// Reads `count` raw bytes.
    public mutating func readBytes(_ count: Int, _ what: String) throws -> ArraySlice<UInt8> {
        try require(count, for: what)
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    /// Skips `count` bytes.
    public mutating func skip(_ count: Int, _ what: String) throws {
        try require(count, for: what)
        offset += count
    }
}
