/// How two vectors are compared.
///
/// Funnel ranks by a *distance*: smaller is nearer, for every metric.
/// - `l2`: squared Euclidean distance.
/// - `innerProduct`: the negated inner product (so the largest dot product is nearest).
/// - `cosine`: one minus the cosine similarity; vectors are normalized once when added.
public enum Metric: String, Sendable, CaseIterable, Codable {
    case l2
    case innerProduct = "ip"
    case cosine

    /// Parses `l2`, `ip`/`inner_product`/`dot`, or `cosine`/`angular`.
    public init?(name: String) {
        switch name.lowercased() {
        case "l2", "euclidean", "sqeuclidean": self = .l2
        case "ip", "inner_product", "innerproduct", "dot": self = .innerProduct
        case "cosine", "cos", "angular": self = .cosine
        default: return nil
        }
    }

    /// The distance between two vectors of length `n`, computed directly.
    /// For `.cosine` the inputs must already be unit length.
    @inlinable
    public func distance(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        switch self {
        case .l2: return Distance.squaredL2(a, b, n)
        case .innerProduct: return -Distance.dot(a, b, n)
        case .cosine: return 1 - Distance.dot(a, b, n)
        }
    }
}
