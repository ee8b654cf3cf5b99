import Foundation

/// A fresh directory under the system temp folder, removed by `cleanup()`: shared by the
/// test bundles (files written by one test never meet another's).
public struct TempDir: Sendable {
    public let path: String

    public init(_ prefix: String = "funnel-test") {
        path = NSTemporaryDirectory() + "\(prefix)-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    public func file(_ name: String) -> String { "\(path)/\(name)" }

    @discardableResult
    public func write(_ name: String, _ text: String) -> String {
        let p = file(name)
        try! text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    @discardableResult
    public func write(_ name: String, bytes: [UInt8]) -> String {
        let p = file(name)
        FileManager.default.createFile(atPath: p, contents: Data(bytes))
        return p
    }

    public func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}
