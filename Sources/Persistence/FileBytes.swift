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
        // O_NONBLOCK: opening a FIFO must not wait for a writer; only regular files are read.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw PersistenceError.io(path: path, operation: "open", errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw PersistenceError.io(path: path, operation: "stat", errno: errno) }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            throw PersistenceError.io(path: path, operation: "read", errno: EISDIR)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw PersistenceError.corrupt(path: path, reason: "not a regular file (a FIFO, socket or device)")
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
