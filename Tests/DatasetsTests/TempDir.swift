import Foundation

/// A fresh directory under the system temp folder, removed by `cleanup()`.
struct TempDir {
    let path: String

    init() {
        path = NSTemporaryDirectory() + "funnel-test-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    func write(_ name: String, _ text: String) -> String {
        let p = file(name)
        try! text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    func write(_ name: String, bytes: [UInt8]) -> String {
        let p = file(name)
        FileManager.default.createFile(atPath: p, contents: Data(bytes))
        return p
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}
