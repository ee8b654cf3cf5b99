import Collectives
import LinearAlgebra

/// One histogram cell: sums of gradients and hessians of a bin. Row counts are not
/// kept per cell (as in LightGBM): they are estimated from hessian shares.
struct HistBin {
    var g: Double = 0
    var h: Double = 0
}

/// Gradient, hessian and row totals of a leaf or a split side.
struct LeafSums {
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
    var left = LeafSums()
    var right = LeafSums()
}

/// Grows one tree leaf-wise (best-first) on binned data, LightGBM style: histograms per
/// leaf, built for the smaller child and subtracted from the parent for the larger.
///
/// Data-parallel (LightGBM's `tree_learner=data`): each rank holds some rows; leaf
/// totals, row counts and histograms are summed over the ranks before any decision, so
/// every rank picks the same split and grows the same tree while partitioning only its
/// own rows.
struct TreeLearner {
    let data: BinnedData
    let numLeaves: Int
    let maxDepth: Int
    let minDataInLeaf: Int
    let minSumHessian: Double
    let lambdaL2: Double
    let threads: Int
    var communicator: any Communicator = SingleProcess.shared

    struct Leaf {
        var start: Int
        var end: Int
        var sum: LeafSums
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
    func grow(rows: inout [Int32], g: [Float], h: [Float], features: [Int]) -> (tree: Tree, thresholdBins: [Int], leafRanges: [Range<Int>]) {
        var tree = Tree()
        var thresholdBins = [Int]()
        var rootSum = LeafSums()
        for r in rows {
            rootSum.g += Double(g[Int(r)])
            rootSum.h += Double(h[Int(r)])
        }
        rootSum.c = rows.count
        if communicator.size > 1 {
            var t = [rootSum.g, rootSum.h, Double(rootSum.c)]
            communicator.allreduceSum(&t)
            rootSum = LeafSums(g: t[0], h: t[1], c: Int(t[2]))
        }
        var leaves = [Leaf]()
        var root = Leaf(start: 0, end: rows.count, sum: rootSum, depth: 0,
                        hist: buildHistogram(rows: rows, range: 0..<rows.count, sum: rootSum, g: g, h: h, features: features),
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
            if communicator.size > 1 { agree(on: &pick, leaves: &leaves) }
            if pick < 0 { break }
            var s = leaves[pick].best
            var parentLeaf = leaves[pick]
            leaves[pick].hist = []

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

            s.left.c = nl
            s.right.c = nr
            if communicator.size > 1 {
                var c = [Int64(nl), Int64(nr)]
                communicator.allreduceSum(&c)
                s.left.c = Int(c[0])
                s.right.c = Int(c[1])
            }
            if s.left.c == 0 || s.right.c == 0 {
                // Estimated counts allowed a split that moves no row: drop it.
                leaves[pick].best = SplitCandidate()
                leaves[pick].hist = parentLeaf.hist
                continue
            }

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
            let smallIsLeft = s.left.c <= s.right.c  // over all ranks: each builds the same side
            let small = buildHistogram(rows: rows, range: smallIsLeft ? leftRange : rightRange,
                                       sum: smallIsLeft ? s.left : s.right, g: g, h: h, features: features)
            // Hand the parent's buffer to the larger child: uniquely referenced, so no copy.
            var large = parentLeaf.hist
            parentLeaf.hist = []
            large.withUnsafeMutableBufferPointer { lp in
                small.withUnsafeBufferPointer { sp in
                    for i in 0..<lp.count {
                        lp[i].g -= sp[i].g
                        lp[i].h -= sp[i].h
                    }
                }
            }
            let (lh, rh) = smallIsLeft ? (small, large) : (large, small)
            var l = Leaf(start: leftRange.lowerBound, end: leftRange.upperBound, sum: s.left, depth: parentLeaf.depth + 1,
                         hist: lh, best: SplitCandidate(), parent: node, isLeft: true)
            var r = Leaf(start: rightRange.lowerBound, end: rightRange.upperBound, sum: s.right, depth: parentLeaf.depth + 1,
                         hist: rh, best: SplitCandidate(), parent: node, isLeft: false)
            if threads > 1 && data.totalBins * features.count / max(1, data.features) > 4096 {
                // The two children's split searches are independent: one per core.
                var found = [SplitCandidate](repeating: SplitCandidate(), count: 2)
                found.withUnsafeMutableBufferPointer { fp in
                    let fp = fp.baseAddress!
                    Parallel.forEach(blocks: 2, threads: 2) { side, _ in
                        fp[side] = side == 0 ? bestSplit(l.hist, sum: l.sum, features: features)
                                             : bestSplit(r.hist, sum: r.sum, features: features)
                    }
                }
                l.best = found[0]
                r.best = found[1]
            } else {
                l.best = bestSplit(l.hist, sum: l.sum, features: features)
                r.best = bestSplit(r.hist, sum: r.sum, features: features)
            }
            leaves[leftLeaf] = l
            leaves.append(r)
            tree.leafValue[leftLeaf] = leafOutput(s.left)
            tree.leafCount[leftLeaf] = Double(s.left.c)
            tree.leafValue.append(leafOutput(s.right))
            tree.leafCount.append(Double(s.right.c))
        }
        return (tree, thresholdBins, leaves.map { $0.start..<$0.end })
    }

    /// Every rank takes rank 0's choice of leaf and split. The ranks compute it from the
    /// same summed histograms, so this changes nothing when they agree; if an MPI
    /// reduction ever rounded differently on one rank, the ranks still grow one tree
    /// (and keep calling the same collectives) instead of diverging.
    func agree(on pick: inout Int, leaves: inout [Leaf]) {
        var d = [Double]()
        if pick >= 0 {
            let s = leaves[pick].best
            d = [Double(pick), Double(s.feature), Double(s.bin), s.defaultLeft ? 1 : 0, s.gain,
                 s.left.g, s.left.h, Double(s.left.c), s.right.g, s.right.h, Double(s.right.c)]
        }
        communicator.broadcast(&d, root: 0)
        guard d.count == 11 else { pick = -1; return }
        pick = Int(d[0])
        leaves[pick].best = SplitCandidate(gain: d[4], feature: Int(d[1]), bin: Int(d[2]), defaultLeft: d[3] != 0,
                                           left: LeafSums(g: d[5], h: d[6], c: Int(d[7])),
                                           right: LeafSums(g: d[8], h: d[9], c: Int(d[10])))
    }

    @inline(__always)
    func leafOutput(_ s: LeafSums) -> Double { -s.g / (s.h + lambdaL2) }

    /// Histogram of the rows `rows[range]` whose totals (over all ranks) are `sum`: the
    /// non-default bins are accumulated row by row from the sparse view (on two threads for
    /// big leaves, merged after), summed over the ranks, and each feature's default bin is
    /// the total minus the rest.
    func buildHistogram(rows: [Int32], range: Range<Int>, sum: LeafSums, g: [Float], h: [Float], features: [Int]) -> [HistBin] {
        let cells = data.totalBins
        let work = range.count * max(1, data.entries.count / max(1, data.rows))
        let parts = work > 150_000 ? min(threads, 4) : 1
        var partial = [[HistBin]](repeating: [], count: parts)
        let chunk = (range.count + parts - 1) / parts
        data.entries.withUnsafeBufferPointer { ep in
            data.rowStart.withUnsafeBufferPointer { sp in
                rows.withUnsafeBufferPointer { rp in
                    g.withUnsafeBufferPointer { gp in
                        h.withUnsafeBufferPointer { hp in
                            let ep = ep.baseAddress!, sp = sp.baseAddress!, rp = rp.baseAddress!, gp = gp.baseAddress!, hp = hp.baseAddress!
                            partial.withUnsafeMutableBufferPointer { pp in
                                let pp = pp.baseAddress!
                                Parallel.forEach(blocks: parts, threads: parts) { part, _ in
                                    var hist = [HistBin](repeating: HistBin(), count: cells)
                                    hist.withUnsafeMutableBufferPointer { hb in
                                        let out = hb.baseAddress!
                                        let lo = range.lowerBound + part * chunk, hi = min(range.upperBound, lo + chunk)
                                        if lo < hi {
                                            for i in lo..<hi {
                                                let r = Int(rp[i])
                                                let gr = Double(gp[r]), hr = Double(hp[r])
                                                for e in sp[r]..<sp[r + 1] {
                                                    let cell = Int(ep[e])
                                                    out[cell].g += gr
                                                    out[cell].h += hr
                                                }
                                            }
                                        }
                                    }
                                    pp[part] = hist
                                }
                            }
                        }
                    }
                }
            }
        }
        var hist = [HistBin]()
        swap(&hist, &partial[0])  // take the buffer without a copy-on-write copy
        for p in partial.dropFirst() {
            for i in 0..<cells {
                hist[i].g += p[i].g
                hist[i].h += p[i].h
            }
        }
        if communicator.size > 1 {
            hist.withUnsafeMutableBytes { raw in
                communicator.allreduceSum(raw.bindMemory(to: Double.self))
            }
        }
        hist.withUnsafeMutableBufferPointer { hp in
            for f in features {
                let base = data.histogramOffset[f], def = base + data.defaultBin[f]
                var rest = HistBin()
                for b in base..<(base + data.binCount[f]) where b != def {
                    rest.g += hp[b].g
                    rest.h += hp[b].h
                }
                hp[def] = HistBin(g: sum.g - rest.g, h: sum.h - rest.h)
            }
        }
        return hist
    }

    /// The best split of a leaf over `features`.
    ///
    /// As in LightGBM, the min_data_in_leaf test uses counts estimated from hessians
    /// (count * hessian share), and among equal gains within a feature the larger
    /// threshold wins, so that the same settings grow the same trees.
    func bestSplit(_ hist: [HistBin], sum: LeafSums, features: [Int]) -> SplitCandidate {
        var best = SplitCandidate()
        if sum.c < 2 * minDataInLeaf || sum.h < 2 * minSumHessian { return best }
        let parentScore = sum.g * sum.g / (sum.h + lambdaL2)
        let countPerHessian = Double(sum.c) / sum.h
        hist.withUnsafeBufferPointer { hp in
            for f in features {
                let base = data.histogramOffset[f]
                let nb = data.binCount[f]
                let miss = hp[base + nb - 1]
                let directions = data.hasMissing[f] ? 2 : 1
                var accG = 0.0, accH = 0.0
                // The feature's best so far, as plain scalars (no struct stores in the loop).
                var bestGain = 0.0, bestBin = -1, bestDir = 0, bestLG = 0.0, bestLH = 0.0, bestLC = 0
                // The score a candidate must reach: parent + the feature's best gain so far.
                var threshold = parentScore
                var b = 0
                scan: while b < nb - 2 {
                    accG += hp[base + b].g
                    accH += hp[base + b].h
                    var dir = 0
                    while dir < directions {
                        let lg = dir == 1 ? accG + miss.g : accG
                        let lh = dir == 1 ? accH + miss.h : accH
                        // Estimated counts only grow with b: skip until the left side is big
                        // enough, stop once the right side is too small (for both directions).
                        let leftCount = Int(lh * countPerHessian + 0.5)
                        if leftCount >= minDataInLeaf && lh >= minSumHessian {
                            if sum.c - leftCount < minDataInLeaf || sum.h - lh < minSumHessian {
                                if dir == directions - 1 { break scan }
                            } else {
                                // gain = lg^2/lh' + rg^2/rh' - parent, compared without dividing.
                                let rg = sum.g - lg, rh = sum.h - lh
                                let lhp = lh + lambdaL2, rhp = rh + lambdaL2
                                let num = lg * lg * rhp + rg * rg * lhp, den = lhp * rhp
                                if num >= threshold * den {
                                    let gain = num / den - parentScore
                                    if gain > 0 && gain >= bestGain {
                                        bestGain = gain
                                        bestBin = b
                                        bestDir = dir
                                        bestLG = lg
                                        bestLH = lh
                                        bestLC = leftCount
                                        threshold = parentScore + gain
                                    }
                                }
                            }
                        }
                        dir += 1
                    }
                    b += 1
                }
                if bestBin >= 0 && bestGain > best.gain {
                    best = SplitCandidate(gain: bestGain, feature: f, bin: bestBin, defaultLeft: bestDir == 1,
                                          left: LeafSums(g: bestLG, h: bestLH, c: bestLC),
                                          right: LeafSums(g: sum.g - bestLG, h: sum.h - bestLH, c: sum.c - bestLC))
                }
            }
        }
        return best
    }
}
