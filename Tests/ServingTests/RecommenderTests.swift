import Foundation
import Testing
import Serving
import LinearAlgebra
import Rerank
import Synchronization

struct StageError: Error {}

/// A stage whose behaviour a test switches between working, failing and slow.
final class Fault: @unchecked Sendable {
    enum Mode { case ok, fail, slow }
    private let lock = NSLock()
    private var mode_: Mode = .ok
    private var calls_ = 0
    var mode: Mode { get { lock.lock(); defer { lock.unlock() }; return mode_ } set { lock.lock(); mode_ = newValue; lock.unlock() } }
    var calls: Int { lock.lock(); defer { lock.unlock() }; return calls_ }
    func hit() throws {
        lock.lock(); calls_ += 1; let m = mode_; lock.unlock()
        switch m {
        case .ok: return
        case .fail: throw StageError()
        case .slow: Thread.sleep(forTimeInterval: 1.5)
        }
    }
}

@Suite("Recommender: stages, budgets and fallbacks")
struct RecommenderTests {
    /// Budgets are generous against scheduling noise (tests run in parallel on 2 cores) and
    /// far below the 1.5 s a slow stage takes.
    func make(_ retrieval: Fault, _ ranking: Fault?, budget: Double = 0.25, deadline: Double = 0.8) -> Recommender<Int> {
        let r = Recommender<Int>(
            retrieve: { user, n in try retrieval.hit(); return (0..<n).map { RankedItem(id: 1000 + $0, score: Double(n - $0)) } },
            popular: { _, n in (0..<n).map { RankedItem(id: $0, score: Double(n - $0)) } },
            rank: ranking.map { f in { _, list in try f.hit(); return list.reversed() } },
            rerank: { _, list, k in Array(list.prefix(k)) })
        r.candidates = 50
        r.retrievalBudget = budget
        r.rankingBudget = budget
        r.deadline = deadline
        return r
    }

    @Test("the healthy path runs every stage")
    func healthy() {
        let rec = make(Fault(), Fault(), budget: 5, deadline: 10).recommend(user: 1, k: 5)
        #expect(rec.path == ["retrieval:ann", "ranking:gbdt", "rerank"])
        #expect(rec.items.map(\.id) == [1049, 1048, 1047, 1046, 1045])
    }

    @Test("each injected fault still answers within the deadline, marked with its path",
          arguments: [(Fault.Mode.fail, Fault.Mode.ok, "retrieval:failed->popular"), (.slow, .ok, "retrieval:timeout->popular"),
                      (.ok, .fail, "ranking:failed->retrieval-order"), (.ok, .slow, "ranking:timeout->retrieval-order")])
    func faults(retrievalMode: Fault.Mode, rankingMode: Fault.Mode, expected: String) {
        let retrieval = Fault(), ranking = Fault()
        retrieval.mode = retrievalMode
        ranking.mode = rankingMode
        let r = make(retrieval, ranking)
        let rec = r.recommend(user: 1, k: 5)
        #expect(rec.path.contains(expected), "\(rec.path)")
        #expect(rec.items.count == 5)
        #expect(rec.totalSeconds < r.deadline + 0.2)
    }

    @Test("a retrieval past its budget is abandoned: the fallback's list is ranked, the late list never is")
    func lateRetrievalAbandoned() {
        let retrieval = Fault(), ranking = Fault()
        retrieval.mode = .slow
        let rec = make(retrieval, ranking).recommend(user: 1, k: 3)
        #expect(rec.path == ["retrieval:timeout->popular", "ranking:gbdt", "rerank"])
        #expect(rec.items.map(\.id) == [49, 48, 47])  // popular's 0..<50, reversed by the ranker
        Thread.sleep(forTimeInterval: 1.7)  // the slow retrieval has ended by now
        #expect(ranking.calls == 1)
    }

    @Test("ranking's budget starts when retrieval ends: a slow retrieval within its budget leaves ranking its whole budget")
    func rankingBudgetFromRetrievalEnd() {
        // Retrieval takes 0.15 s of its 0.25 s budget, ranking 0.15 s of its own 0.25 s: both
        // in time, though together they pass one budget.
        let r = Recommender<Int>(
            retrieve: { _, n in Thread.sleep(forTimeInterval: 0.15); return (0..<n).map { RankedItem(id: $0, score: 0) } },
            popular: { _, _ in [] },
            rank: { _, list in Thread.sleep(forTimeInterval: 0.15); return list.reversed() },
            rerank: { _, list, k in Array(list.prefix(k)) })
        r.candidates = 10
        r.retrievalBudget = 0.25
        r.rankingBudget = 0.25
        r.deadline = 2
        let rec = r.recommend(user: 1, k: 2)
        #expect(rec.path == ["retrieval:ann", "ranking:gbdt", "rerank"])
        #expect(rec.items.map(\.id) == [9, 8])
    }

    /// The completion form's answer (the call made on a thread of its own: it returns only
    /// when its stages end), the seconds until it was given, and how many times it was given,
    /// counted again once the slow stages (1.5 s) have ended.
    func answered(_ r: Recommender<Int>, k: Int) -> (Recommendation, seconds: Double, calls: () -> Int) {
        let calls = Mutex(0), first = Mutex<(Recommendation, UInt64)?>(nil)
        let done = DispatchSemaphore(value: 0)
        let t0 = DispatchTime.now().uptimeNanoseconds
        Thread.detachNewThread {
            r.recommend(1, k: k) { rec in
                let n = calls.withLock { $0 += 1; return $0 }
                if n == 1 { first.withLock { $0 = (rec, DispatchTime.now().uptimeNanoseconds) }; done.signal() }
            }
        }
        done.wait()
        let (rec, at) = first.withLock { $0! }
        return (rec, Double(at - t0) / 1e9, { calls.withLock { $0 } })
    }

    @Test("the completion form (stages on the caller's thread, budgets kept by the watchdog) answers every fault as the waiting form does, once")
    func completionForm() {
        let cases: [(Fault.Mode, Fault.Mode, [String])] = [
            (.ok, .ok, ["retrieval:ann", "ranking:gbdt", "rerank"]),
            (.fail, .ok, ["retrieval:failed->popular", "ranking:gbdt", "rerank"]),
            (.slow, .ok, ["retrieval:timeout->popular", "ranking:gbdt", "rerank"]),
            (.ok, .fail, ["retrieval:ann", "ranking:failed->retrieval-order", "rerank"]),
            (.ok, .slow, ["retrieval:ann", "ranking:timeout->retrieval-order", "rerank"]),
        ]
        var counters = [() -> Int]()
        for (retrievalMode, rankingMode, path) in cases {
            let retrieval = Fault(), ranking = Fault()
            retrieval.mode = retrievalMode
            ranking.mode = rankingMode
            let waited = make(retrieval, ranking).recommend(user: 1, k: 5)
            let r = make(retrieval, ranking)
            let (rec, seconds, calls) = answered(r, k: 5)
            #expect(rec.path == path, "\(retrievalMode) \(rankingMode)")
            #expect(rec.path == waited.path && rec.items.map(\.id) == waited.items.map(\.id), "\(retrievalMode) \(rankingMode)")
            // A late stage is answered for at its budget (0.25 s), not when it ends (1.5 s).
            #expect(seconds < r.deadline + 0.2, "\(retrievalMode) \(rankingMode): \(seconds) s")
            counters.append(calls)
        }
        Thread.sleep(forTimeInterval: 1.7)  // every slow stage has ended
        #expect(counters.map { $0() } == Array(repeating: 1, count: cases.count))
    }

    @Test("the watchdog runs every job once, never before its deadline, within a tick after it, deadlines given in any order")
    func watchdog() {
        let w = Watchdog(tick: 0.002)
        let now = DispatchTime.now().uptimeNanoseconds
        var rng = SeededGenerator(seed: 3)
        let deadlines = (0..<60).map { _ in now + UInt64(rng.nextInt(below: 150)) * 1_000_000 }
        let ran = Mutex([Int: [UInt64]]())
        let done = DispatchSemaphore(value: 0)
        for (i, d) in deadlines.enumerated() {
            w.arm(at: d) {
                ran.withLock { $0[i, default: []].append(DispatchTime.now().uptimeNanoseconds) }
                done.signal()
            }
        }
        for _ in deadlines { done.wait() }
        Thread.sleep(forTimeInterval: 0.05)
        let times = ran.withLock { $0 }
        #expect(times.count == deadlines.count && times.values.allSatisfy { $0.count == 1 })
        for (i, d) in deadlines.enumerated() {
            guard let t = times[i]?.first else { continue }
            #expect(t >= d, "job \(i) ran early")
            // A tick plus scheduling on a busy 2-core machine.
            #expect(Double(t - d) / 1e9 < 0.1, "job \(i) ran \(Double(t - d) / 1e9) s late")
        }
    }

    @Test("a missing ranker (e.g. a corrupt model file) keeps retrieval order")
    func noRanker() {
        let rec = make(Fault(), nil, budget: 5, deadline: 10).recommend(user: 1, k: 3)
        #expect(rec.path.contains("ranking:unavailable->retrieval-order"))
        #expect(rec.items.map(\.id) == [1000, 1001, 1002])
    }

    @Test("the circuit breaker stops calling a failing stage and probes it after the cooldown")
    func breaker() {
        let retrieval = Fault()
        retrieval.mode = .fail
        let r = make(retrieval, Fault(), budget: 5, deadline: 10)
        for _ in 0..<3 { _ = r.recommend(user: 1, k: 3) }
        #expect(retrieval.calls == 3 && r.retrievalBreaker.isOpen)
        let rec = r.recommend(user: 1, k: 3)
        #expect(retrieval.calls == 3)
        #expect(rec.path.first == "retrieval:circuit-open->popular")

        var now = 0.0
        let b = CircuitBreaker(failureThreshold: 2, cooldown: 10, clock: { now })
        b.record(success: false); b.record(success: false)
        #expect(!b.allow())
        now = 11
        #expect(b.allow())       // the probe
        #expect(!b.allow())      // others wait
        b.record(success: true)
        #expect(b.allow() && !b.isOpen)
    }
}

@Suite("Stage executor")
struct StageExecutorTests {
    @Test("jobs that wait for each other all get a thread at once, up to the limit; past it they queue")
    func executorThreads() {
        let executor = StageExecutor(maxThreads: 5)
        let started = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0), finished = DispatchSemaphore(value: 0)
        // Five jobs that block until released: each must be running before any finishes.
        for _ in 0..<5 {
            executor.run { started.signal(); release.wait(); finished.signal() }
        }
        var running = 0
        for _ in 0..<5 where started.wait(timeout: .now() + 10) == .success { running += 1 }
        #expect(running == 5)
        // A sixth job queues behind them (no thread left) until one is released.
        executor.run { started.signal(); finished.signal() }
        #expect(started.wait(timeout: .now() + 0.2) == .timedOut)
        release.signal()
        #expect(started.wait(timeout: .now() + 10) == .success)
        for _ in 0..<4 { release.signal() }
        var done = 0
        for _ in 0..<6 where finished.wait(timeout: .now() + 10) == .success { done += 1 }
        #expect(done == 6 && executor.threadCount == 5)
    }

    @Test("jobs handed over while a thread polls, or just as its polling ends, all run, on that one thread")
    func executorPollingHandOver() {
        let executor = StageExecutor(maxThreads: 8, pollBeforeSleep: 0.0005)
        let finished = DispatchSemaphore(value: 0)
        // Gaps below, around and past the polling window: each job must run exactly once.
        let gaps: [Double] = [0, 0.0001, 0.0004, 0.0005, 0.0006, 0.001, 0.003]
        var ran = 0
        for round in 0..<70 {
            executor.run { finished.signal() }
            if finished.wait(timeout: .now() + 10) == .success { ran += 1 }
            let gap = gaps[round % gaps.count]
            if gap > 0 { Thread.sleep(forTimeInterval: gap) }
        }
        #expect(ran == 70)
        // One job at a time needs at most two threads: a job handed over before the thread
        // that ran the previous one is back (polling or asleep) starts a second.
        #expect(executor.threadCount <= 2)
    }
}
