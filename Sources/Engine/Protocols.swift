import Datasets
import Foundation
import LinearAlgebra
import TwoTower

/// The experiment protocols of PROTOCOLS.md section 2, on any training data.
public enum Protocols {
    /// Incremental retraining: train to the 80% time quantile, retrain incrementally on the
    /// next 10% plus a replay sample of older interactions, compare with a full retrain to
    /// 90%. Every interaction after the 90% quantile is a held-out target ranked among all
    /// items minus what its user touched before it.
    public struct IncrementalResult: Sendable {
        public var before: (hr10: Double, ndcg10: Double)
        public var incremental: (hr10: Double, ndcg10: Double)
        public var full: (hr10: Double, ndcg10: Double)
        public var incrementalSeconds: Double
        public var fullSeconds: Double
        public var old: Int, new: Int, heldOut: Int, heldOutUsers: Int

        public var json: [String: Any] {
            ["held_out": heldOut, "before": ["HR@10": before.hr10, "NDCG@10": before.ndcg10],
             "incremental": ["HR@10": incremental.hr10, "NDCG@10": incremental.ndcg10, "seconds": incrementalSeconds],
             "full_retrain": ["HR@10": full.hr10, "NDCG@10": full.ndcg10, "seconds": fullSeconds]]
        }
    }

    public static func incremental(_ data: TrainingData, parameters: TwoTowerParameters, epochs: Int = 2, replay: Double = 1) throws -> IncrementalResult {
        let log = data.log
        guard log.count >= 10 else { throw EngineError.invalidData("\(log.count) interactions are too few for the incremental protocol") }
        let times = log.timestamps.sorted()
        let q80 = times[times.count * 8 / 10], q90 = times[times.count * 9 / 10]
        var old = [(user: Int32, item: Int32)](), new = [(user: Int32, item: Int32)]()
        var seen = [Set<Int32>](repeating: [], count: log.users.count)
        var targets = [(user: Int32, item: Int32, exclude: Set<Int32>)]()
        for n in log.chronologicalOrder() {
            let pair = (user: log.userIndex[n], item: log.itemIndex[n]), t = log.timestamps[n]
            if t < q80 { old.append(pair) } else if t < q90 { new.append(pair) } else if !seen[Int(pair.user)].contains(pair.item) {
                targets.append((pair.user, pair.item, seen[Int(pair.user)]))  // repeats are left out, as in RetrievalMetrics
            }
            seen[Int(pair.user)].insert(pair.item)
        }
        func measure(_ model: TwoTowerModel) throws -> (hr10: Double, ndcg10: Double) {
            let scores = try Matrix.multiply(model.embedAll(model.users), model.embedAll(model.items), transposeB: true)
            var ranks = HeldOutRanks()
            for (u, item, exclude) in targets {
                let row = scores.row(Int(u)), s = row[Int(item)]
                var rank = 0  // ties count against
                for (j, v) in row.enumerated() where j != Int(item) && v >= s && !exclude.contains(Int32(j)) { rank += 1 }
                ranks.add(rank: rank)
            }
            return (ranks.hitRate(at: 10), ranks.ndcg(at: 10))
        }
        var p = parameters
        p.patience = 0
        let model = TwoTowerModel(userFeatures: data.userFeatures, itemFeatures: data.itemFeatures, parameters: p)
        var rng = SeededGenerator(seed: parameters.seed)
        model.fit(old, rng: &rng)
        let before = try measure(model)
        var replayed = old
        replayed.shuffle(using: &rng)
        let update = new + replayed.prefix(Int(Double(new.count) * replay))
        let inc0 = Clock.now()
        var incParams = p
        incParams.epochs = epochs
        let warm = model.continuing(with: incParams)
        warm.fit(update, rng: &rng)
        let incSeconds = Clock.now() - inc0
        let incremental = try measure(warm)
        let full0 = Clock.now()
        let full = TwoTowerModel(userFeatures: data.userFeatures, itemFeatures: data.itemFeatures, parameters: p)
        var rng2 = SeededGenerator(seed: parameters.seed)
        full.fit(old + new, rng: &rng2)
        let fullSeconds = Clock.now() - full0
        return IncrementalResult(before: before, incremental: incremental, full: try measure(full), incrementalSeconds: incSeconds,
                                 fullSeconds: fullSeconds, old: old.count, new: new.count, heldOut: targets.count,
                                 heldOutUsers: Set(targets.map(\.user)).count)
    }

    /// Cold start: 10% of items (seed 42) never seen in training; every interaction with
    /// them is ranked among the cold items only, by the towers (items embedded without
    /// their id), by a category-profile content baseline, and at random.
    public struct ColdStartResult: Sendable {
        public var items: Int, interactions: Int
        public var towersHR10: Double
        /// Nil without a category column.
        public var categoryProfileHR10: Double?
        public var randomHR10: Double

        public var json: [String: Any] {
            var out: [String: Any] = ["items": items, "interactions": interactions, "HR@10": towersHR10, "random_HR@10": randomHR10]
            if let c = categoryProfileHR10 { out["category_profile_HR@10"] = c }
            return out
        }
    }

    /// - Parameter minimumDropout: the protocol's towers hide ids at least this often (0.3 by
    ///   default, so the features-alone path is trained); 0 keeps `parameters.idDropout`, which
    ///   measures how the served model itself embeds items that have no interactions yet.
    public static func coldStart(_ data: TrainingData, split: LeaveLastOutSplit, parameters: TwoTowerParameters,
                                 minimumDropout: Float = 0.3) throws -> ColdStartResult {
        let itemCount = data.log.items.count
        guard itemCount >= 20 else { throw EngineError.invalidData("\(itemCount) items are too few for the cold-start protocol") }
        var shuffled = Array(0..<itemCount)
        var g = SeededGenerator(seed: 42)
        shuffled.shuffle(using: &g)
        let cold = Set(shuffled.prefix(itemCount / 10).map { Int32($0) })
        let coldList = cold.sorted()
        let train = split.train.filter { !cold.contains($0.item) }
        var p = parameters
        p.idDropout = max(p.idDropout, minimumDropout)
        p.epochs = min(p.epochs, 10)
        p.patience = 0
        let model = TwoTowerModel(userFeatures: data.userFeatures, itemFeatures: data.itemFeatures, parameters: p)
        var rng = SeededGenerator(seed: parameters.seed)
        model.fit(train, rng: &rng)
        let u = model.embedAll(model.users)
        let v = model.embedAll(model.items, withoutID: true)
        let categories = data.itemCategories()
        let nc = categories?.count ?? 0
        func genres(_ i: Int) -> [Float] {
            var x = [Float](repeating: 0, count: nc)
            for c in categories?.lists[i] ?? [] { x[Int(c)] = 1 }
            return x
        }
        var profile = [[Float]](repeating: [Float](repeating: 0, count: nc), count: data.log.users.count)
        for pair in train {
            let gi = genres(Int(pair.item))
            for j in 0..<nc { profile[Int(pair.user)][j] += gi[j] }
        }
        var towerRanks = HeldOutRanks(), genreRanks = HeldOutRanks()
        let log = data.log
        for n in 0..<log.count where cold.contains(log.itemIndex[n]) {
            let user = Int(log.userIndex[n]), target = log.itemIndex[n]
            let ur = u.row(user)
            let ts = Distance.dot(ur, v.row(Int(target)))
            let gs = nc > 0 ? Distance.cosineSimilarity(profile[user], genres(Int(target))) : 0
            var towerRank = 0, genreRank = 0
            for c in coldList where c != target {
                if Distance.dot(ur, v.row(Int(c))) >= ts { towerRank += 1 }
                if nc > 0 && Distance.cosineSimilarity(profile[user], genres(Int(c))) >= gs { genreRank += 1 }
            }
            towerRanks.add(rank: towerRank)
            genreRanks.add(rank: genreRank)
        }
        return ColdStartResult(items: cold.count, interactions: towerRanks.count, towersHR10: towerRanks.hitRate(at: 10),
                               categoryProfileHR10: nc > 0 ? genreRanks.hitRate(at: 10) : nil, randomHR10: 10 / Double(cold.count))
    }
}

extension Protocols {
    /// One point of a learning curve: the towers trained on a fraction of the training
    /// interactions, measured on the full test split.
    public struct LearningCurvePoint: Sendable {
        public var fraction: Double
        public var interactions: Int
        public var test: RetrievalMetrics
        public var seconds: Double
        /// Popularity and implicit ALS (64 factors, regularization 1, confidence 10) on the
        /// same prefix of the training data, ranked with the same exclusions.
        public var popularity: RetrievalMetrics? = nil
        public var als: RetrievalMetrics? = nil
    }

    /// The learning curve: if quality still climbs at 100%, more data is the next step; if
    /// it flattens early, a bigger model (or better features) is. The training interactions
    /// are shuffled once (seeded), each fraction takes a prefix of them.
    public static func learningCurve(_ data: TrainingData, fractions: [Double], parameters: TwoTowerParameters, baselines: Bool = true,
                                     progress: (LearningCurvePoint) -> Void = { _ in }) throws -> [LearningCurvePoint] {
        guard !fractions.isEmpty, fractions.allSatisfy({ $0 > 0 && $0 <= 1 }) else {
            throw EngineError.invalidData("learning-curve fractions must be in (0, 1]")
        }
        let split = LeaveLastOutSplit(data.log)
        var shuffled = split.train
        var g = SeededGenerator(seed: parameters.seed)
        shuffled.shuffle(using: &g)
        var p = parameters
        p.patience = 0
        var out = [LearningCurvePoint]()
        for f in fractions.sorted() {
            let subset = Array(shuffled.prefix(max(1, Int(Double(shuffled.count) * f))))
            let model = TwoTowerModel(userFeatures: data.userFeatures, itemFeatures: data.itemFeatures, parameters: p)
            var rng = SeededGenerator(seed: parameters.seed)
            let t0 = Clock.now()
            model.fit(subset, rng: &rng)
            let seconds = Clock.now() - t0
            var point = LearningCurvePoint(fraction: f, interactions: subset.count,
                                           test: try model.evaluate(heldOut: split.testItems, exclude: split.seenBeforeTest), seconds: seconds)
            if baselines {
                var part = split
                part.train = subset
                point.popularity = Baselines.popularity(part, items: data.log.items.count)
                let (x, y) = ImplicitALS.fit(pairs: subset, users: data.log.users.count, items: data.log.items.count,
                                             regularization: 1, alpha: 10, seed: parameters.seed)
                point.als = try RetrievalMetrics.evaluate(users: x, items: y, heldOut: split.testItems, exclude: split.seenBeforeTest)
            }
            progress(point)
            out.append(point)
        }
        return out
    }
}
