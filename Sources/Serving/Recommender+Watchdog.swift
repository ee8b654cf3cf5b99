import Dispatch
import Foundation
import Synchronization

extension Recommender {
    /// The top `k` items for `request`, given to `completion` (exactly once, never an
    /// error: every failure has a fallback, as in `recommend(_:k:)`).
    ///
    /// The stages run on the calling thread, and a `Watchdog` keeps the budgets: when
    /// retrieval or ranking is still running at its budget, the answer is made from the
    /// fallback on an `executor` thread and given at once; the late stage's result is
    /// dropped when it ends. The synchronous form hands the stages to another thread and
    /// waits, two thread wake-ups a request; under load (the HTTP server) those were a
    /// tenth of the CPU. Budgets are kept to within the watchdog's tick.
    public func recommend(_ request: Request, k: Int, completion answer: @escaping @Sendable (Recommendation) -> Void) {
        if inline { return answer(recommend(request, k: k)) }
        Load.inFlight.add(1, ordering: .relaxed)
        let completion: @Sendable (Recommendation) -> Void = { r in
            Load.inFlight.subtract(1, ordering: .relaxed)
            answer(r)
        }
        let start = DispatchTime.now().uptimeNanoseconds
        let rankAllowed = rank != nil && rankingBreaker.allow()
        guard retrievalBreaker.allow() else {
            var p = Progress(start: start, rankAllowed: rankAllowed)
            recover(from: "retrieval:circuit-open", request, &p)
            return completion(finish(request, k: k, p))
        }
        let ticket = StageTicket()
        let end = start + UInt64(max(0, deadline) * 1e9)
        let retrievalEnd = min(end, start + UInt64(max(0, retrievalBudget) * 1e9))
        watchdog.arm(at: retrievalEnd) { [self] in
            guard ticket.claim(.retrieving) else { return }
            retrievalBreaker.record(success: false)
            executor.run { [self] in
                var p = Progress(start: start, rankAllowed: rankAllowed)
                p.stages.append(("retrieval", p.elapsed))
                recover(from: "retrieval:timeout", request, &p)
                completion(finish(request, k: k, p))
            }
        }
        let retrieved = Result { try retrieve(request, candidates) }
        let retrievedAt = DispatchTime.now().uptimeNanoseconds
        var p = Progress(start: start, rankAllowed: rankAllowed)
        p.stages.append(("retrieval", Double(retrievedAt - start) / 1e9))
        guard case .success(let list) = retrieved else {
            guard ticket.claim(.retrieving) else { return }
            retrievalBreaker.record(success: false)
            recover(from: "retrieval:failed", request, &p)
            return completion(finish(request, k: k, p))
        }
        guard rankAllowed, let rank else {
            guard ticket.claim(.retrieving) else { return }
            retrievalBreaker.record(success: true)
            p.retrieved(list)
            return completion(finish(request, k: k, p))
        }
        guard ticket.advance() else { return }  // the watchdog answered: retrieval was late
        retrievalBreaker.record(success: true)
        p.retrieved(list)
        // What a late ranking falls back to, held by the ticket (not by the watchdog's job,
        // which outlives the request by the budget) and dropped when ranking ends in time.
        let fallback = Holder(p)
        watchdog.arm(at: min(end, retrievedAt + UInt64(max(0, rankingBudget) * 1e9))) { [self] in
            guard ticket.claim(.ranking), var q = fallback.take() else { return }
            q.ranking = .timeout
            q.rankingSeconds = Double(DispatchTime.now().uptimeNanoseconds - retrievedAt) / 1e9
            let late = q
            executor.run { [self] in completion(finish(request, k: k, late)) }
        }
        let ranked = Result { try rank(request, list) }
        guard ticket.claim(.ranking) else { return }
        _ = fallback.take()
        p.ranking = (try? ranked.get()).map { .success($0) } ?? .failed
        p.rankingSeconds = Double(DispatchTime.now().uptimeNanoseconds - retrievedAt) / 1e9
        completion(finish(request, k: k, p))
    }
}

/// Who answers one request: its caller, as long as each stage ends within its budget, or
/// the watchdog. Exactly one of them claims the answer.
final class StageTicket: Sendable {
    enum Phase: Int { case retrieving = 0, ranking = 1, answered = 2 }
    private let phase = Atomic<Int>(Phase.retrieving.rawValue)

    /// Takes the answer if the request is still in `expected`.
    func claim(_ expected: Phase) -> Bool {
        phase.compareExchange(expected: expected.rawValue, desired: Phase.answered.rawValue, ordering: .acquiringAndReleasing).exchanged
    }

    /// Retrieval ended in time: ranking starts (false: the watchdog has answered).
    func advance() -> Bool {
        phase.compareExchange(expected: Phase.retrieving.rawValue, desired: Phase.ranking.rawValue, ordering: .acquiringAndReleasing).exchanged
    }
}

/// A value one of two threads takes.
final class Holder<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T?
    init(_ value: T) { self.value = value }
    func take() -> T? {
        lock.lock(); defer { lock.unlock() }
        defer { value = nil }
        return value
    }
}

/// Runs jobs when their deadlines pass, on one thread that wakes at most once a `tick`
/// (a timer per request would wake a thread per request). A job must be quick: it runs on
/// the watchdog's thread (hand longer work to a `StageExecutor`). Jobs of requests that
/// ended in time still run at their deadline and find nothing to do.
public final class Watchdog: @unchecked Sendable {
    public static let shared = Watchdog(tick: 0.004)

    /// The most a job runs after its deadline (plus scheduling).
    public let tick: Double
    private let condition = NSCondition()
    private var deadlines = [UInt64]()
    private var jobs = [@Sendable () -> Void]()
    private var head = 0
    private var started = false

    public init(tick: Double) {
        self.tick = max(0.0001, tick)
    }

    /// Runs `job` once the uptime clock passes `deadline` (nanoseconds).
    /// - Complexity: O(1) for deadlines that come in order (budgets from now), O(pending) at worst.
    public func arm(at deadline: UInt64, _ job: @escaping @Sendable () -> Void) {
        condition.lock()
        defer { condition.unlock() }
        var i = deadlines.count
        while i > head && deadlines[i - 1] > deadline { i -= 1 }
        deadlines.insert(deadline, at: i)
        jobs.insert(job, at: i)
        if !started {
            started = true
            let thread = Thread { self.run() }  // never exits: the watchdog lives as long as the process
            thread.name = "funnel-watchdog"
            thread.start()
        }
        if i == head { condition.signal() }  // a new earliest deadline
    }

    private func run() {
        let tickNs = UInt64(tick * 1e9)
        condition.lock()
        while true {
            while head == deadlines.count { condition.wait() }
            let now = DispatchTime.now().uptimeNanoseconds
            if deadlines[head] > now {
                // Sleep to the earliest deadline, but at least a tick: expiries come in batches.
                let wait = max(deadlines[head] - now, tickNs)
                _ = condition.wait(until: Date(timeIntervalSinceNow: Double(wait) / 1e9))
                continue
            }
            var due = [@Sendable () -> Void]()
            while head < deadlines.count && deadlines[head] <= now {
                due.append(jobs[head])
                head += 1
            }
            if head > 1024 && head * 2 > deadlines.count {
                deadlines.removeFirst(head)
                jobs.removeFirst(head)
                head = 0
            }
            condition.unlock()
            for job in due { job() }
            condition.lock()
        }
    }
}
