import ArgumentParser
import Foundation
import Funnel

/// The main job on built-in data: generate a catalog, embed items, retrieve for users.
///
/// Today the funnel's first stages run: a generated catalog, feature-based item vectors
/// (category and tags), user profiles pooled from their history, and exact cosine
/// retrieval over the catalog, evaluated leave-last-one-out against popularity. Later
/// stages (two-tower embeddings, HNSW, GBDT ranking, re-ranking) extend this command.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the funnel end to end on a generated catalog (no download).")

    @Option(help: "Users in the generated catalog.") var users: Int = 5_000
    @Option(help: "Items in the generated catalog.") var items: Int = 20_000
    @Option(help: "Interactions in the generated catalog.") var interactions: Int = 500_000
    @Option(help: "Users to evaluate (leave-last-one-out).") var evalUsers: Int = 1_000
    @Option(help: "Recommendations per user.") var k: Int = 10
    @Option(help: "Candidates retrieved per user before ranking.") var candidates: Int = 200
    @Option(help: "Weight of log popularity in the ranking blend.") var popularityWeight: Double = 1.0
    @Option(help: "Random seed.") var seed: UInt64 = 42
    @Option(help: "Threads (default: all cores).") var threads: Int?

    func validate() throws {
        guard users > 0, items > 0, interactions > 0 else { throw ValidationError("catalog sizes must be positive") }
        guard k > 0 else { throw ValidationError("--k must be positive") }
    }

    func run() throws {
        try FunnelCLI.run {
            let threads = threads ?? Parallel.availableCores
            var config = SyntheticCatalog.Config()
            config.users = users
            config.items = items
            config.interactions = interactions
            config.seed = seed
            var t = now()
            let catalog = SyntheticCatalog.generate(config, threads: threads)
            let events = catalog.interactions
            print("1. catalog: \(users) users, \(items) items (\(catalog.coldItems.count) cold), "
                  + "\(events.count) interactions generated in \(fmt(now() - t, 2)) s")

            // Split: each user's last interaction is the test item.
            var history = [[Int32]](repeating: [], count: users)
            for n in 0..<events.count { history[Int(events.userIndex[n])].append(events.itemIndex[n]) }  // already in time order
            var testItem = [Int32](repeating: -1, count: users)
            var popularity = [Int](repeating: 0, count: items)
            for u in 0..<users where history[u].count >= 2 {
                testItem[u] = history[u].removeLast()
            }
            for h in history { for i in h { popularity[Int(i)] += 1 } }

            // Item vectors from features: category one-hot plus tags, unit length.
            t = now()
            let itemVectors = try ContentEmbedding.items(catalog.items)
            let index = try ExactIndex(vectors: itemVectors, metric: .cosine)
            print("2. item vectors: \(itemVectors.rows) x \(itemVectors.columns) from category + tags; "
                  + "exact cosine index built in \(fmt(now() - t, 3)) s")

            // Retrieval for evaluated users.
            let evaluated = (0..<users).filter { testItem[$0] >= 0 }.prefix(evalUsers)
            var profiles = Matrix(rows: evaluated.count, columns: itemVectors.columns)
            for (row, u) in evaluated.enumerated() {
                for i in history[u] {
                    for c in 0..<itemVectors.columns { profiles[row, c] += itemVectors[Int(i), c] }
                }
            }
            let maxSeen = evaluated.map { Set(history[$0]).count }.max() ?? 0
            let candidatesPerUser = min(items, candidates + maxSeen)
            t = now()
            let result = try index.search(profiles, k: candidatesPerUser, threads: threads)
            let retrievalSeconds = now() - t
            let byPopularity: [Int] = (0..<items).sorted { (a: Int, b: Int) -> Bool in
                popularity[a] != popularity[b] ? popularity[a] > popularity[b] : a < b
            }
            let logMax = log(1 + Double(popularity.max() ?? 1))
            var hitsContent = 0, hitsPopular = 0, hitsBlend = 0
            var shown = 0
            for (row, u) in evaluated.enumerated() {
                let seen = Set(history[u])
                let pool = result.neighbors(of: row).filter { !seen.contains(Int32($0.id)) }.prefix(candidates)
                let recs = pool.prefix(k)
                // A first ranking stage: similarity blended with log popularity over the candidates.
                let scored: [(Int, Double)] = pool.map { (n: Neighbor) -> (Int, Double) in
                    let prior = popularityWeight * log(1 + Double(popularity[n.id])) / logMax
                    return (n.id, Double(1 - n.distance) + prior)
                }
                let blended = scored.sorted { (a: (Int, Double), b: (Int, Double)) -> Bool in
                    a.1 != b.1 ? a.1 > b.1 : a.0 < b.0
                }.prefix(k)
                let popular = byPopularity.lazy.filter { !seen.contains(Int32($0)) }.prefix(k)
                let truth = Int(testItem[u])
                if recs.contains(where: { $0.id == truth }) { hitsContent += 1 }
                if blended.contains(where: { $0.0 == truth }) { hitsBlend += 1 }
                if popular.contains(truth) { hitsPopular += 1 }
                if shown < 3 {
                    shown += 1
                    let cats = history[u].suffix(5).map { categoryName(catalog.items, Int($0)) }
                    print("   user \(events.users[Int32(u)]): recent categories \(cats.joined(separator: " "))")
                    let list = blended.prefix(5).map { "\(events.items[Int32($0.0)])(\(categoryName(catalog.items, $0.0)), \(fmt($0.1, 2)))" }
                    print("     -> \(list.joined(separator: "  "))")
                }
            }
            let n = Double(evaluated.count)
            print("3. exact retrieval of \(candidates) candidates for \(evaluated.count) users in \(fmt(retrievalSeconds * 1000, 1)) ms "
                  + "(\(fmt(n / retrievalSeconds, 0)) users/s, \(threads) threads), ranked by similarity + popularity")
            print("4. leave-last-one-out HR@\(k) over \(evaluated.count) users:")
            printAligned(header: ["method", "HR@\(k)"], rows: [
                ["content similarity only", fmt(Double(hitsContent) / n, 4)],
                ["popularity only", fmt(Double(hitsPopular) / n, 4)],
                ["content retrieval + popularity ranking", fmt(Double(hitsBlend) / n, 4)],
            ])
            print("next stages (two-tower, HNSW, GBDT ranking, re-ranking) plug in here as they land.")
        }
    }

    func categoryName(_ table: AttributeTable, _ item: Int) -> String {
        guard let (v, codes) = table.categoricalCodes("category") else { return "?" }
        return v[codes[item]]
    }
}

/// Feature-hashing-free content vectors for the demo: one-hot category plus tags.
enum ContentEmbedding {
    static func items(_ table: AttributeTable) throws -> Matrix {
        guard let (cv, codes) = table.categoricalCodes("category"),
              case .multiCategorical(let tv, let offsets, let tags)? = table.columns["tags"] else {
            throw ValidationError("the item table needs 'category' and 'tags' columns")
        }
        let dim = cv.count + tv.count
        var m = Matrix(rows: table.count, columns: dim)
        for i in 0..<table.count {
            m[i, Int(codes[i])] = 1
            let n = Int(offsets[i + 1] - offsets[i])
            for j in Int(offsets[i])..<Int(offsets[i + 1]) {
                m[i, cv.count + Int(tags[j])] = 1 / Float(n).squareRoot()
            }
        }
        m.normalizeRows()
        return m
    }
}
