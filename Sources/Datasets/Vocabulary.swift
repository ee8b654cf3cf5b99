/// A mapping between external string ids and dense indices 0..<count, in first-seen order.
public struct Vocabulary: Sendable, Equatable {
    /// External ids by index.
    public private(set) var keys: [String] = []
    private var index: [String: Int32] = [:]

    public init() {}

    public init(_ keys: [String]) {
        for k in keys { _ = intern(k) }
    }

    public var count: Int { keys.count }

    /// The index of `key`, adding it when new.
    @discardableResult
    public mutating func intern(_ key: String) -> Int32 {
        if let i = index[key] { return i }
        let i = Int32(keys.count)
        keys.append(key)
        index[key] = i
        return i
    }

    /// The index of `key`, or nil when unknown.
    public func lookup(_ key: String) -> Int32? { index[key] }

    public subscript(i: Int32) -> String { keys[Int(i)] }
}
