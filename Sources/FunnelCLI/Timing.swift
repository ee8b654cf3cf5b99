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
