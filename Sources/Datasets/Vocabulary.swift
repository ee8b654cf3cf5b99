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

    /// The index of `key`, adding it when new; refuses a key that is the same text as a
    /// known one in another Unicode form (NFC "é" against NFD "e\u{301}"): Swift compares
    /// strings by canonical equivalence, so the two would silently become one id.
    /// - Returns: the index, or the known spelling it collides with.
    public mutating func internExact(_ key: String) -> Result<Int32, VocabularyCollision> {
        let i = intern(key)
        let known = keys[Int(i)]
        if known.utf8.count != key.utf8.count || !known.utf8.elementsEqual(key.utf8) {
            return .failure(VocabularyCollision(known: known, new: key))
        }
        return .success(i)
    }

    /// The index of `key`, or nil when unknown.
    public func lookup(_ key: String) -> Int32? { index[key] }

    public subscript(i: Int32) -> String { keys[Int(i)] }
}

/// Two ids that are the same Unicode text spelled with different code points.
public struct VocabularyCollision: Error, Sendable, CustomStringConvertible {
    public let known: String
    public let new: String

    public var description: String {
        func scalars(_ s: String) -> String { s.unicodeScalars.map { String(format: "U+%04X", $0.value) }.joined(separator: " ") }
        return "id '\(new)' (\(scalars(new))) is the same text as the earlier id '\(known)' (\(scalars(known))) in another Unicode form; "
            + "write ids in one form (NFC) so that they stay distinct or are meant to be one"
    }
}
