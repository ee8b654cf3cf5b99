import Collectives
import LinearAlgebra

/// Per-feature histogram bins: quantile-based upper bounds over the non-missing values,
/// plus one bin for missing values (NaN). A value goes to the first bin whose upper
/// bound it does not exceed, so a split "bin <= b" is "value <= upperBounds[b]".
public struct FeatureBins: Sendable, Equatable {
    /// Upper bounds of the value bins of each feature (the last is +infinity).
    public var upperBounds: [[Float]]

    /// Learns bins from the columns of `features`, at most `maxBin` value bins each.
    /// - Complexity: O(n log n) per feature on up to `sampleRows` rows.
    public init(features: Matrix, maxBin: Int, sampleRows: Int = 200_000) {
        let n = features.rows, d = features.columns
        let step = max(1, n / max(1, sampleRows))
        var bounds = [[Float]]()
        bounds.reserveCapacity(d)
        var column = [Float]()
        for j in 0..<d {
            column.removeAll(keepingCapacity: true)
            var r = 0
            while r < n {
                let v = features[r, j]
                if !v.isNaN { column.append(v) }
                r += step
            }
            bounds.append(Self.bounds(of: &column, maxBin: maxBin))
        }
        upperBounds = bounds
    }

    public init(upperBounds: [[Float]]) {
        self.upperBounds = upperBounds
    }

    /// The fewest values a bin may hold (LightGBM's min_data_in_bin default).
    static let minDataInBin = 3

    static func bounds(of values: inout [Float], maxBin: Int) -> [Float] {
        guard !values.isEmpty else { return [.infinity] }
        values.sort()
        var uniques = [Float](), counts = [Int]()
        for v in values {
            if let last = uniques.last, last == v { counts[counts.count - 1] += 1 } else {
                uniques.append(v)
                counts.append(1)
            }
        }
        if uniques.count <= maxBin {
            // A boundary only once the bin holds minDataInBin values (LightGBM's rule),
            // so rare values share a bin with their neighbours.
            var b = [Float]()
            var inBin = 0
            for i in 0..<(uniques.count - 1) {
                inBin += counts[i]
                if inBin >= minDataInBin {
                    b.append(midpoint(uniques[i], uniques[i + 1]))
                    inBin = 0
                }
            }
            b.append(.infinity)
            return b
        }
        // Greedy quantiles: close a bin once it holds its share of the remaining rows.
        var b = [Float]()
        var remaining = values.count
        var inBin = 0
        for i in 0..<(uniques.count - 1) {
            inBin += counts[i]
            let binsLeft = maxBin - b.count
            if binsLeft <= 1 { break }
            let target = Double(remaining) / Double(binsLeft)
            if Double(inBin) >= target || Double(inBin + counts[i + 1]) > target * 1.5 && inBin > 0 {
                b.append(midpoint(uniques[i], uniques[i + 1]))
                remaining -= inBin
                inBin = 0
            }
        }
        b.append(.infinity)
        return b
    }

    static func midpoint(_ a: Float, _ b: Float) -> Float {
        let m = a + (b - a) / 2
        return m < b ? max(m, a) : a
    }

    /// The number of value bins of feature `j` (its missing bin is index `valueBins(j)`).
    @inline(__always) public func valueBins(_ j: Int) -> Int { upperBounds[j].count }

    /// The bin of `value` for feature `j`.
    @inline(__always)
    public func bin(_ value: Float, feature j: Int) -> Int {
        if value.isNaN { return upperBounds[j].count }
        let ub = upperBounds[j]
        var lo = 0, hi = ub.count - 1
        while lo < hi {
            let mid = (lo + hi) >> 1
            if value <= ub[mid] { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }
}

/// Training rows as bin indices, column-major: feature j's bins are contiguous.
struct BinnedData {
    let rows: Int
    let features: Int
    /// bins[j * rows + r]
    var bins: [UInt8]
    /// Bins per feature including the missing bin, and where each feature's histogram starts.
    let binCount: [Int]
    let histogramOffset: [Int]
    let totalBins: Int
    /// Whether the feature has any missing value in the data.
    let hasMissing: [Bool]
    /// Each feature's most frequent bin, left out of `entries`: its histogram cell is the
    /// leaf total minus the feature's other cells, so sparse data costs only its non-zeros.
    let defaultBin: [Int]
    /// Row-wise sparse view: row r's non-default bins (as global histogram cells) are
    /// `entries[rowStart[r] ..< rowStart[r + 1]]`.
    let rowStart: [Int]
    let entries: [UInt32]

    /// Bins `m`, this rank's rows. With several ranks, which features have missing values
    /// and each feature's most frequent bin are agreed over all ranks' rows, so every rank
    /// reads histograms the same way.
    init(_ m: Matrix, bins fb: FeatureBins, threads: Int, communicator comm: any Communicator = SingleProcess.shared) {
        rows = m.rows
        features = m.columns
        var counts = [Int](), offsets = [Int]()
        var total = 0
        for j in 0..<features {
            offsets.append(total)
            counts.append(fb.valueBins(j) + 1)
            total += fb.valueBins(j) + 1
        }
        binCount = counts
        histogramOffset = offsets
        totalBins = total
        let n = m.rows, d = m.columns
        var b = [UInt8](repeating: 0, count: n * d)
        var missing = [Bool](repeating: false, count: d)
        b.withUnsafeMutableBufferPointer { out in
            let out = out.baseAddress!
            missing.withUnsafeMutableBufferPointer { miss in
                let miss = miss.baseAddress!
                Parallel.forEach(blocks: d, threads: threads) { j, _ in
                    var any = false
                    for r in 0..<n {
                        let v = m[r, j]
                        if v.isNaN { any = true }
                        out[j * n + r] = UInt8(fb.bin(v, feature: j))
                    }
                    miss[j] = any
                }
            }
        }
        bins = b
        var binRows = [Int64](repeating: 0, count: total)
        for j in 0..<d {
            let o = offsets[j]
            for r in 0..<n { binRows[o + Int(b[j * n + r])] += 1 }
        }
        if comm.size > 1 {
            var m = missing.map { $0 ? 1 as UInt8 : 0 }
            m.withUnsafeMutableBufferPointer { comm.allreduceMax($0) }
            missing = m.map { $0 != 0 }
            comm.allreduceSum(&binRows)
        }
        hasMissing = missing
        var defaults = [Int](repeating: 0, count: d)
        for j in 0..<d {
            let cells = binRows[offsets[j]..<(offsets[j] + counts[j])]
            defaults[j] = cells.indices.max { cells[$0] < cells[$1] }.map { $0 - offsets[j] } ?? 0
        }
        defaultBin = defaults
        var starts = [Int](repeating: 0, count: n + 1)
        var e = [UInt32]()
        for r in 0..<n {
            for j in 0..<d {
                let bin = Int(b[j * n + r])
                if bin != defaults[j] { e.append(UInt32(offsets[j] + bin)) }
            }
            starts[r + 1] = e.count
        }
        rowStart = starts
        entries = e
    }
}
