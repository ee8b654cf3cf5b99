#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Temporary files and folders that carry their owner, and the sweep that removes those
/// whose owner is gone.
///
/// Every temporary name Funnel writes beside a target holds a marker and the writing
/// process's id: `registry.fnl.tmp-4242-1234567` (AtomicFile), `.v3.partial-4242-UUID`
/// (a bundle being written), `.incoming-4242-UUID` (a bundle on its way into a registry).
/// A process killed mid-write leaves its temporary behind; the next registry command
/// sweeps it. A name whose process is still running (a concurrent writer) is left alone.
public enum Leftovers {
    /// The markers a temporary name carries, each followed by `<pid>-`.
    public static let markers = [".tmp-", ".partial-", ".incoming-"]

    /// The owner process of a temporary name, or nil when `name` is not one.
    public static func owner(of name: String) -> Int32? {
        for marker in markers {
            guard let r = name.range(of: marker) else { continue }
            let digits = name[r.upperBound...].prefix { $0.isNumber }
            guard !digits.isEmpty, name[r.upperBound...].dropFirst(digits.count).first == "-" else { continue }
            return Int32(digits)
        }
        return nil
    }

    /// Whether process `pid` is alive (a process we may not signal is alive too).
    public static func alive(_ pid: Int32) -> Bool {
        pid == getpid() || kill(pid, 0) == 0 || errno == EPERM
    }

    /// Removes the temporaries in `folder` (not below it) whose owner is gone.
    /// - Returns: the paths removed.
    @discardableResult
    public static func sweep(_ folder: String) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [] }
        var removed = [String]()
        for name in names {
            guard let pid = owner(of: name), !alive(pid) else { continue }
            let path = "\(folder)/\(name)"
            if (try? FileManager.default.removeItem(atPath: path)) != nil { removed.append(path) }
        }
        return removed
    }
}
