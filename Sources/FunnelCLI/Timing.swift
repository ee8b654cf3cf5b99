import Dispatch
import Foundation

/// Wall-clock seconds since an arbitrary origin (monotonic).
func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// The q-quantile (0...1) of sorted values, by nearest rank.
func quantile(_ sorted: [Double], _ q: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let i = min(sorted.count - 1, max(0, Int((q * Double(sorted.count)).rounded(.up)) - 1))
    return sorted[i]
}

func fmt(_ x: Double, _ digits: Int = 1) -> String {
    guard x.isFinite else { return "-" }
    return String(format: "%.\(digits)f", x)
}

/// The process's own memory figures, from /proc/self/status (Linux).
enum ProcessMemory {
    /// Peak resident set size (VmHWM) in bytes, or nil where /proc does not tell.
    static var peakResidentBytes: Int? { field("VmHWM:") }
    /// Resident set size now (VmRSS) in bytes.
    static var residentBytes: Int? { field("VmRSS:") }

    private static func field(_ name: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name) }),
              let kb = Int(line.dropFirst(name.count).trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "")
        else { return nil }
        return kb * 1024
    }
}
