import LinearAlgebra
import Foundation

/// A generated recommendation catalog that behaves like a real one: users with latent
/// tastes over one or two favourite categories, items with latent traits near their
/// category's center, tags, text and creation times, a Zipf popularity skew with a long
/// tail, far more items than users when asked, and items too new to have any interaction.
///
/// The generative story, per user: an activity level (Zipf over users, at least
/// `minimumPerUser` interactions, as real logs keep users with a few), a window of activity
/// within the log's span, and that many distinct items. Each interaction at time t draws
/// `candidates` items among those created by t, a share `popularityShare` of them by
/// popularity (Zipf over a random rank) and the rest uniformly (the long tail reaches users
/// through taste, not through popularity), and picks one with probability proportional to
/// exp(sharpness * <user, item>). So a model that learns tastes beats popularity, as on real
/// catalogs, and categories, tags and titles carry signal for items seen rarely or never.
///
/// Deterministic from `seed`: each user draws from a random stream of its own, so the
/// thread count does not change the data.
public struct SyntheticCatalog: Sendable {
    public struct Config: Sendable, Equatable {
        public var users = 5_000
        public var items = 20_000
        public var interactions = 500_000
        public var categories = 20
        public var tags = 200
        public var latentDimension = 16
        /// Popularity skew: weight of popularity rank r is 1 / (r + 1)^zipf.
        public var zipf: Double = 1.0
        /// Activity skew over users: weight of activity rank r is 1 / (r + 1)^activityZipf.
        public var activityZipf: Double = 0.7
        /// Every user has at least this many interactions (when the log is large enough).
        public var minimumPerUser = 20
        /// Fraction of items created after the last interaction.
        public var coldItemFraction: Double = 0.05
        /// Items drawn before the user's taste chooses among them.
        public var candidates = 48
        /// The share of those candidates drawn by popularity; the rest are drawn uniformly.
        public var popularityShare: Double = 0.7
        /// How strongly taste decides among candidates.
        public var sharpness: Float = 8
        public var seed: UInt64 = 42
        /// Unix seconds of the first interaction, and the span of the log.
        public var start: Int64 = 1_600_000_000
        public var duration: Int64 = 180 * 86_400

        public init() {}

        /// The shape of a small public long-tail catalog: 600 users, 10,000 items, 100,000
        /// interactions (most items seen a few times, a few seen by most users).
        public static var longTail: Config {
            var c = Config()
            c.users = 600
            c.items = 10_000
            c.interactions = 100_000
            c.categories = 20
            c.tags = 300
            c.activityZipf = 1.0
            c.zipf = 1.2
            c.popularityShare = 0.9
            c.sharpness = 16
            return c
        }
    }

    public let config: Config
    public var interactions: InteractionLog
    /// Item attributes: `category` (categorical), `tags` (multi-valued), `created_at`
    /// (timestamp), `price` (numeric), `title` (text).
    public var items: AttributeTable
    /// User attributes: `region` (categorical, weakly tied to the favourite category), `age` (numeric).
    public var users: AttributeTable
    /// The hidden truth the log was drawn from: one unit row per user / item.
    public let userTaste: Matrix
    public let itemTraits: Matrix
    /// Each item's popularity weight, 1 / (rank + 1)^zipf (the chance of being drawn as a
    /// popular candidate is proportional to it among the items that exist).
    public let itemPopularity: [Double]
    /// Item indices created after the last interaction (they have none).
    public let coldItems: [Int32]

    static let words = [
        "red", "blue", "green", "gold", "silver", "classic", "modern", "vintage", "compact", "deluxe",
        "smart", "wireless", "organic", "handmade", "premium", "eco", "portable", "heavy", "light", "mini",
        "ultra", "pro", "max", "lite", "family", "travel", "outdoor", "home", "kitchen", "garden",
    ]

    /// Generates the catalog. - Complexity: O(interactions * candidates * latentDimension),
    /// parallel over users.
    public static func generate(_ config: Config, threads: Int = Parallel.availableCores) -> SyntheticCatalog {
        precondition(config.users > 0 && config.items > 0 && config.categories > 0 && config.tags > 0,
                     "catalog sizes must be positive")
        let d = config.latentDimension
        var rng = SeededGenerator(seed: config.seed, stream: 0)

        // Category centers and tag affinities.
        var centers = Matrix(rows: config.categories, columns: d)
        for i in centers.storage.indices { centers.storage[i] = rng.nextGaussian() }
        centers.normalizeRows()

        // Items, oldest first: category, traits near the category center, tags, times.
        let nItems = config.items
        let nCold = min(nItems - 1, Int((Double(nItems) * config.coldItemFraction).rounded()))
        var itemCategory = [Int32](repeating: 0, count: nItems)
        var traits = Matrix(rows: nItems, columns: d)
        for i in 0..<nItems {
            let c = rng.nextInt(below: config.categories)
            itemCategory[i] = Int32(c)
            for j in 0..<d { traits[i, j] = centers[c, j] + 0.6 * rng.nextGaussian() / Float(d).squareRoot() * 2 }
        }
        traits.normalizeRows()
        let end = config.start + config.duration
        let warm = nItems - nCold
        var created = [Int64](repeating: 0, count: nItems)
        // Warm items appear from half a span before the log to its end; cold ones after it.
        let warmFrom = config.start - config.duration / 2
        for i in 0..<warm { created[i] = warmFrom + Int64(Double(i) / Double(warm) * Double(end - warmFrom)) }
        for i in warm..<nItems { created[i] = end + 1 + Int64(Double(i - warm) / Double(max(1, nCold)) * Double(config.duration / 20)) }

        // Popularity: Zipf over a random permutation of ranks; prefix sums by creation order.
        var ranks = Array(0..<nItems)
        ranks.shuffle(using: &rng)
        var cumulative = [Double](repeating: 0, count: nItems)
        var acc = 0.0
        for i in 0..<nItems {
            acc += 1 / pow(Double(ranks[i] + 1), config.zipf)
            cumulative[i] = acc
        }

        // Users: taste near one or two favourite categories; region weakly tied to the first.
        let nUsers = config.users
        var taste = Matrix(rows: nUsers, columns: d)
        var region = [String]()
        var age = [Float]()
        for u in 0..<nUsers {
            let a = rng.nextInt(below: config.categories), b = rng.nextInt(below: config.categories)
            let mix = rng.nextUnit()
            for j in 0..<d {
                taste[u, j] = mix * centers[a, j] + (1 - mix) * centers[b, j] + 0.3 * rng.nextGaussian() / Float(d).squareRoot() * 2
            }
            region.append("r\(rng.nextUnit() < 0.4 ? a % 10 : rng.nextInt(below: 10))")
            age.append(Float(18 + rng.nextInt(below: 50)))
        }
        taste.normalizeRows()

        // Activity: a floor per user, the rest by Zipf over a random rank, summing exactly
        // to the log's size (largest remainders).
        let total = config.interactions
        let floor = min(max(0, config.minimumPerUser), total / nUsers)
        var userRanks = Array(0..<nUsers)
        userRanks.shuffle(using: &rng)
        let weights = userRanks.map { 1 / pow(Double($0 + 1), config.activityZipf) }
        let weightSum = weights.reduce(0, +), rest = total - floor * nUsers
        var counts = weights.map { floor + Int(Double(rest) * $0 / weightSum) }
        var short = total - counts.reduce(0, +)
        let byWeight = (0..<nUsers).sorted { weights[$0] > weights[$1] }
        for u in byWeight where short > 0 {
            counts[u] += 1
            short -= 1
        }
        // Nobody touches more than a quarter of the catalog (the heaviest users of real logs
        // stop there too, and their items stay distinct); the excess goes to the next users.
        let cap = max(floor, warm / 4, (total + nUsers - 1) / nUsers)
        var excess = 0
        for u in 0..<nUsers where counts[u] > cap {
            excess += counts[u] - cap
            counts[u] = cap
        }
        while excess > 0 {
            for u in byWeight where counts[u] < cap && excess > 0 {
                counts[u] += 1
                excess -= 1
            }
        }
        var offsets = [Int](repeating: 0, count: nUsers + 1)
        for u in 0..<nUsers { offsets[u + 1] = offsets[u] + counts[u] }

        // The log, user by user (each with its own stream), then put in time order.
        var userCol = [Int32](repeating: 0, count: total)
        var itemCol = [Int32](repeating: 0, count: total)
        var timeCol = [Int64](repeating: 0, count: total)
        let nCand = max(1, config.candidates)
        let popular = min(nCand, Int((Double(nCand) * config.popularityShare).rounded()))
        userCol.withUnsafeMutableBufferPointer { uc in
            itemCol.withUnsafeMutableBufferPointer { ic in
                timeCol.withUnsafeMutableBufferPointer { tc in
                    taste.storage.withUnsafeBufferPointer { tp in
                        traits.storage.withUnsafeBufferPointer { ip in
                            let uc = uc.baseAddress!, ic = ic.baseAddress!, tc = tc.baseAddress!
                            Parallel.forEach(blocks: nUsers, threads: threads) { u, _ in
                                var r = SeededGenerator(seed: config.seed, stream: 1_000 + UInt64(u))
                                let n = counts[u], o = offsets[u]
                                guard n > 0 else { return }
                                // A window of activity: from a tenth of the span to all of it.
                                let span = Double(config.duration) * (0.1 + 0.9 * r.nextUnitDouble())
                                let from = Double(config.start) + (Double(config.duration) - span) * r.nextUnitDouble()
                                var times = (0..<n).map { _ in Int64(from + span * r.nextUnitDouble()) }
                                times.sort()
                                var seen = Set<Int32>(minimumCapacity: n)
                                var cand = [Int32](repeating: 0, count: nCand)
                                var logits = [Float](repeating: 0, count: nCand)
                                for (k, t) in times.enumerated() {
                                    // Items created by t form a prefix of the creation order.
                                    let avail = max(1, upperBound(created, t, limit: warm))
                                    var chosen: Int32 = 0
                                    // Distinct items per user; a user who has seen nearly all
                                    // that exists may repeat one after a few tries.
                                    for attempt in 0..<4 {
                                        var best: Float = -.infinity
                                        for c in 0..<nCand {
                                            let i = c < popular ? search(cumulative, cumulative[avail - 1] * r.nextUnitDouble(), limit: avail)
                                                                : r.nextInt(below: avail)
                                            cand[c] = Int32(i)
                                            logits[c] = seen.contains(Int32(i)) ? -.infinity
                                                : config.sharpness * Distance.dot(tp.baseAddress! + u * d, ip.baseAddress! + i * d, d)
                                            best = max(best, logits[c])
                                        }
                                        if best == -.infinity && attempt < 3 { continue }
                                        if best == -.infinity { chosen = cand[0]; break }
                                        var z: Float = 0
                                        for c in 0..<nCand { logits[c] = expf(logits[c] - best); z += logits[c] }
                                        var pick = r.nextUnit() * z
                                        chosen = -1
                                        for c in 0..<nCand where logits[c] > 0 {
                                            chosen = cand[c]
                                            pick -= logits[c]
                                            if pick <= 0 { break }
                                        }
                                        break
                                    }
                                    seen.insert(chosen)
                                    uc[o + k] = Int32(u)
                                    ic[o + k] = chosen
                                    tc[o + k] = t
                                }
                            }
                        }
                    }
                }
            }
        }
        let order = (0..<total).sorted { a, b in
            timeCol[a] != timeCol[b] ? timeCol[a] < timeCol[b] : a < b
        }
        userCol = order.map { userCol[$0] }
        itemCol = order.map { itemCol[$0] }
        timeCol = order.map { timeCol[$0] }

        var log = InteractionLog(users: Vocabulary((0..<nUsers).map { "u\($0)" }),
                                 items: Vocabulary((0..<nItems).map { "i\($0)" }))
        log.userIndex = userCol
        log.itemIndex = itemCol
        log.timestamps = timeCol

        // Item attributes.
        var itemBuilder = AttributeTable.Builder(specs: [
            ColumnSpec("category", .categorical), ColumnSpec("tags", .multiCategorical(separator: "|")),
            ColumnSpec("created_at", .timestamp), ColumnSpec("price", .numeric), ColumnSpec("title", .text),
        ])
        let tagsPerCategory = max(1, config.tags / config.categories)
        for i in 0..<nItems {
            let c = Int(itemCategory[i])
            var tags = Set<Int>()
            for _ in 0..<(1 + rng.nextInt(below: 4)) {
                // Mostly tags of the item's own category, sometimes any tag.
                let t = rng.nextUnit() < 0.8 ? (c * tagsPerCategory + rng.nextInt(below: tagsPerCategory)) % config.tags
                                             : rng.nextInt(below: config.tags)
                tags.insert(t)
            }
            let price = (10 * exp(Double(rng.nextGaussian()) * 0.8 + Double(c % 5) * 0.3) * 100).rounded() / 100
            let title = "\(words[(c * 3) % words.count]) \(words[rng.nextInt(below: words.count)]) \(words[rng.nextInt(below: words.count)]) item \(i)"
            try! itemBuilder.append(fields: [
                "c\(c)", tags.sorted().map { "t\($0)" }.joined(separator: "|"), String(created[i]), String(price), title,
            ]) { DatasetError.badRow(path: "generated", line: i, reason: $0) }
        }
        var userBuilder = AttributeTable.Builder(specs: [ColumnSpec("region", .categorical), ColumnSpec("age", .numeric)])
        for u in 0..<nUsers {
            try! userBuilder.append(fields: [region[u], String(age[u])]) { DatasetError.badRow(path: "generated", line: u, reason: $0) }
        }
        return SyntheticCatalog(
            config: config, interactions: log,
            items: itemBuilder.table(keys: log.items), users: userBuilder.table(keys: log.users),
            userTaste: taste, itemTraits: traits,
            itemPopularity: ranks.map { 1 / pow(Double($0 + 1), config.zipf) }, coldItems: (warm..<nItems).map { Int32($0) })
    }

    /// The first index whose cumulative weight exceeds `x` (within the first `limit`).
    @inline(__always)
    static func search(_ cum: [Double], _ x: Double, limit: Int? = nil) -> Int {
        var lo = 0, hi = (limit ?? cum.count) - 1
        while lo < hi {
            let mid = (lo + hi) >> 1
            if cum[mid] > x { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }

    /// The number of values <= t among the first `limit` (sorted ascending).
    @inline(__always)
    static func upperBound(_ values: [Int64], _ t: Int64, limit: Int) -> Int {
        var lo = 0, hi = limit
        while lo < hi {
            let mid = (lo + hi) >> 1
            if values[mid] <= t { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
