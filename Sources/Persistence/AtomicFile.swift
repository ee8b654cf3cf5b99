#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Errors from reading or writing Funnel's files.
public enum PersistenceError: Error, CustomStringConvertible, Equatable {
    case io(path: String, operation: String, errno: Int32)
    case corrupt(path: String, reason: String)
    /// Another process (or another open of the same file here) holds the file's lock.
    case inUse(path: String, reason: String)

    public var description: String {
        switch self {
        case .inUse(let path, let reason):
            return "\(path): \(reason)"
        case .io(let path, let op, let e):
            return "\(op) failed for \(path): \(String(cString: strerror(e)))"
        case .corrupt(let path, let reason):
            return "\(path): \(reason)"
        }
    }
}

/// Writes files so that a crash or a full disk never leaves a half-written file in
/// place: the bytes go to a temporary file beside the target, are fsynced, renamed
/// over the target, and the directory is fsynced so the rename itself is durable.
public enum AtomicFile {
    /// Writes the bytes produced by `fill` to `path` atomically.
    ///
    /// `fill` receives a writer; everything it writes becomes the file's content only
    /// if it returns without throwing. On any error the old file (if any) is intact.
    public static func write(to path: String, _ fill: (inout FileWriter) throws -> Void) throws {
        let dir = directory(of: path)
        let tmp = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw PersistenceError.io(path: path, operation: "create", errno: errno) }
        var writer = FileWriter(fd: fd, path: tmp)
        do {
            try fill(&writer)
            try writer.flush()
            guard fsync(fd) == 0 else { throw PersistenceError.io(path: tmp, operation: "fsync", errno: errno) }
            guard close(fd) == 0 else {
                throw PersistenceError.io(path: tmp, operation: "close", errno: errno)
            }
        } catch {
            close(fd)
            unlink(tmp)
            // Name the file the caller asked for, not the temporary beside it.
            if case .io(let p, let op, let e) = error as? PersistenceError, p == tmp {
                throw PersistenceError.io(path: path, operation: op, errno: e)
            }
            throw error
        }
        guard rename(tmp, path) == 0 else {
            let e = errno
            unlink(tmp)
            throw PersistenceError.io(path: path, operation: "rename", errno: e)
        }
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            fsync(dfd)
            close(dfd)
        }
    }

    /// Writes `bytes` to `path` atomically.
    public static func write(_ bytes: [UInt8], to path: String) throws {
        try write(to: path) { w in try w.write(bytes) }
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let d = String(path[..<slash])
        return d.isEmpty ? "/" : d
    }
}

/// A buffered writer over a file descriptor, used inside `AtomicFile.write`.
public struct FileWriter {
    let fd: Int32
    let path: String
    private var buffer: [UInt8] = []
    private let capacity = 1 << 20
    /// Bytes written so far.
    public private(set) var offset: Int = 0

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
        buffer.reserveCapacity(capacity)
    }

    /// Appends raw bytes.
    public mutating func write(_ bytes: UnsafeRawBufferPointer) throws {
        offset += bytes.count
        if buffer.count + bytes.count <= capacity {
            buffer.append(contentsOf: bytes)
            return
        }
        try flush()
        if bytes.count >= capacity {
            try writeAll(bytes)
        } else {
            buffer.append(contentsOf: bytes)
        }
    }

    public mutating func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Appends the in-memory bytes of a trivial value (little-endian on every platform Funnel runs on).
    public mutating func write<T: BitwiseCopyable>(value: T) throws {
        try withUnsafeBytes(of: value) { try write($0) }
    }

    /// Appends the in-memory bytes of an array of trivial values.
    public mutating func write<T: BitwiseCopyable>(array: [T]) throws {
        try array.withUnsafeBytes { try write($0) }
    }

    mutating func flush() throws {
        if buffer.isEmpty { return }
        let b = buffer
        buffer.removeAll(keepingCapacity: true)
        try b.withUnsafeBytes { try writeAll($0) }
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw PersistenceError.io(path: path, operation: "write", errno: errno)
            }
            done += n
        }
    }
}
