import ArgumentParser
import Foundation
import Funnel

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write generated data sets to files, for Funnel and for peer tools.",
        subcommands: [Vectors.self, Catalog.self]
    )

    struct Vectors: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Clustered vectors (Gaussian mixture): base.fvecs, query.fvecs and exact gt.ivecs.")
        @Option(help: "Base vectors.") var n: Int = 100_000
        @Option(help: "Dimension.") var dim: Int = 128
        @Option(help: "Query vectors.") var queries: Int = 1_000
        @Option(help: "Mixture components.") var clusters: Int = 100
        @Option(help: "Per-coordinate standard deviation around a center.") var spread: Float = 0.3
        @Option(help: "Metric for the ground truth: l2, ip or cosine.") var metric: String = "l2"
        @Option(help: "Ground-truth neighbors per query (0: none).") var gtK: Int = 100
        @Option(help: "Random seed.") var seed: UInt64 = 42
        @Option(help: "Output directory.") var out: String

        func validate() throws {
            guard n > 0, dim > 0, queries > 0, clusters > 0 else { throw ValidationError("sizes must be positive") }
            guard Metric(name: metric) != nil else { throw ValidationError("--metric must be l2, ip or cosine") }
        }

        func run() throws {
            try FunnelCLI.run {
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                let t0 = now()
                let mix = GaussianMixture(dimension: dim, clusters: clusters, spread: spread, seed: seed)
                let base = mix.sample(n, stream: 1)
                let q = mix.sample(queries, stream: 2)
                try VectorFile.writeFvecs(base, to: "\(out)/base.fvecs")
                try VectorFile.writeFvecs(q, to: "\(out)/query.fvecs")
                print("wrote \(out)/base.fvecs (\(n) x \(dim)) and \(out)/query.fvecs (\(queries)) in \(fmt(now() - t0, 2)) s")
                if gtK > 0 {
                    let t1 = now()
                    let index = try ExactIndex(vectors: base, metric: Metric(name: metric)!)
                    let r = try index.search(q, k: min(gtK, n))
                    try VectorFile.writeIvecs(r.ids, columns: r.k, to: "\(out)/gt.ivecs")
                    print("wrote \(out)/gt.ivecs (exact top-\(r.k), \(metric)) in \(fmt(now() - t1, 2)) s")
                }
            }
        }
    }

    struct Catalog: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A synthetic catalog as CSV (interactions.csv, items.csv, users.csv) and the feature schema that reads it (schema.json).")
        @Option(help: "Sizes to start from: default (5,000 users, 20,000 items, 500,000 interactions) or long-tail (600 users, 10,000 items, 100,000 interactions).")
        var preset: String = "default"
        @Option(help: "Users (default: the preset's).") var users: Int?
        @Option(help: "Items (default: the preset's).") var items: Int?
        @Option(help: "Interactions (default: the preset's).") var interactions: Int?
        @Option(help: "Popularity skew (Zipf exponent over items; default: the preset's).") var zipf: Double?
        @Option(help: "Activity skew (Zipf exponent over users; default: the preset's).") var activityZipf: Double?
        @Option(help: "Share of each choice's candidates drawn by popularity, the rest uniformly (default: the preset's).") var popularityShare: Double?
        @Option(help: "How strongly taste decides among the candidates (default: the preset's).") var sharpness: Float?
        @Option var seed: UInt64 = 42
        @Option(help: "Output directory.") var out: String

        func validate() throws {
            if let zipf, !(zipf.isFinite && zipf >= 0) { throw ValidationError("--zipf must be a finite number >= 0") }
            if let activityZipf, !(activityZipf.isFinite && activityZipf >= 0) { throw ValidationError("--activity-zipf must be a finite number >= 0") }
            if let popularityShare, !(0...1).contains(popularityShare) { throw ValidationError("--popularity-share must be between 0 and 1") }
            if let sharpness, !(sharpness.isFinite && sharpness >= 0) { throw ValidationError("--sharpness must be a finite number >= 0") }
            guard ["default", "long-tail"].contains(preset) else { throw ValidationError("--preset must be default or long-tail, not '\(preset)'") }
            for (name, value) in [("users", users), ("items", items), ("interactions", interactions)] {
                if let value, value < 1 { throw ValidationError("--\(name) must be positive, not \(value)") }
            }
        }

        func run() throws {
            try FunnelCLI.run {
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                var config = preset == "long-tail" ? SyntheticCatalog.Config.longTail : SyntheticCatalog.Config()
                if let users { config.users = users }
                if let items { config.items = items }
                if let interactions { config.interactions = interactions }
                if let zipf { config.zipf = zipf }
                if let activityZipf { config.activityZipf = activityZipf }
                if let popularityShare { config.popularityShare = popularityShare }
                if let sharpness { config.sharpness = sharpness }
                config.seed = seed
                let t0 = now()
                let cat = SyntheticCatalog.generate(config)
                print("generated \(cat.interactions.count) interactions in \(fmt(now() - t0, 2)) s")
                try cat.writeCSV(to: out)
                try AtomicFile.write(Array(try DataSource.syntheticSchema.json().utf8) + [10], to: "\(out)/schema.json")
                print("wrote \(out)/interactions.csv, items.csv, users.csv, schema.json; train on them with\n"
                      + "  funnel train --interactions \(out)/interactions.csv --items \(out)/items.csv --users \(out)/users.csv --schema \(out)/schema.json")
            }
        }
    }
}
