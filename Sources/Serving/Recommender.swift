import Dispatch
import Foundation
import Rerank
import Synchronization

/// Stops calling a failing stage for a while, then lets one probe through.
///
/// Closed: calls pass. After `failureThreshold` consecutive failures it opens: calls are
/// refused until `cooldown` seconds pass; then one call is let through (half-open) and its
/// outcome closes or re-opens the breaker.
public final class CircuitBreaker: @unchecked Sendable {
    public let failureThreshold: Int
    public let cooldown: Double
    private let lock = NSLock()
    private var failures = 0
    private var openedAt: Double? = nil
    private let clock: () -> Double

    public init(failureThreshold: Int = 3, cooldown: Double = 5, clock: @escaping () -> Double = { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }) {
        self.failureThreshold = failureThreshold
        self.cooldown = cooldown
        self.clock = clock
    }

    /// Whether a call may go through now.
    public func allow() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard let opened = openedAt else { return true }
        if clock() - opened >= cooldown {
            openedAt = clock()  // half-open: this probe goes; others wait another cooldown
            return true
        }
        return false
    }

    public func record(success: Bool) {
        lock.lock()
        defer { lock.unlock() }
        if success {
            failures = 0
            openedAt = nil
        } else {
            failures += 1
            if failures >= failureThreshold { openedAt = clock() }
        }
    }

    public var isOpen: Bool {
        lock.lock()
        defer { lock.unlock() }
        return openedAt != nil
    }
}

/// The answer of one request, with the path that produced it.
public struct Recommendation: Sendable {
    public var items: [RankedItem]
    /// e.g. ["retrieval:ann", "ranking:gbdt", "rerank"], or fallbacks such as
    /// "retrieval:timeout->popular", "ranking:failed->retrieval-order".
    public var path: [String]
    /// Seconds spent per stage, in order.
    public var stageSeconds: [(stage: String, seconds: Double)]
    public var totalSeconds: Double
}

/// Runs retrieval -> ranking -> re-ranking for one request within per-stage budgets and a
/// total deadline, degrading gracefully: a failing or late retrieval falls back to an exact
/// search (when given) and then to popular items, a failing or late ranker keeps retrieval
/// order, and circuit breakers stop calling a stage that keeps failing. Every answer says
/// which path produced it.
///
/// `Request` is whatever a stage needs to know about the caller: a user index, or a query
/// vector with the user's history (see `FunnelPipeline`).
public final class Recommender<Request: Sendable>: @unchecked Sendable {
    public typealias Retrieve = @Sendable (_ request: Request, _ count: Int) throws -> [RankedItem]
    public typealias Rank = @Sendable (_ request: Request, _ candidates: [RankedItem]) throws -> [RankedItem]
    public typealias Rerank = @Sendable (_ request: Request, _ ranked: [RankedItem], _ k: Int) -> [RankedItem]

    let retrieve: Retrieve
    let fallbackRetrieve: Retrieve?
    let popular: @Sendable (_ request: Request, _ count: Int) -> [RankedItem]
    let rank: Rank?
    let rerank: Rerank
    public var candidates = 500
    public var retrievalBudget: Double = 0.050
    public var rankingBudget: Double = 0.050
    public var deadline: Double = 0.150
    /// Run stages on the caller's thread (no budgets enforced, no thread hand-off): for
    /// offline evaluation and for measuring the stages themselves.
    public var inline = false
    /// Where stages run when they have a budget (shared by default).
    public var executor = StageExecutor.shared
    /// What keeps the budgets of `recommend(_:k:completion:)` (shared by default).
    public var watchdog = Watchdog.shared
    /// How long the caller polls for a stage's result, yielding its core between polls,
    /// before it sleeps until the result or the budget (seconds; 0 sleeps at once). Waking
    /// a sleeping thread costs tens of microseconds, more on a busy machine; polling with
    /// `sched_yield` costs a core only when nothing else wants it.
    public var pollBeforeSleep: Double = 0.002
    public let retrievalBreaker = CircuitBreaker()
    public let rankingBreaker = CircuitBreaker()
    /// Per-stage latencies and fallback counts (swift-metrics).
    /// Stage timers and fallback counters. Give them at construction when they need
    /// dimensions: a default set would already have registered unlabeled metrics, which
    /// some backends (Prometheus) refuse to mix with labeled ones of the same name.
    public var metrics: StageMetrics

    /// - Parameters:
    ///   - fallbackRetrieve: tried when `retrieve` fails or is late (e.g. exact search).
    ///   - popular: the last resort; must not fail.
    ///   - rank: nil when no ranker could be loaded (the answer then keeps retrieval order).
    public init(retrieve: @escaping Retrieve, fallbackRetrieve: Retrieve? = nil,
                popular: @escaping @Sendable (Request, Int) -> [RankedItem],
                rank: Rank?, rerank: @escaping Rerank, metrics: StageMetrics? = nil) {
        self.metrics = metrics ?? StageMetrics(label: "funnel")
        self.retrieve = retrieve
        self.fallbackRetrieve = fallbackRetrieve
        self.popular = popular
        self.rank = rank
        self.rerank = rerank
    }

    /// Runs `work` on a `StageExecutor` thread and waits at most `budget` seconds for it.
    /// Returns nil on timeout (the work finishes in the background; its result is dropped).
    /// A stage stuck past its budget holds one thread; the executor starts another for the
    /// next stage, so the next request's stages do not wait behind it.
    func withBudget<T>(_ budget: Double, _ work: @escaping @Sendable () throws -> T) -> Result<T, Error>? {
        if inline { return Result { try work() } }
        let start = DispatchTime.now()
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox<T>()
        executor.run {
            box.set(Result { try work() })
            done.signal()
        }
        // Polling saves the wake-up of a sleeping thread, but only when a core is spare: under
        // load, a caller spinning beside its stage takes a core from another request's work.
        if Load.spare {
            let pollEnd = start.uptimeNanoseconds + UInt64(max(0, min(budget, pollBeforeSleep)) * 1e9)
            while !box.isReady && DispatchTime.now().uptimeNanoseconds < pollEnd { sched_yield() }
        }
        if box.isReady { return box.get() }
        guard done.wait(timeout: start + max(0, budget)) == .success else { return nil }
        return box.get()
    }

    /// How a stage ended for the caller.
    enum Outcome<T> {
        case success(T)
        case failed
        case timeout
    }

    /// Retrieval, then ranking of its list, as one job on a stage thread: the caller is
    /// woken once, when the ranked list is ready (or a stage failed, or a budget passed),
    /// not once per stage (each wake-up of a sleeping thread costs a context switch on a
    /// busy machine; under load they were a tenth of the server's CPU). The budgets are
    /// those of two separate stages: retrieval's from the hand-off, ranking's from the
    /// moment retrieval ended. `rank` nil: retrieval only.
    private func retrieveAndRank(_ request: Request, count: Int, rank: Rank?, deadline end: UInt64)
        -> (retrieval: Outcome<[RankedItem]>, retrievalSeconds: Double, ranking: Outcome<[RankedItem]>?, rankingSeconds: Double) {
        let start = DispatchTime.now().uptimeNanoseconds
        func seconds(_ a: UInt64, _ b: UInt64) -> Double { Double(b &- a) / 1e9 }
        if inline {
            guard let list = try? retrieve(request, count) else { return (.failed, seconds(start, DispatchTime.now().uptimeNanoseconds), nil, 0) }
            let t = DispatchTime.now().uptimeNanoseconds
            guard let rank else { return (.success(list), seconds(start, t), nil, 0) }
            let ranked: Outcome<[RankedItem]> = (try? rank(request, list)).map { .success($0) } ?? .failed
            return (.success(list), seconds(start, t), ranked, seconds(t, DispatchTime.now().uptimeNanoseconds))
        }
        let chain = StageChain()
        executor.run { [retrieve] in
            let list = Result { try retrieve(request, count) }
            guard chain.retrieved(list), let rank, case .success(let l) = list else { return chain.finish(nil) }
            chain.finish(Result { try rank(request, l) })
        }
        let retrievalEnd = min(end, start + UInt64(max(0, retrievalBudget) * 1e9))
        // Polling saves the wake-up of a sleeping thread, but only when a core is spare: under
        // load, a caller spinning beside its stage takes a core from another request's work.
        if Load.spare {
            let pollEnd = min(retrievalEnd, start + UInt64(max(0, pollBeforeSleep) * 1e9))
            while !chain.isFinished && DispatchTime.now().uptimeNanoseconds < pollEnd { sched_yield() }
        }
        if !chain.isFinished && chain.done.wait(timeout: DispatchTime(uptimeNanoseconds: retrievalEnd)) == .timedOut {
            // Retrieval still running: the job is abandoned (it ranks nothing when it ends).
            // Ranking running: it has its own budget, from the end of retrieval.
            guard let retrievedAt = chain.abandonUnlessRetrieved() else { return (.timeout, seconds(start, retrievalEnd), nil, 0) }
            let rankingEnd = min(end, retrievedAt + UInt64(max(0, rankingBudget) * 1e9))
            if !chain.isFinished && chain.done.wait(timeout: DispatchTime(uptimeNanoseconds: rankingEnd)) == .timedOut {
                guard case .success(let list)? = chain.retrieval else { return (.failed, seconds(start, retrievedAt), nil, 0) }
                return (.success(list), seconds(start, retrievedAt), .timeout, seconds(retrievedAt, DispatchTime.now().uptimeNanoseconds))
            }
        }
        let (retrieval, retrievedAt, ranking, rankedAt) = chain.results
        guard case .success(let list)? = retrieval else { return (.failed, seconds(start, retrievedAt), nil, 0) }
        let ranked: Outcome<[RankedItem]>? = ranking.map { if case .success(let r) = $0 { .success(r) } else { .failed } }
        return (.success(list), seconds(start, retrievedAt), ranked, ranked == nil ? 0 : seconds(retrievedAt, rankedAt))
    }

    /// The top `k` items for `request`. Never throws: every failure has a fallback.
    /// The stages run on `executor` threads while the caller waits (see `recommend(_:k:completion:)`
    /// for the form that runs them on the caller's thread).
    public func recommend(_ request: Request, k: Int) -> Recommendation {
        Load.inFlight.add(1, ordering: .relaxed)
        defer { Load.inFlight.subtract(1, ordering: .relaxed) }
        let start = DispatchTime.now().uptimeNanoseconds
        var p = Progress(start: start, rankAllowed: rank != nil && rankingBreaker.allow())
        if retrievalBreaker.allow() {
            let r = retrieveAndRank(request, count: candidates, rank: p.rankAllowed ? rank : nil, deadline: p.end(deadline))
            p.stages.append(("retrieval", r.retrievalSeconds))
            switch r.retrieval {
            case .success(let list):
                retrievalBreaker.record(success: true)
                p.retrieved(list)
                p.ranking = r.ranking
                p.rankingSeconds = r.rankingSeconds
            case .failed:
                retrievalBreaker.record(success: false)
                recover(from: "retrieval:failed", request, &p)
            case .timeout:
                retrievalBreaker.record(success: false)
                recover(from: "retrieval:timeout", request, &p)
            }
        } else {
            recover(from: "retrieval:circuit-open", request, &p)
        }
        return finish(request, k: k, p)
    }

    /// What retrieval and ranking have given one request so far.
    struct Progress {
        let start: UInt64
        /// Whether the ranker may be called (it exists and its breaker lets the call through);
        /// asked once: a half-open breaker lets one probe through per cooldown.
        let rankAllowed: Bool
        var path = [String]()
        var stages = [(String, Double)]()
        var candidates = [RankedItem]()
        var ranking: Outcome<[RankedItem]>? = nil
        var rankingSeconds = 0.0

        var elapsed: Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        func end(_ deadline: Double) -> UInt64 { start + UInt64(min(max(0, deadline), 1e6) * 1e9) }  // NaN and past 11 days: bounded

        mutating func retrieved(_ list: [RankedItem]) {
            candidates = list
            path.append("retrieval:ann")
        }
    }

    /// A retrieval that failed, was late or was not called: the exact fallback (when given)
    /// or popular items, then the ranker on that list under its own budget.
    func recover(from failure: String, _ request: Request, _ p: inout Progress) {
        let t = p.elapsed
        metrics.fallback(failure)
        if let fallbackRetrieve, let list = try? fallbackRetrieve(request, candidates) {
            p.candidates = list
            p.path.append(failure + "->exact")
        } else {
            p.candidates = popular(request, candidates)
            p.path.append(failure + "->popular")
        }
        if p.stages.isEmpty { p.stages.append(("retrieval", 0)) }
        p.stages[0].1 += p.elapsed - t
        if p.rankAllowed, let rank {
            let t = p.elapsed, list = p.candidates
            switch withBudget(min(rankingBudget, deadline - p.elapsed), { try rank(request, list) }) {
            case .success(let r)?: p.ranking = .success(r)
            case .failure?: p.ranking = .failed
            case nil: p.ranking = .timeout
            }
            p.rankingSeconds = p.elapsed - t
        }
    }

    /// Ranking's outcome (or its fallback: retrieval order), then re-ranking, then the answer.
    func finish(_ request: Request, k: Int, _ p: Progress) -> Recommendation {
        var path = p.path
        var ranked = p.candidates
        var rankFailure: String? = nil
        switch (rank == nil, p.rankAllowed, p.ranking) {
        case (true, _, _): rankFailure = "ranking:unavailable"
        case (_, false, _): rankFailure = "ranking:circuit-open"
        case (_, _, .success(let r)?):
            rankingBreaker.record(success: true)
            ranked = r
            path.append("ranking:gbdt")
        case (_, _, .failed?), (_, _, nil):
            rankingBreaker.record(success: false)
            rankFailure = "ranking:failed"
        case (_, _, .timeout?):
            rankingBreaker.record(success: false)
            rankFailure = "ranking:timeout"
        }
        if let rankFailure {
            metrics.fallback(rankFailure)
            path.append(rankFailure + "->retrieval-order")
        }
        var stages = p.stages
        stages.append(("ranking", p.rankingSeconds))
        // Re-ranking (cheap and local: always runs).
        let t = p.elapsed
        let final = rerank(request, ranked, k)
        path.append("rerank")
        stages.append(("rerank", p.elapsed - t))
        let total = p.elapsed
        metrics.record(stages: stages, total: total)
        return Recommendation(items: final, path: path, stageSeconds: stages, totalSeconds: total)
    }
}

/// One request's retrieval-then-ranking job and what its caller has seen of it.
final class StageChain: @unchecked Sendable {
    private let lock = NSLock()
    private var retrieval_: Result<[RankedItem], Error>?
    private var retrievedAt: UInt64 = 0
    private var ranking_: Result<[RankedItem], Error>?
    private var rankedAt: UInt64 = 0
    private var abandoned = false
    private let finished = Atomic<Bool>(false)
    /// Signalled once, when the job ends.
    let done = DispatchSemaphore(value: 0)

    /// Records retrieval's result; false when the caller stopped waiting for it (the job
    /// then ranks nothing).
    func retrieved(_ r: Result<[RankedItem], Error>) -> Bool {
        lock.lock(); defer { lock.unlock() }
        retrieval_ = r
        retrievedAt = DispatchTime.now().uptimeNanoseconds
        return !abandoned
    }

    func finish(_ r: Result<[RankedItem], Error>?) {
        lock.lock()
        ranking_ = r
        rankedAt = DispatchTime.now().uptimeNanoseconds
        lock.unlock()
        finished.store(true, ordering: .releasing)
        done.signal()
    }

    var isFinished: Bool { finished.load(ordering: .acquiring) }

    /// When retrieval has ended: its end time. Otherwise nil, and the job is abandoned.
    func abandonUnlessRetrieved() -> UInt64? {
        lock.lock(); defer { lock.unlock() }
        if retrieval_ != nil { return retrievedAt }
        abandoned = true
        return nil
    }

    var retrieval: Result<[RankedItem], Error>? { lock.lock(); defer { lock.unlock() }; return retrieval_ }

    var results: (Result<[RankedItem], Error>?, UInt64, Result<[RankedItem], Error>?, UInt64) {
        lock.lock(); defer { lock.unlock() }
        return (retrieval_, retrievedAt, ranking_, rankedAt)
    }
}

extension Recommender where Request == Int {
    /// The top `k` items for a user index.
    public func recommend(user: Int, k: Int) -> Recommendation { recommend(user, k: k) }
}

/// A thread-safe slot for a worker's result.
final class ResultBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Result<T, Error>?
    private let ready = Atomic<Bool>(false)
    func set(_ v: Result<T, Error>) {
        lock.lock(); value = v; lock.unlock()
        ready.store(true, ordering: .releasing)
    }
    func get() -> Result<T, Error>? { lock.lock(); defer { lock.unlock() }; return value }
    var isReady: Bool { ready.load(ordering: .acquiring) }
}

/// How many requests are in the funnel at once, process-wide: waits spin only while fewer
/// requests than half the cores run (each request holds a caller and a stage thread).
enum Load {
    static let inFlight = Atomic<Int>(0)
    static let cores = ProcessInfo.processInfo.activeProcessorCount
    static var spare: Bool { 2 * inFlight.load(ordering: .relaxed) <= cores }
}

/// Threads for stages that run under a budget while their caller waits.
///
/// The global dispatch queue is the wrong place for them: when every worker of its pool is
/// blocked (request threads waiting on their stages, under load), a new stage waits until
/// the pool notices and grows, which can take longer than a stage's budget; the stage then
/// times out and opens its circuit breaker although nothing was wrong with it. Here a job
/// gets an idle thread, or a new one up to `maxThreads`; past that it queues (threads held
/// by stuck stages are what the breakers are for).
public final class StageExecutor: @unchecked Sendable {
    public static let shared = StageExecutor(maxThreads: 64)

    public let maxThreads: Int
    /// How long a thread that finished a job polls for the next one (yielding its core)
    /// before it sleeps: a request's next stage usually comes within microseconds, and
    /// waking a sleeping thread takes longer than that.
    public let pollBeforeSleep: Double
    private let condition = NSCondition()
    private var jobs = [@Sendable () -> Void]()
    private var threads = 0
    private var idle = 0
    /// Threads polling for work (under `condition`), and the queue length they poll.
    private var polling = 0
    private let queued = Atomic<Int>(0)

    public init(maxThreads: Int, pollBeforeSleep: Double = 0.0002) {
        self.maxThreads = max(1, maxThreads)
        self.pollBeforeSleep = max(0, pollBeforeSleep)
    }

    /// Threads started so far (they stay, idle, for the next jobs).
    public var threadCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return threads
    }

    public func run(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        queued.store(jobs.count, ordering: .releasing)
        if polling >= jobs.count {
            // A polling thread takes it.
        } else if idle + polling > jobs.count - 1 {
            condition.signal()
        } else if threads < maxThreads {
            threads += 1
            let thread = Thread { self.work() }  // threads never exit: they keep the executor alive
            thread.name = "funnel-stage"
            thread.start()
        }
        condition.unlock()
    }

    private func work() {
        condition.lock()
        while true {
            if jobs.isEmpty && pollBeforeSleep > 0 && Load.spare {
                polling += 1
                condition.unlock()
                let end = DispatchTime.now().uptimeNanoseconds + UInt64(pollBeforeSleep * 1e9)
                while queued.load(ordering: .acquiring) == 0 && DispatchTime.now().uptimeNanoseconds < end { sched_yield() }
                condition.lock()
                polling -= 1
            }
            while jobs.isEmpty {
                idle += 1
                condition.wait()
                idle -= 1
            }
            let job = jobs.removeFirst()
            queued.store(jobs.count, ordering: .releasing)
            condition.unlock()
            job()
            condition.lock()
        }
    }
}
