import Dispatch
import Foundation
import Synchronization

/// Work split across threads with dynamic scheduling.
public enum Parallel {
    /// The number of cores this process may use.
    public static var availableCores: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    /// Calls `body(block, worker)` once for every block in `0..<blocks`, on up to
    /// `threads` workers; a worker takes the next unclaimed block when it finishes one,
    /// so a slow core does not hold the others back. `worker` is in `0..<threads`
    /// and lets callers keep per-thread scratch buffers.
    public static func forEach(blocks: Int, threads: Int, _ body: (_ block: Int, _ worker: Int) -> Void) {
        let workers = max(1, min(threads, blocks))
        if workers == 1 {
            for b in 0..<blocks { body(b, 0) }
            return
        }
        let next = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            while true {
                let b = next.wrappingAdd(1, ordering: .relaxed).oldValue
                if b >= blocks { break }
                body(b, worker)
            }
        }
    }
}
