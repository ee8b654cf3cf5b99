import LinearAlgebra

/// Clustered vectors for ANN scale tests: a mixture of isotropic Gaussians around
/// random centers. Deterministic from the seed, whatever the thread count.
public struct GaussianMixture: Sendable {
    public let dimension: Int
    public let clusters: Int
    /// Standard deviation of each coordinate around its center (centers are N(0, 1)).
    public let spread: Float
    public let seed: UInt64
    /// The cluster centers, one per row.
    public let centers: Matrix

    public init(dimension: Int, clusters: Int, spread: Float = 0.3, seed: UInt64 = 42) {
        precondition(dimension > 0 && clusters > 0, "dimension and clusters must be positive")
        self.dimension = dimension
        self.clusters = clusters
        self.spread = spread
        self.seed = seed
        var rng = SeededGenerator(seed: seed, stream: 0)
        var c = Matrix(rows: clusters, columns: dimension)
        for i in c.storage.indices { c.storage[i] = rng.nextGaussian() }
        centers = c
    }

    /// `n` samples; `stream` selects an independent sequence (e.g. 1 for the base, 2 for queries).
    /// - Complexity: O(n * d), parallel over blocks of rows.
    public func sample(_ n: Int, stream: UInt64 = 1, threads: Int = Parallel.availableCores) -> Matrix {
        var m = Matrix(rows: n, columns: dimension)
        let block = 4096
        let blocks = (n + block - 1) / block
        let d = dimension
        m.storage.withUnsafeMutableBufferPointer { out in
            let out = out.baseAddress!
            centers.storage.withUnsafeBufferPointer { cs in
                Parallel.forEach(blocks: blocks, threads: threads) { b, _ in
                    var rng = SeededGenerator(seed: seed &+ stream &* 0x9E37_79B9, stream: UInt64(b))
                    for r in (b * block)..<min(n, (b + 1) * block) {
                        let c = rng.nextInt(below: clusters)
                        let row = out + r * d
                        let center = cs.baseAddress! + c * d
                        for j in 0..<d { row[j] = center[j] + spread * rng.nextGaussian() }
                    }
                }
            }
        }
        return m
    }
}
