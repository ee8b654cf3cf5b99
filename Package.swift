// swift-tools-version: 6.1
//
// Funnel: a recommendation and search retrieval engine.
// The module graph mirrors the funnel; each stage imports only the stages below it.
//
//   CBLAS, _FunnelKernels          system BLAS/LAPACKE, AVX2/FMA C kernels
//   CMPI, Collectives              Open MPI; allreduce / allgather / alltoall over MPI, threads, or one rank
//   LinearAlgebra                  Matrix, BLAS wrappers, distances, top-k, RNG, parallel loops
//   Persistence                    atomic writes, bounds-checked binary reading
//   Datasets                       vector files, CSV/MovieLens loaders, synthetic catalogs
//   ExactSearch                    blocked-sgemm exact k-NN: the floor and the oracle
//   HNSW                           approximate nearest neighbors: build, search, delete, filter, quantize, persist
//   TwoTower                       feature embeddings, user/item towers, in-batch softmax, ALS baseline
//   TextSearch                     BM25 lexical retrieval and reciprocal rank fusion
//   Candidates                     RankedItem: a candidate as it moves through the stages, with its explanation
//   Rerank                         MMR diversity, freshness decay, business rules
//   GBDT                           gradient-boosted trees: lambdarank / binary / regression, inference, SHAP
//   Features                       per-request ranking features: item attributes, as-of interaction statistics, ranker training data
//   Registry                       the model registry: versions, states, promote / canary / shadow / rollback
//   Serving                        the Recommender: stage budgets, deadline, fallbacks, circuit breakers
//   Engine                         the workflows joining the stages: data sources, the funnel trainer,
//                                  model bundles, the serving engine, retraining, evaluation
//   FunnelServer                   the HTTP API (hummingbird): /v1 queries, live writes, registry operations
//   PostgresLog                    the change log replicas share, in PostgreSQL (postgres-nio)
//   Funnel                         umbrella: `import Funnel` gives the whole stack
//   funnel (FunnelCLI)             the command line
import PackageDescription

let package = Package(
    name: "Funnel",
    products: [
        .library(name: "Funnel", targets: ["Funnel"]),
        .library(name: "LinearAlgebra", targets: ["LinearAlgebra"]),
        .library(name: "Collectives", targets: ["Collectives"]),
        .library(name: "Datasets", targets: ["Datasets"]),
        .library(name: "ExactSearch", targets: ["ExactSearch"]),
        .library(name: "HNSW", targets: ["HNSW"]),
        .library(name: "GBDT", targets: ["GBDT"]),
        .library(name: "TwoTower", targets: ["TwoTower"]),
        .library(name: "Rerank", targets: ["Rerank"]),
        .library(name: "TextSearch", targets: ["TextSearch"]),
        .library(name: "Serving", targets: ["Serving"]),
        .library(name: "Registry", targets: ["Registry"]),
        .library(name: "Engine", targets: ["Engine"]),
        .library(name: "FunnelServer", targets: ["FunnelServer"]),
        .library(name: "PostgresLog", targets: ["PostgresLog"]),
        .executable(name: "funnel", targets: ["FunnelCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        // Hummingbird's own dependencies, named for the hardened HTTP/1 channel's handlers.
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.25.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.21.0"),
        // postgres-nio's own, named for the TLS setting of a change-log URL.
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.25.0"),
    ],
    targets: [
        // MARK: - Public API

        .target(
            name: "LinearAlgebra",
            dependencies: ["CBLAS", "_FunnelKernels"]
        ),
        .target(name: "Persistence", dependencies: ["_FunnelKernels"]),
        .target(name: "Collectives", dependencies: ["CMPI"]),
        .target(
            name: "Datasets",
            dependencies: ["LinearAlgebra", "Persistence"]
        ),
        .target(
            name: "ExactSearch",
            dependencies: ["LinearAlgebra", "CBLAS", "_FunnelKernels"]
        ),
        .target(
            name: "HNSW",
            dependencies: ["LinearAlgebra", "ExactSearch", "Persistence", "_FunnelKernels"]
        ),
        .target(
            name: "TwoTower",
            dependencies: ["LinearAlgebra", "Collectives", "Datasets", "Persistence", "CBLAS", "_FunnelKernels"]
        ),
        .target(
            name: "TextSearch",
            dependencies: ["LinearAlgebra"]
        ),
        .target(name: "Candidates"),
        .target(
            name: "Rerank",
            dependencies: ["Candidates", "LinearAlgebra", "_FunnelKernels"]
        ),
        .target(
            name: "Features",
            dependencies: ["Candidates", "Datasets", "LinearAlgebra"]
        ),
        .target(
            name: "Registry",
            dependencies: ["Persistence", "_FunnelKernels"]
        ),
        .target(
            name: "GBDT",
            dependencies: ["LinearAlgebra", "Collectives", "Datasets", "Persistence", "_FunnelKernels"]
        ),
        .target(
            name: "Serving",
            dependencies: ["LinearAlgebra", "Persistence", "_FunnelKernels", "Datasets", "ExactSearch", "HNSW", "GBDT", "Candidates", "Features", "Rerank",
                           .product(name: "CoreMetrics", package: "swift-metrics")]
        ),
        .target(
            name: "Engine",
            dependencies: ["LinearAlgebra", "Collectives", "Persistence", "Datasets", "HNSW", "GBDT", "TwoTower", "Candidates", "Features", "Rerank", "TextSearch", "Registry", "Serving"]
        ),
        .target(
            name: "FunnelServer",
            dependencies: ["Engine", "Persistence", "Registry", "Serving",
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "HummingbirdCore", package: "hummingbird"),
                           .product(name: "HTTPTypes", package: "swift-http-types"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio"),
                           .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                           .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "Metrics", package: "swift-metrics")]
        ),
        .target(
            name: "PostgresLog",
            dependencies: ["Persistence",
                           .product(name: "PostgresNIO", package: "postgres-nio"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOSSL", package: "swift-nio-ssl"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "CoreMetrics", package: "swift-metrics")]
        ),
        .target(
            name: "Funnel",
            dependencies: ["LinearAlgebra", "Collectives", "Persistence", "Datasets", "ExactSearch", "HNSW", "GBDT", "TwoTower", "Candidates", "Rerank", "TextSearch", "Features", "Registry", "Serving", "Engine"]
        ),
        .executableTarget(
            name: "FunnelCLI",
            dependencies: [
                "Funnel", "FunnelServer", "PostgresLog",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),

        // MARK: - Implementation details

        .systemLibrary(
            name: "CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev", "liblapacke-dev"])]
        ),
        .systemLibrary(
            name: "CMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]
        ),
        .target(name: "_FunnelKernels"),

        // MARK: - Unit test bundles

        .target(name: "_TestSupport", dependencies: ["Engine", "Datasets", "TwoTower"], path: "Tests/_TestSupport"),

        // Fuzz targets for every parser and decoder (tools/fuzz builds them under libFuzzer;
        // FuzzRegressionTests replays the committed corpora through them).
        .target(name: "_FuzzTargets", dependencies: [
            "Engine", "FunnelServer", "Datasets", "GBDT", "HNSW", "Persistence", "Registry", "TwoTower", "_TestSupport",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
        ], path: "Tests/Fuzz/Targets"),
        .target(name: "_FuzzMain", path: "Tests/Fuzz/Main"),
        .executableTarget(name: "funnel-fuzz", dependencies: ["_FuzzTargets", "_FuzzMain"], path: "Tests/Fuzz/Driver"),

        .testTarget(name: "LinearAlgebraTests", dependencies: ["LinearAlgebra", "_FunnelKernels"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "LinearAlgebra", "_TestSupport"]),
        .testTarget(name: "ExactSearchTests", dependencies: ["ExactSearch", "Datasets", "LinearAlgebra"]),
        .testTarget(name: "HNSWTests", dependencies: ["HNSW", "ExactSearch", "Datasets", "LinearAlgebra", "Persistence", "_FunnelKernels", "_TestSupport"]),
        .testTarget(name: "PersistenceTests", dependencies: ["Persistence"]),
        .testTarget(name: "CollectivesTests", dependencies: ["Collectives"]),
        .testTarget(name: "GBDTTests", dependencies: ["GBDT", "Collectives", "Datasets", "LinearAlgebra", "_FunnelKernels"], exclude: ["Fixtures"]),  // read by path
        .testTarget(name: "TwoTowerTests", dependencies: ["TwoTower", "Datasets", "LinearAlgebra", "Persistence", "_FunnelKernels"]),
        .testTarget(name: "RerankTests", dependencies: ["Rerank", "LinearAlgebra"]),
        .testTarget(name: "TextSearchTests", dependencies: ["TextSearch"]),
        .testTarget(name: "ServingTests", dependencies: [
            "Serving", "Features", "Rerank", "HNSW", "GBDT", "Datasets", "LinearAlgebra", "TwoTower",
            .product(name: "MetricsTestKit", package: "swift-metrics"),
        ]),
        .testTarget(name: "RegistryTests", dependencies: ["Registry", "Persistence"]),
        .testTarget(name: "FunnelServerTests", dependencies: [
            "FunnelServer", "Engine", "Registry", "Datasets", "LinearAlgebra", "_TestSupport",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
        ]),
        .testTarget(name: "PostgresLogTests", dependencies: ["PostgresLog", "Persistence"]),
        .testTarget(name: "FuzzRegressionTests", dependencies: ["_FuzzTargets"]),
        // Runs the funnel executable built beside the test runner.
        .testTarget(name: "CLITests", exclude: []),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "Registry", "Serving", "TwoTower", "Datasets", "HNSW", "GBDT", "Persistence", "LinearAlgebra", "_TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
