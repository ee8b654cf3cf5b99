import Datasets

/// Item and user counts from an interaction log, answerable *as of* any time: the
/// features of a past request see only the events before it, so a ranker trained on
/// replayed requests learns nothing from the future.
///
/// Stored as two time-sorted compressed-row tables (events per item, events per user);
/// an as-of count is a binary search, O(log n) per item.
public struct InteractionStatistics: Sendable {
    public let userCount: Int
    public let itemCount: Int
    /// Length of the "recent popularity" window, in seconds.
    public let recentWindow: Int64
    /// The latest event time: "now" for serving.
    public let end: Int64

    // Per item: event times ascending, and cumulative weights (ratings) in the same order.
    let itemOffsets: [Int]
    let itemTimes: [Int64]
    let itemWeightSums: [Double]  // itemWeightSums[j] = sum of weights of events 0..<j in item order
    let hasWeights: Bool
    // Per user: (time, item) ascending by time, then item.
    let userOffsets: [Int]
    let userTimes: [Int64]
    let userItems: [Int32]

    /// - Parameters:
    ///   - events: indices into `log` to use (default: all of them).
    ///   - recentWindow: the window of `recentPopularity`, default 30 days.
    public init(log: InteractionLog, events: [Int]? = nil, users: Int? = nil, items: Int? = nil,
                recentWindow: Int64 = 30 * 86_400) {
        let chosen = events ?? Array(0..<log.count)
        userCount = users ?? log.users.count
        itemCount = items ?? log.items.count
        self.recentWindow = recentWindow
        hasWeights = log.weights != nil
        let order = chosen.sorted {
            let a = log.timestamps[$0], b = log.timestamps[$1]
            return a != b ? a < b : log.itemIndex[$0] < log.itemIndex[$1]
        }
        end = order.last.map { log.timestamps[$0] } ?? 0

        var perItem = [Int](repeating: 0, count: itemCount + 1)
        var perUser = [Int](repeating: 0, count: userCount + 1)
        for n in order {
            perItem[Int(log.itemIndex[n]) + 1] += 1
            perUser[Int(log.userIndex[n]) + 1] += 1
        }
        for i in 0..<itemCount { perItem[i + 1] += perItem[i] }
        for u in 0..<userCount { perUser[u + 1] += perUser[u] }
        var itemFill = perItem, userFill = perUser
        var itemTimes = [Int64](repeating: 0, count: order.count)
        var itemWeights = [Double](repeating: 1, count: order.count)
        var userTimes = [Int64](repeating: 0, count: order.count)
        var userItems = [Int32](repeating: 0, count: order.count)
        for n in order {  // time order, so each row fills ascending
            let i = Int(log.itemIndex[n]), u = Int(log.userIndex[n])
            itemTimes[itemFill[i]] = log.timestamps[n]
            if let w = log.weights { itemWeights[itemFill[i]] = Double(w[n]) }
            itemFill[i] += 1
            userTimes[userFill[u]] = log.timestamps[n]
            userItems[userFill[u]] = log.itemIndex[n]
            userFill[u] += 1
        }
        var sums = [Double](repeating: 0, count: order.count + 1)
        for j in 0..<order.count { sums[j + 1] = sums[j] + itemWeights[j] }
        itemOffsets = perItem
        self.itemTimes = itemTimes
        itemWeightSums = sums
        userOffsets = perUser
        self.userTimes = userTimes
        self.userItems = userItems
    }

    /// The first position in `times[lo..<hi]` whose time is >= t.
    @inline(__always)
    static func lowerBound(_ times: [Int64], _ lo: Int, _ hi: Int, _ t: Int64) -> Int {
        var lo = lo, hi = hi
        while lo < hi {
            let mid = (lo + hi) >> 1
            if times[mid] < t { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Interactions with `item` strictly before `time`.
    public func popularity(_ item: Int, before time: Int64) -> Int {
        let lo = itemOffsets[item], hi = itemOffsets[item + 1]
        return Self.lowerBound(itemTimes, lo, hi, time) - lo
    }

    /// Interactions with `item` in the `recentWindow` seconds before `time`.
    public func recentPopularity(_ item: Int, before time: Int64) -> Int {
        let lo = itemOffsets[item], hi = itemOffsets[item + 1]
        let b = Self.lowerBound(itemTimes, lo, hi, time)
        let a = Self.lowerBound(itemTimes, lo, b, time &- recentWindow)
        return b - a
    }

    /// The mean weight (rating) of `item`'s interactions before `time`; NaN when there are
    /// none or the log has no weights.
    public func meanWeight(_ item: Int, before time: Int64) -> Float {
        guard hasWeights else { return .nan }
        let lo = itemOffsets[item], hi = Self.lowerBound(itemTimes, itemOffsets[item], itemOffsets[item + 1], time)
        guard hi > lo else { return .nan }
        return Float((itemWeightSums[hi] - itemWeightSums[lo]) / Double(hi - lo))
    }

    /// The items `user` interacted with strictly before `time`, oldest first.
    public func history(_ user: Int, before time: Int64) -> ArraySlice<Int32> {
        let lo = userOffsets[user], hi = userOffsets[user + 1]
        return userItems[lo..<Self.lowerBound(userTimes, lo, hi, time)]
    }
}
