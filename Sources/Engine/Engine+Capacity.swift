import Foundation
import LinearAlgebra
import Synchronization

/// What one engine can answer in-process: the yardstick a front end (the HTTP service) is
/// measured against, on the same bundle and the same requests.
public struct EngineCapacity: Sendable {
    /// Requests answered one at a time on one thread, and again from `threads` callers.
    public var requests: Int
    public var threads: Int
    /// One at a time: the mean wall time and its quantiles.
    public var meanSeconds: Double
    public var p50Seconds: Double
    public var p99Seconds: Double
    /// From `threads` callers at once: requests per second, and the process's CPU time
    /// (every thread, user and system) per request.
    public var concurrentRate: Double
    public var cpuSecondsPerRequest: Double

    /// Cores / CPU seconds per request (of the run with `threads` callers: one request at a
    /// time, a caller polls beside its stage and the CPU time counts the polling).
    public var capacity: Double { Double(Parallel.availableCores) / cpuSecondsPerRequest }
    /// Cores / mean wall time of one request alone: what perfect scaling over the cores
    /// would give (an upper bound the cores' shared caches and memory do not reach).
    public var idealCapacity: Double { Double(Parallel.availableCores) / meanSeconds }

    public var json: [String: Any] {
        ["requests": requests, "threads": threads, "mean_us": meanSeconds * 1e6, "p50_us": p50Seconds * 1e6, "p99_us": p99Seconds * 1e6,
         "concurrent_rps": concurrentRate, "cpu_us_per_request": cpuSecondsPerRequest * 1e6, "capacity_rps": capacity,
         "ideal_capacity_rps": idealCapacity, "cores": Parallel.availableCores]
    }
}

extension Engine {
    /// Answers `recommend(user:k:completion:)` (the fastest in-process form: the stages on
    /// the caller's thread, the budgets kept by the watchdog) for `users` in order, one at a
    /// time (after `warmUp` requests), then again from `threads` callers at once (default:
    /// one per core), and reports the rates.
    /// - Complexity: 2 x users.count requests.
    public func capacity(users: [String], k: Int, threads: Int, warmUp: Int = 200) throws -> EngineCapacity {
        guard !users.isEmpty else { throw EngineError.invalidRequest("no users to measure with") }
        func answer(_ user: String) throws {
            let done = DispatchSemaphore(value: 0)
            let failure = Mutex<Error?>(nil)
            recommend(user: user, k: k) { result in
                if case .failure(let e) = result { failure.withLock { $0 = e } }
                done.signal()
            }
            done.wait()
            if let e = failure.withLock({ $0 }) { throw e }
        }
        for n in 0..<min(warmUp, users.count) { try answer(users[n]) }
        var times = [Double]()
        times.reserveCapacity(users.count)
        let t0 = DispatchTime.now().uptimeNanoseconds
        for u in users {
            let a = DispatchTime.now().uptimeNanoseconds
            try answer(u)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - a) / 1e9)
        }
        let wall = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        times.sort()
        let callers = max(1, threads)
        let cpu0 = Self.processCPUSeconds(), c0 = DispatchTime.now().uptimeNanoseconds
        DispatchQueue.concurrentPerform(iterations: callers) { w in
            for n in stride(from: w, to: users.count, by: callers) { try? answer(users[n]) }
        }
        let concurrentWall = Double(DispatchTime.now().uptimeNanoseconds - c0) / 1e9, cpu = Self.processCPUSeconds() - cpu0
        return EngineCapacity(requests: users.count, threads: callers, meanSeconds: wall / Double(users.count),
                              p50Seconds: times[times.count / 2], p99Seconds: times[min(times.count - 1, times.count * 99 / 100)],
                              concurrentRate: Double(users.count) / concurrentWall, cpuSecondsPerRequest: cpu / Double(users.count))
    }

    /// CPU time of the whole process (every thread), user and system.
    static func processCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}
