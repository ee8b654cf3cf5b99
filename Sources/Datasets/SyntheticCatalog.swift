import LinearAlgebra
import Foundation

/// A generated recommendation catalog: users with latent tastes, items with latent
/// traits, categories, tags, text and creation times, a Zipf-like popularity skew,
/// interactions over time and items too new to have any (cold).
///
/// The generative story, per interaction at time t (times are spread evenly, so the
/// log is already in time order): pick a user by activity (Zipf); draw `candidates`
/// items already created by t, by popularity (Zipf over a random rank); pick one with
/// probability proportional to exp(sharpness * <user, item>). Tastes and traits live
/// near category centers, so categories and tags carry signal a model can learn.
///
/// Deterministic from `seed`: chunks of the log use their own random streams, so the
/// thread count does not change the data.
public struct SyntheticCatalog: Sendable {
    public struct Config: Sendable, Equatable {
        public var users = 5_000
        public var items = 20_000
        public var interactions = 500_000
        public var categories = 20
        public var tags = 200
        public var latentDimension = 16
        /// Popularity and activity skew: weight of rank r is 1 / (r + 1)^zipf.
        public var zipf: Double = 1.0
        /// Fraction of items created after the last interaction.
        public var coldItemFraction: Double = 0.05
        /// Items drawn by popularity before the user's taste chooses among them.
        public var candidates = 32
        /// How strongly taste decides among candidates.
        public var sharpness: Float = 6
        public var seed: UInt64 = 42
        /// Unix seconds of the first interaction, and the span of the log.
        public var start: Int64 = 1_600_000_000
        public var duration: Int64 = 180 * 86_400

        public init() {}
    }

    public let config: Config
    public var interactions: InteractionLog
    /// Item attributes: `category` (categorical), `tags` (multi-valued), `created_at`
    /// (timestamp), `price` (numeric), `title` (text).
    public var items: AttributeTable
    /// User attributes: `region` (categorical), `age` (numeric).
    public var users: AttributeTable
    /// The hidden truth the log was drawn from: one unit row per user / item.
    public let userTaste: Matrix
    public let itemTraits: Matrix
    /// Item indices created after the last interaction (they have none).
    public let coldItems: [Int32]

    static let words = [
        "red", "blue", "green", "gold", "silver", "classic", "modern", "vintage", "compact", "deluxe",
        "smart", "wireless", "organic", "handmade", "premium", "eco", "portable", "heavy", "light", "mini",
        "ultra", "pro", "max", "lite", "family", "travel", "outdoor", "home", "kitchen", "garden",
    ]

    /// Generates the catalog. - Complexity: O(interactions * candidates * latentDimension),
    /// parallel over chunks of the log.
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

        // Users: taste near one or two favourite categories; activity Zipf.
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
            region.append("r\(rng.nextInt(below: 10))")
            age.append(Float(18 + rng.nextInt(below: 50)))
        }
        taste.normalizeRows()
        var userRanks = Array(0..<nUsers)
        userRanks.shuffle(using: &rng)
        var userCumulative = [Double](repeating: 0, count: nUsers)
        acc = 0
        for u in 0..<nUsers {
            acc += 1 / pow(Double(userRanks[u] + 1), config.zipf * 0.7)
            userCumulative[u] = acc
        }

        // The log, in chunks with their own streams.
        let total = config.interactions
        var userCol = [Int32](repeating: 0, count: total)
        var itemCol = [Int32](repeating: 0, count: total)
        var timeCol = [Int64](repeating: 0, count: total)
        let chunk = 16_384
        let chunks = (total + chunk - 1) / chunk
        let nCand = max(1, config.candidates)
        userCol.withUnsafeMutableBufferPointer { uc in
            itemCol.withUnsafeMutableBufferPointer { ic in
                timeCol.withUnsafeMutableBufferPointer { tc in
                    taste.storage.withUnsafeBufferPointer { tp in
                        traits.storage.withUnsafeBufferPointer { ip in
                            let uc = uc.baseAddress!, ic = ic.baseAddress!, tc = tc.baseAddress!
                            Parallel.forEach(blocks: chunks, threads: threads) { c, _ in
                                var r = SeededGenerator(seed: config.seed, stream: 1_000 + UInt64(c))
                                var cand = [Int32](repeating: 0, count: nCand)
                                var logits = [Float](repeating: 0, count: nCand)
                                for n in (c * chunk)..<min(total, (c + 1) * chunk) {
                                    let t = config.start + Int64(Double(n) / Double(total) * Double(config.duration))
                                    let u = search(userCumulative, userCumulative[nUsers - 1] * r.nextUnitDouble())
                                    // Items created by t form a prefix of the creation order.
                                    let avail = max(1, upperBound(created, t, limit: warm))
                                    var best: Float = -.infinity
                                    for k in 0..<nCand {
                                        let i = search(cumulative, cumulative[avail - 1] * r.nextUnitDouble(), limit: avail)
                                        cand[k] = Int32(i)
                                        logits[k] = config.sharpness * Distance.dot(tp.baseAddress! + u * d, ip.baseAddress! + i * d, d)
                                        best = max(best, logits[k])
                                    }
                                    var z: Float = 0
                                    for k in 0..<nCand { logits[k] = expf(logits[k] - best); z += logits[k] }
                                    var pick = r.nextUnit() * z
                                    var chosen = cand[nCand - 1]
                                    for k in 0..<nCand {
                                        pick -= logits[k]
                                        if pick <= 0 { chosen = cand[k]; break }
                                    }
                                    uc[n] = Int32(u)
                                    ic[n] = chosen
                                    tc[n] = t
                                }
                            }
                        }
                    }
                }
            }
        }

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
            userTaste: taste, itemTraits: traits, coldItems: (warm..<nItems).map { Int32($0) })
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
