import _FunnelKernels
#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Funnel's binary container: every model and index file is
///
///     magic (8 bytes) | format version (u32) | payload length (u64) | payload | CRC-32C (u32)
///
/// written atomically, with the checksum covering everything before it. Loaders check
/// the magic, the version, the length against the file size and the checksum before
/// they read the payload, and the payload readers check every count and offset.
public enum FunnelFile {
    /// Writes a container to `path` atomically; `body` writes the payload.
    public static func write(to path: String, magic: String, version: UInt32,
                             _ body: (inout PayloadWriter) throws -> Void) throws {
        precondition(magic.utf8.count == 8, "a magic is 8 ASCII bytes")
        var payload = PayloadWriter()
        try body(&payload)
        let bytes = payload.bytes
        try AtomicFile.write(to: path) { w in
            var head = [UInt8](magic.utf8)
            withUnsafeBytes(of: version.littleEndian) { head.append(contentsOf: $0) }
            withUnsafeBytes(of: UInt64(bytes.count).littleEndian) { head.append(contentsOf: $0) }
            var crc = head.withUnsafeBytes { fk_crc32c(0, $0.baseAddress, $0.count) }
            crc = bytes.withUnsafeBytes { fk_crc32c(crc, $0.baseAddress, $0.count) }
            try w.write(head)
            try w.write(bytes)
            try w.write(value: crc.littleEndian)
        }
    }

    /// Writes a container to `path` atomically without assembling the payload in memory:
    /// `body` streams exactly `payloadLength` bytes through the writer, which checksums them
    /// on the way to the file. For files as large as the data itself (a ten-million-item
    /// index), where `write(to:magic:version:_:)` would hold a second copy.
    /// - Throws: `PersistenceError.corrupt` if `body` writes another number of bytes (the
    ///   target is then untouched), or what the file system reports.
    public static func write(to path: String, magic: String, version: UInt32, payloadLength: Int,
                             streaming body: (inout PayloadStream) throws -> Void) throws {
        precondition(magic.utf8.count == 8, "a magic is 8 ASCII bytes")
        try AtomicFile.write(to: path) { w in
            var head = [UInt8](magic.utf8)
            withUnsafeBytes(of: version.littleEndian) { head.append(contentsOf: $0) }
            withUnsafeBytes(of: UInt64(payloadLength).littleEndian) { head.append(contentsOf: $0) }
            var stream = PayloadStream(writer: w, crc: head.withUnsafeBytes { fk_crc32c(0, $0.baseAddress, $0.count) })
            try stream.writer.write(head)
            try body(&stream)
            guard stream.written == payloadLength else {
                throw PersistenceError.corrupt(path: path, reason: "the payload was announced as \(payloadLength) bytes and \(stream.written) were written")
            }
            try stream.writer.write(value: stream.crc.littleEndian)
            w = stream.writer
        }
    }

    /// Reads a container, verifying magic, version and checksum; returns the version
    /// and a reader over the payload.
    public static func read(_ path: String, magic: String, versions: ClosedRange<UInt32>) throws -> (version: UInt32, payload: RawReader) {
        let file = try MappedFile(path: path)
        return try open(file, magic: magic, versions: versions)
    }

    /// Verifies a mapped container; the payload reader keeps the mapping alive.
    public static func open(_ file: MappedFile, magic: String, versions: ClosedRange<UInt32>) throws -> (version: UInt32, payload: RawReader) {
        let path = file.path
        let all = file.bytes
        let headSize = 8 + 4 + 8
        guard all.count >= headSize + 4 else {
            throw PersistenceError.corrupt(path: path, reason: "\(all.count) bytes is too short for a Funnel file (at least \(headSize + 4))")
        }
        let m = Array(all[0..<8])
        guard m == Array(magic.utf8) else {
            let shown = String(decoding: m.map { (32...126).contains($0) ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
            throw PersistenceError.corrupt(path: path, reason: "not a \(magic) file (its magic reads '\(shown)')")
        }
        let version = UInt32(littleEndian: all.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        guard versions.contains(version) else {
            throw PersistenceError.corrupt(path: path, reason: "format version \(version) is not supported (this build reads \(versions.lowerBound)...\(versions.upperBound))")
        }
        let length = UInt64(littleEndian: all.loadUnaligned(fromByteOffset: 12, as: UInt64.self))
        guard length == UInt64(all.count - headSize - 4) else {
            throw PersistenceError.corrupt(path: path, reason: "the header announces \(length) payload bytes, the file holds \(all.count - headSize - 4): truncated or padded")
        }
        let stored = UInt32(littleEndian: all.loadUnaligned(fromByteOffset: all.count - 4, as: UInt32.self))
        let actual = fk_crc32c(0, all.baseAddress, all.count - 4)
        guard stored == actual else {
            throw PersistenceError.corrupt(path: path, reason: String(format: "checksum mismatch (stored %08x, computed %08x): the file is corrupt", stored, actual))
        }
        let payload = UnsafeRawBufferPointer(rebasing: all[headSize..<(all.count - 4)])
        return (version, RawReader(payload, path: path, owner: file))
    }
}

/// Accumulates a payload in memory (little-endian values, raw arrays).
public struct PayloadWriter {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func write<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }
    public mutating func write(_ v: Float) { write(v.bitPattern) }
    public mutating func write(_ v: Double) { write(v.bitPattern) }
    /// Raw bytes of a buffer, prefixed by nothing: the reader must know the count.
    public mutating func write(raw: UnsafeRawBufferPointer) { bytes.append(contentsOf: raw) }
    public mutating func write<T: BitwiseCopyable>(array: [T]) {
        write(UInt64(array.count))
        array.withUnsafeBytes { bytes.append(contentsOf: $0) }
    }
    public mutating func write(string: String) { write(array: Array(string.utf8)) }
}

/// A payload streamed to its file (see `FunnelFile.write(to:magic:version:payloadLength:streaming:)`):
/// little-endian values and raw arrays, checksummed as they pass.
public struct PayloadStream {
    var writer: FileWriter
    var crc: UInt32
    /// Payload bytes written so far.
    public private(set) var written = 0

    init(writer: FileWriter, crc: UInt32) {
        self.writer = writer
        self.crc = crc
    }

    public mutating func write(raw: UnsafeRawBufferPointer) throws {
        crc = fk_crc32c(crc, raw.baseAddress, raw.count)
        written += raw.count
        try writer.write(raw)
    }
    public mutating func write<T: FixedWidthInteger>(_ v: T) throws {
        try withUnsafeBytes(of: v.littleEndian) { try write(raw: $0) }
    }
    public mutating func write(_ v: Float) throws { try write(v.bitPattern) }
    /// What a `PayloadWriter` holds (a small header assembled in memory).
    public mutating func write(_ payload: PayloadWriter) throws {
        try payload.bytes.withUnsafeBytes { try write(raw: $0) }
    }
}

/// A read-only file in memory: mapped with mmap, unmapped on release.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let bytes: UnsafeRawBufferPointer
    private let base: UnsafeMutableRawPointer?
    private let length: Int

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)  // a FIFO must not block the open
        guard fd >= 0 else { throw PersistenceError.io(path: path, operation: "open", errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw PersistenceError.io(path: path, operation: "stat", errno: errno) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw PersistenceError.corrupt(path: path, reason: "not a regular file") }
        length = Int(st.st_size)
        if length == 0 {
            base = nil
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let p = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw PersistenceError.io(path: path, operation: "mmap", errno: errno) }
        base = p
        bytes = UnsafeRawBufferPointer(start: p, count: length)
    }

    deinit {
        if let base { munmap(base, length) }
    }

    /// Lets the kernel drop the mapping's resident pages (after a loader has read them all
    /// to check them); later reads fault them back in from the file.
    public func dropResidentPages() {
        if let base { madvise(base, length, MADV_DONTNEED) }
    }
}

/// A bounds-checked cursor over raw bytes (a mapped file's payload, or an array's bytes
/// inside `withUnsafeBytes`): every read is checked against the end, so a truncated or
/// lying file produces an error naming what was being read, never a crash. The one
/// binary reader of the package.
public struct RawReader {
    public let bytes: UnsafeRawBufferPointer
    public let path: String
    /// Keeps the memory alive (a `MappedFile`).
    public let owner: AnyObject?
    public private(set) var offset = 0

    public init(_ bytes: UnsafeRawBufferPointer, path: String, owner: AnyObject?) {
        self.bytes = bytes
        self.path = path
        self.owner = owner
    }

    public var remaining: Int { bytes.count - offset }

    func corrupt(_ what: String, _ need: Int) -> PersistenceError {
        .corrupt(path: path, reason: "\(what) needs \(need) bytes at offset \(offset), \(remaining) remain")
    }

    public mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: String) throws -> T {
        let n = MemoryLayout<T>.size
        guard remaining >= n else { throw corrupt(what, n) }
        defer { offset += n }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// A big-endian integer (IDX files are big-endian).
    public mutating func readBigEndian<T: FixedWidthInteger>(_: T.Type, _ what: String) throws -> T {
        let n = MemoryLayout<T>.size
        guard remaining >= n else { throw corrupt(what, n) }
        defer { offset += n }
        return T(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// Skips `count` bytes.
    public mutating func skip(_ count: Int, _ what: String) throws { _ = try view(count, what) }

    public mutating func readFloat(_ what: String) throws -> Float { Float(bitPattern: try read(UInt32.self, what)) }
    public mutating func readDouble(_ what: String) throws -> Double { Double(bitPattern: try read(UInt64.self, what)) }

    /// A count, checked against an upper bound that a sane file cannot exceed.
    public mutating func readCount(_ what: String, max: Int) throws -> Int {
        let v = try read(UInt64.self, what)
        guard v <= UInt64(max) else {
            throw PersistenceError.corrupt(path: path, reason: "\(what) is \(v), more than the \(max) this file can hold")
        }
        return Int(v)
    }

    /// A view of the next `count` bytes, without copying.
    public mutating func view(_ count: Int, _ what: String) throws -> UnsafeRawBufferPointer {
        guard count >= 0, remaining >= count else { throw corrupt(what, count) }
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
    }

    /// A length-prefixed array written by `PayloadWriter.write(array:)`.
    public mutating func readArray<T: BitwiseCopyable>(_: T.Type, _ what: String, maxCount: Int) throws -> [T] {
        let n = try readCount("\(what) count", max: min(maxCount, remaining / max(1, MemoryLayout<T>.stride)))
        let raw = try view(n * MemoryLayout<T>.stride, what)
        return [T](unsafeUninitializedCapacity: n) { buf, c in
            UnsafeMutableRawBufferPointer(buf).copyMemory(from: raw)
            c = n
        }
    }

    public mutating func readString(_ what: String, maxLength: Int = 1 << 20) throws -> String {
        String(decoding: try readArray(UInt8.self, what, maxCount: maxLength), as: UTF8.self)
    }
}

/// CRC-32C (Castagnoli), hardware-accelerated where the CPU has SSE4.2.
public enum CRC32C {
    /// Continues `crc` over `bytes` (start from 0).
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        fk_crc32c(crc, bytes.baseAddress, bytes.count)
    }
}
