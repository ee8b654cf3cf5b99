import LinearAlgebra

/// One histogram cell: sums of gradients and hessians and the row count of a bin.
struct HistBin {
    var g: Double = 0
    var h: Double = 0
    var c: Int = 0
}

/// The best split found for a leaf.
struct SplitCandidate {
    var gain: Double = 0
    var feature = -1
    var bin = 0
    var defaultLeft = false
    var left = HistBin()
    var right = HistBin()
}

/// Grows one tree leaf-wise (best-first) on binned data, LightGBM style: histograms per
/// leaf, built for the smaller child and subtracted from the parent for the larger.
struct TreeLearner {
    let data: BinnedData
    let numLeaves: Int
    let maxDepth: Int
    let minDataInLeaf: Int
    let minSumHessian: Double
    let lambdaL2: Double
    let threads: Int

    struct Leaf {
        var start: Int
        var end: Int
        var sum: HistBin
        var depth: Int
        var hist: [HistBin]
        var best: SplitCandidate
        /// The internal node pointing at this leaf and on which side (-1: root).
        var parent: Int
        var isLeft: Bool
    }

    /// Grows a tree over `rows` (an index array, sorted ascending); returns the tree with
    /// bin-space thresholds in `threshold` (converted by the caller) and raw leaf outputs
    /// -G / (H + lambda).
    func grow(rows: inout [Int32], g: [Float], h: [Float], features: [Int]) -> (tree: Tree, thresholdBins: [Int]) {
        var tree = Tree()
        var thresholdBins = [Int]()
        var rootSum = HistBin()
        for r in rows {
            rootSum.g += Double(g[Int(r)])
            rootSum.h += Double(h[Int(r)])
        }
        rootSum.c = rows.count
        var leaves = [Leaf]()
        var root = Leaf(start: 0, end: rows.count, sum: rootSum, depth: 0,
                        hist: buildHistogram(rows: rows, range: 0..<rows.count, g: g, h: h, features: features),
                        best: SplitCandidate(), parent: -1, isLeft: false)
        root.best = bestSplit(root.hist, sum: root.sum, features: features)
        leaves.append(root)
        tree.leafValue = [leafOutput(rootSum)]
        tree.leafCount = [Double(rootSum.c)]

        var scratch = [Int32](repeating: 0, count: rows.count)
        while leaves.count < numLeaves {
            // The leaf with the largest positive gain that may still grow.
            var pick = -1
            var bestGain = 0.0
            for (i, l) in leaves.enumerated() where l.best.feature >= 0 && l.best.gain > bestGain {
                if maxDepth > 0 && l.depth >= maxDepth { continue }
                pick = i
                bestGain = l.best.gain
            }
            if pick < 0 { break }
            let s = leaves[pick].best
            let parentLeaf = leaves[pick]

            // Partition the leaf's rows, stably: left rows first.
            let missingBin = data.binCount[s.feature] - 1
            let col = s.feature * data.rows
            var nl = 0, nr = 0
            data.bins.withUnsafeBufferPointer { bins in
                for i in parentLeaf.start..<parentLeaf.end {
                    let r = rows[i]
                    let b = Int(bins[col + Int(r)])
                    let goLeft = b == missingBin ? s.defaultLeft : b <= s.bin
                    if goLeft { rows[parentLeaf.start + nl] = r; nl += 1 } else { scratch[nr] = r; nr += 1 }
                }
            }
            for i in 0..<nr { rows[parentLeaf.start + nl + i] = scratch[i] }
            let mid = parentLeaf.start + nl

            // New internal node replacing the leaf.
            let node = tree.feature.count
            tree.feature.append(Int32(s.feature))
            tree.threshold.append(0)
            thresholdBins.append(s.bin)
            tree.defaultLeft.append(s.defaultLeft)
            tree.missingType.append(.nan)
            tree.gain.append(Float(s.gain))
            tree.internalCount.append(Double(parentLeaf.sum.c))
            let leftLeaf = pick, rightLeaf = leaves.count
            tree.left.append(~Int32(leftLeaf))
            tree.right.append(~Int32(rightLeaf))
            if parentLeaf.parent >= 0 {
                if parentLeaf.isLeft { tree.left[parentLeaf.parent] = Int32(node) } else { tree.right[parentLeaf.parent] = Int32(node) }
            }

            // Children histograms: build the smaller, subtract for the larger.
            let leftRange = parentLeaf.start..<mid, rightRange = mid..<parentLeaf.end
            let smallIsLeft = leftRange.count <= rightRange.count
            let small = buildHistogram(rows: rows, range: smallIsLeft ? leftRange : rightRange, g: g, h: h, features: features)
            var large = parentLeaf.hist
            for i in 0..<large.count {
                large[i].g -= small[i].g
                large[i].h -= small[i].h
                large[i].c -= small[i].c
            }
            let (lh, rh) = smallIsLeft ? (small, large) : (large, small)
            var l = Leaf(start: leftRange.lowerBound, end: leftRange.upperBound, sum: s.left, depth: parentLeaf.depth + 1,
                         hist: lh, best: SplitCandidate(), parent: node, isLeft: true)
            var r = Leaf(start: rightRange.lowerBound, end: rightRange.upperBound, sum: s.right, depth: parentLeaf.depth + 1,
                         hist: rh, best: SplitCandidate(), parent: node, isLeft: false)
            l.best = bestSplit(l.hist, sum: l.sum, features: features)
            r.best = bestSplit(r.hist, sum: r.sum, features: features)
            leaves[leftLeaf] = l
            leaves.append(r)
            tree.leafValue[leftLeaf] = leafOutput(s.left)
            tree.leafCount[leftLeaf] = Double(s.left.c)
            tree.leafValue.append(leafOutput(s.right))
            tree.leafCount.append(Double(s.right.c))
        }
        return (tree, thresholdBins)
    }

    @inline(__always)
    func leafOutput(_ s: HistBin) -> Double { -s.g / (s.h + lambdaL2) }

    /// Histogram of the rows `rows[range]` over `features`, parallel across features.
    func buildHistogram(rows: [Int32], range: Range<Int>, g: [Float], h: [Float], features: [Int]) -> [HistBin] {
        var hist = [HistBin](repeating: HistBin(), count: data.totalBins)
        let n = data.rows
        hist.withUnsafeMutableBufferPointer { hp in
            let hp = hp.baseAddress!
            data.bins.withUnsafeBufferPointer { bp in
                rows.withUnsafeBufferPointer { rp in
                    g.withUnsafeBufferPointer { gp in
                        h.withUnsafeBufferPointer { hhp in
                            let bp = bp.baseAddress!, rp = rp.baseAddress!, gp = gp.baseAddress!, hhp = hhp.baseAddress!
                            // Tiny leaves are not worth waking a second thread.
                            let t = range.count * features.count < 200_000 ? 1 : threads
                            let chunk = max(1, (features.count + 4 * t - 1) / (4 * t))
                            let blocks = (features.count + chunk - 1) / chunk
                            Parallel.forEach(blocks: blocks, threads: t) { blk, _ in
                                for fi in (blk * chunk)..<min(features.count, (blk + 1) * chunk) {
                                    let f = features[fi]
                                    let col = bp + f * n
                                    let out = hp + data.histogramOffset[f]
                                    for i in range {
                                        let r = Int(rp[i])
                                        let b = Int(col[r])
                                        out[b].g += Double(gp[r])
                                        out[b].h += Double(hhp[r])
                                        out[b].c += 1
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return hist
    }

    /// The best split of a leaf over `features`.
    ///
    /// As in LightGBM, the min_data_in_leaf test uses counts estimated from hessians
    /// (count * hessian share), and among equal gains within a feature the larger
    /// threshold wins, so that the same settings grow the same trees.
    func bestSplit(_ hist: [HistBin], sum: HistBin, features: [Int]) -> SplitCandidate {
        var best = SplitCandidate()
        if sum.c < 2 * minDataInLeaf || sum.h < 2 * minSumHessian { return best }
        let parentScore = sum.g * sum.g / (sum.h + lambdaL2)
        let countPerHessian = Double(sum.c) / sum.h
        for f in features {
            let base = data.histogramOffset[f]
            let nb = data.binCount[f]
            let miss = hist[base + nb - 1]
            let tryLeft = miss.c > 0
            var acc = HistBin()
            var featureBest = SplitCandidate()
            for b in 0..<max(0, nb - 2) {
                let x = hist[base + b]
                acc.g += x.g
                acc.h += x.h
                acc.c += x.c
                for dirLeft in tryLeft ? [false, true] : [false] {
                    var l = acc
                    if dirLeft {
                        l.g += miss.g
                        l.h += miss.h
                        l.c += miss.c
                    }
                    let r = HistBin(g: sum.g - l.g, h: sum.h - l.h, c: sum.c - l.c)
                    let leftCount = Int((l.h * countPerHessian).rounded())
                    let rightCount = sum.c - leftCount
                    if leftCount < minDataInLeaf || rightCount < minDataInLeaf || l.h < minSumHessian || r.h < minSumHessian { continue }
                    if l.c == 0 || r.c == 0 { continue }
                    let gain = l.g * l.g / (l.h + lambdaL2) + r.g * r.g / (r.h + lambdaL2) - parentScore
                    if gain > 0 && gain >= featureBest.gain {
                        featureBest = SplitCandidate(gain: gain, feature: f, bin: b, defaultLeft: dirLeft, left: l, right: r)
                    }
                }
            }
            if featureBest.feature >= 0 && featureBest.gain > best.gain { best = featureBest }
        }
        return best
    }
}
