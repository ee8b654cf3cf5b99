import Datasets
import Foundation

/// One item's attributes as a live write gives them (an upsert while serving).
public struct ItemAttributeRow: Sendable, Equatable {
    /// Category values by name; new names grow `categoryNames`.
    public var categories: [String]
    public var createdAt: Int64?
    /// Numeric attributes by name; a name the catalog has no column for is refused, a missing one is NaN.
    public var numeric: [String: Float]

    public init(categories: [String] = [], createdAt: Int64? = nil, numeric: [String: Float] = [:]) {
        self.categories = categories
        self.createdAt = createdAt
        self.numeric = numeric
    }
}

extension ItemAttributes {
    /// Sets item `item`'s attributes, or appends a new item when `item == count`.
    /// - Throws: `FeaturesError.invalidInput` for an item past the end or a numeric
    ///   attribute the catalog has no column for.
    /// - Complexity: O(1) amortized to append; O(items) to change an existing item's categories.
    public mutating func set(_ item: Int, _ row: ItemAttributeRow) throws {
        guard (0...count).contains(item) else { throw FeaturesError.invalidInput("item \(item) outside 0...\(count)") }
        if let unknown = row.numeric.keys.sorted().first(where: { !numericNames.contains($0) }) {
            throw FeaturesError.invalidInput("no numeric attribute '\(unknown)' (the catalog has \(numericNames.isEmpty ? "none" : numericNames.joined(separator: ", ")))")
        }
        var codes = [Int32]()
        for name in row.categories {
            if let c = categoryNames.firstIndex(of: name) { codes.append(Int32(c)) } else {
                categoryNames.append(name)
                codes.append(Int32(categoryNames.count - 1))
            }
        }
        let time = row.createdAt ?? Timestamp.missing
        if item == count {
            categoryCodes.append(contentsOf: codes)
            categoryOffsets.append(Int32(categoryCodes.count))
            createdAt?.append(time)
            for f in numericNames.indices { numericValues[f].append(row.numeric[numericNames[f]] ?? .nan) }
            count += 1
        } else {
            let lo = Int(categoryOffsets[item]), hi = Int(categoryOffsets[item + 1])
            categoryCodes.replaceSubrange(lo..<hi, with: codes)
            let shift = Int32(codes.count - (hi - lo))
            if shift != 0 { for j in (item + 1)..<categoryOffsets.count { categoryOffsets[j] += shift } }
            createdAt?[item] = time
            for f in numericNames.indices { numericValues[f][item] = row.numeric[numericNames[f]] ?? .nan }
        }
    }
}

/// Counts of the interactions recorded while serving, on top of the statistics.
struct LiveCount: Sendable {
    var events = 0
    var weighted = 0
    var weightSum = 0.0
}

extension RankingFeatures {
    /// The items `user` interacted with, oldest first: the log's, then those recorded while serving.
    public func history(_ user: Int) -> ArraySlice<Int32> {
        let base = user < statistics.userCount ? statistics.history(user, before: now &+ 1) : []
        guard let live = liveHistory[user] else { return base }
        return ArraySlice(Array(base) + live)
    }

    /// Sets an item's attributes or appends a new item (`item == items.count`), which starts
    /// with no interactions.
    public mutating func setItem(_ item: Int, _ row: ItemAttributeRow) throws {
        let appending = item == items.count
        try items.set(item, row)
        if appending {
            logPopularity.append(0)
            logRecent.append(0)
            meanRating.append(.nan)
        }
    }

    /// Adds a user with no history (a user first seen while serving); returns their index.
    public mutating func addUser() -> Int {
        userCount += 1
        return userCount - 1
    }

    /// Records an interaction that happened now: the user's history, the item's popularity,
    /// recent popularity and mean weight move at once (the as-of statistics used to replay
    /// past requests do not: they describe the training log).
    public mutating func record(user: Int, item: Int, weight: Float?) throws {
        guard (0..<userCount).contains(user) else { throw FeaturesError.invalidInput("user \(user) outside 0..<\(userCount)") }
        guard (0..<items.count).contains(item) else { throw FeaturesError.invalidInput("item \(item) outside 0..<\(items.count)") }
        liveHistory[user, default: []].append(Int32(item))
        var c = liveCounts[item] ?? LiveCount()
        c.events += 1
        if let weight, weight.isFinite {
            c.weighted += 1
            c.weightSum += Double(weight)
        }
        liveCounts[item] = c
        let base = item < statistics.itemCount ? statistics.popularity(item, before: now &+ 1) : 0
        let recent = item < statistics.itemCount ? statistics.recentPopularity(item, before: now &+ 1) : 0
        logPopularity[item] = Float(log1p(Double(base + c.events)))
        logRecent[item] = Float(log1p(Double(recent + c.events)))
        if c.weighted > 0 {
            let baseMean = item < statistics.itemCount ? statistics.meanWeight(item, before: now &+ 1) : .nan
            let sum = (baseMean.isNaN ? 0 : Double(baseMean) * Double(base)) + c.weightSum
            let n = (baseMean.isNaN ? 0 : base) + c.weighted
            meanRating[item] = Float(sum / Double(n))
        }
    }
}
