import CBLAS
import Datasets
import Foundation
import LinearAlgebra
import Persistence

/// Leave-last-one-out split (PROTOCOLS.md section 2): per user, interactions sorted by
/// (timestamp, item); the last is the test item, the one before it validation, the rest train.
public struct LeaveLastOutSplit: Sendable {
    /// One held-out interaction: the item and when it happened (Unix seconds): features of
    /// a replayed request use only what happened before it.
    public struct HeldOut: Sendable, Equatable {
        public var item: Int32
        public var time: Int64
    }

    public var train: [(user: Int32, item: Int32)]
    /// Each user's validation and test interaction (users with at least three interactions).
    public var validation: [Int32: HeldOut]
    public var test: [Int32: HeldOut]
    /// Items each user touched in training (excluded from rankings).
    public var trainItems: [Set<Int32>]

    /// The validation items alone, by user (what `RetrievalMetrics` ranks).
    public var validationItems: [Int32: Int32] { validation.mapValues(\.item) }
    /// The test items alone, by user.
    public var testItems: [Int32: Int32] { test.mapValues(\.item) }

    public init(_ log: InteractionLog) {
        var perUser = [[(Int64, Int32)]](repeating: [], count: log.users.count)
        for n in 0..<log.count { perUser[Int(log.userIndex[n])].append((log.timestamps[n], log.itemIndex[n])) }
        train = []
        validation = [:]
        test = [:]
        trainItems = [Set<Int32>](repeating: [], count: log.users.count)
        for (u, events) in perUser.enumerated() {
            let sorted = events.sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            var rest = sorted[...]
            if rest.count >= 3 {
                let t = rest.removeLast(), v = rest.removeLast()
                test[Int32(u)] = HeldOut(item: t.1, time: t.0)
                validation[Int32(u)] = HeldOut(item: v.1, time: v.0)
            }
            for (_, i) in rest {
                train.append((Int32(u), i))
                trainItems[u].insert(i)
            }
        }
    }
}

/// Ranking quality of full-corpus retrieval with one held-out item per user.
public struct RetrievalMetrics: Sendable, CustomStringConvertible {
    public var hr10 = 0.0, ndcg10 = 0.0, hr50 = 0.0, mrr = 0.0
    /// NDCG over the whole ranking (1 / log2(rank + 2), no cutoff): every user contributes,
    /// so it varies far less between runs than NDCG@10 on a few hundred users.
    public var ndcg = 0.0
    public var users = 0

    public init() {}

    public var description: String {
        String(format: "HR@10 %.4f  NDCG@10 %.4f  HR@50 %.4f  MRR %.4f  (%d users)", hr10, ndcg10, hr50, mrr, users)
    }

    /// Evaluates a scorer: `scores(u)` gives every item's score for user u. The held-out
    /// item's rank counts every other unseen item scoring >= it (ties count against).
    /// A held-out item the user had already touched (a repeat, in `exclude`) is left out of
    /// the measure: a recommender that never shows seen items cannot be judged on it, and
    /// counting it would credit a scorer for what serving never returns.
    public static func evaluate(heldOut: [Int32: Int32], exclude: (Int32) -> Set<Int32>,
                                scores: (Int32) -> [Float]) -> RetrievalMetrics {
        var ranks = HeldOutRanks()
        for (u, target) in heldOut.sorted(by: { $0.key < $1.key }) {
            let seen = exclude(u)
            guard !seen.contains(target) else { continue }
            let s = scores(u)
            let t = s[Int(target)]
            var rank = 0
            for (i, v) in s.enumerated() where Int32(i) != target && !seen.contains(Int32(i)) && v >= t { rank += 1 }
            ranks.add(rank: rank)
        }
        var m = RetrievalMetrics()
        m.users = ranks.count
        m.hr10 = ranks.hitRate(at: 10)
        m.ndcg10 = ranks.ndcg(at: 10)
        m.hr50 = ranks.hitRate(at: 50)
        m.mrr = ranks.mrr
        m.ndcg = ranks.ndcg(at: .max)
        return m
    }
}

/// Implicit-feedback matrix factorization by alternating least squares (Hu, Koren &
/// Volinsky 2008): confidence 1 + alpha on observed pairs, each row's normal equations
/// solved by Cholesky (LAPACKE sposv). A baseline the towers must beat.
public enum ImplicitALS {
    public static func fit(pairs: [(user: Int32, item: Int32)], users: Int, items: Int, factors: Int = 64,
                           regularization: Float = 1, alpha: Float = 10, iterations: Int = 15, seed: UInt64 = 42) -> (Matrix, Matrix) {
        var rng = SeededGenerator(seed: seed)
        var x = Matrix(rows: users, columns: factors), y = Matrix(rows: items, columns: factors)
        for i in x.storage.indices { x.storage[i] = rng.nextGaussian() * 0.01 }
        for i in y.storage.indices { y.storage[i] = rng.nextGaussian() * 0.01 }
        var byUser = [[Int32]](repeating: [], count: users), byItem = [[Int32]](repeating: [], count: items)
        for p in pairs { byUser[Int(p.user)].append(p.item); byItem[Int(p.item)].append(p.user) }
        for _ in 0..<iterations {
            solve(&x, fixed: y, rows: byUser, factors: factors, reg: regularization, alpha: alpha)
            solve(&y, fixed: x, rows: byItem, factors: factors, reg: regularization, alpha: alpha)
        }
        return (x, y)
    }

    /// For each row r: (Y^T Y + alpha * sum_{i in r} y_i y_i^T + reg I) x_r = (1 + alpha) sum_{i in r} y_i.
    static func solve(_ target: inout Matrix, fixed: Matrix, rows: [[Int32]], factors f: Int, reg: Float, alpha: Float) {
        var yty = [Float](repeating: 0, count: f * f)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(f), Int32(f), Int32(fixed.rows), 1,
                    fixed.storage, Int32(f), fixed.storage, Int32(f), 0, &yty, Int32(f))
        for (r, items) in rows.enumerated() {
            var a = yty
            var b = [Float](repeating: 0, count: f)
            for it in items {
                let base = Int(it) * f
                for p in 0..<f {
                    let yp = fixed.storage[base + p]
                    b[p] += (1 + alpha) * yp
                    for q in 0..<f { a[p * f + q] += alpha * yp * fixed.storage[base + q] }
                }
            }
            for p in 0..<f { a[p * f + p] += reg }
            let info = LAPACKE_sposv(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "U")), Int32(f), 1, &a, Int32(f), &b, 1)
            if info == 0 { for p in 0..<f { target[r, p] = b[p] } }
        }
    }
}

/// Each user's training items, saved beside a model so recommendations can leave them out.
public struct UserHistory: Sendable {
    public var offsets: [Int32]
    public var items: [Int32]

    public init(_ sets: [Set<Int32>]) {
        offsets = [0]
        items = []
        for s in sets {
            items.append(contentsOf: s.sorted())
            offsets.append(Int32(items.count))
        }
    }

    public func items(of user: Int) -> ArraySlice<Int32> { items[Int(offsets[user])..<Int(offsets[user + 1])] }

    static let magic = "FNLHIST\u{1}"

    public func save(to path: String) throws {
        try FunnelFile.write(to: path, magic: Self.magic, version: 1) { w in
            w.write(array: offsets)
            w.write(array: items)
        }
    }

    public static func load(from path: String, users: Int, items itemCount: Int) throws -> UserHistory {
        var (_, r) = try FunnelFile.read(path, magic: magic, versions: 1...1)
        var h = UserHistory([])
        h.offsets = try r.readArray(Int32.self, "offsets", maxCount: r.remaining)
        h.items = try r.readArray(Int32.self, "items", maxCount: r.remaining)
        guard h.offsets.count == users + 1, h.offsets.first == 0, Int(h.offsets.last!) == h.items.count,
              zip(h.offsets, h.offsets.dropFirst()).allSatisfy({ $0 <= $1 }), h.items.allSatisfy({ $0 >= 0 && Int($0) < itemCount }) else {
            throw TwoTowerError.invalidData("\(path): the history does not match the model")
        }
        return h
    }
}

extension LeaveLastOutSplit {
    /// The items a user touched before the test item (training and validation): left out
    /// of the ranking when the test item is evaluated.
    public func seenBeforeTest(_ user: Int32) -> Set<Int32> {
        var s = trainItems[Int(user)]
        if let v = validation[user] { s.insert(v.item) }
        return s
    }
}

extension RetrievalMetrics {
    /// Evaluates factor models: the score of item i for user u is <users[u], items[i]>.
    /// Scores are computed for blocks of 256 users at a time (one sgemm each), so memory
    /// stays at 256 x items floats whatever the number of users.
    /// - Complexity: O(users x items x dimension).
    public static func evaluate(users: Matrix, items: Matrix, heldOut: [Int32: Int32],
                                exclude: (Int32) -> Set<Int32>) throws -> RetrievalMetrics {
        let order = heldOut.keys.sorted()
        let block = 256, d = users.columns
        var cached: (start: Int, scores: Matrix)? = nil
        var position = [Int32: Int](minimumCapacity: order.count)
        for (i, u) in order.enumerated() { position[u] = i }
        var failure: Error? = nil
        let m = evaluate(heldOut: heldOut, exclude: exclude, scores: { u in
            let i = position[u]!, start = i / block * block
            if cached?.start != start {
                let rows = order[start..<min(order.count, start + block)]
                var q = Matrix(rows: rows.count, columns: d)
                for (r, user) in rows.enumerated() { for c in 0..<d { q[r, c] = users[Int(user), c] } }
                do { cached = (start, try Matrix.multiply(q, items, transposeB: true)) } catch {
                    failure = error
                    return [Float](repeating: 0, count: items.rows)
                }
            }
            return Array(cached!.scores.row(i - start))
        })
        if let failure { throw failure }
        return m
    }
}

extension TwoTowerModel {
    /// Ranking quality of the towers' embeddings (full corpus, `exclude` left out per user).
    public func evaluate(heldOut: [Int32: Int32], exclude: (Int32) -> Set<Int32>) throws -> RetrievalMetrics {
        try RetrievalMetrics.evaluate(users: embedAll(users), items: embedAll(items), heldOut: heldOut, exclude: exclude)
    }
}
