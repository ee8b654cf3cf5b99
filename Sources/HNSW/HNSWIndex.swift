import _FunnelKernels
import Foundation
import LinearAlgebra

/// A Hierarchical Navigable Small World graph (Malkov & Yashunin, 2016) for approximate
/// nearest-neighbor search over float vectors.
///
/// Each item lives on layer 0 and, with probability falling geometrically, on higher
/// layers; a search descends greedily from the top and then explores layer 0 with a
/// beam of width `ef`. Neighbors are chosen with the paper's heuristic, which keeps
/// links that point in diverse directions.
///
/// The knobs:
/// - `M` (default 16): links per item on upper layers, `2M` on layer 0. Higher M gives
///   better recall at high targets and for high-dimensional data, at the cost of memory
///   (4 bytes per link) and slower build. 12-48 is the useful range.
/// - `efConstruction` (default 200): beam width while inserting. Higher builds a better
///   graph, more slowly; past ~400 gains are small.
/// - `ef` (per query, >= k): beam width while searching, the recall/latency dial.
///
/// Items carry a `UInt64` id (label) of the caller's choosing. Deleting marks an item;
/// searches skip it while still walking through it, and later inserts reuse its slot.
///
/// Thread safety: any number of searches, inserts and deletes may run concurrently.
/// Searches and inserts share a reader-writer lock; only growing the storage, reusing
/// a deleted slot and saving take it exclusively, briefly.
///
/// - Complexity: search O(log n * M * d) distance work in expectation; insert
///   O(log n * efConstruction * M * d); memory per item d * 4 (or d with int8 codes,
///   plus the floats kept for rescoring) + 8 * M * 1.1 + 24 bytes.
public final class HNSWIndex: @unchecked Sendable {
    /// How vectors are stored for graph traversal.
    public enum Quantization: String, Sendable, CaseIterable {
        /// 32-bit floats.
        case none
        /// One byte per dimension (see `ScalarQuantizer`); final candidates are
        /// re-scored with the float vectors.
        case int8
        /// IEEE half precision, two bytes per dimension, and no float copy: half the
        /// memory of `none`, and distances within about 1e-3 of the float ones (11-bit
        /// significands), so there is no re-scoring. Values must lie within +-65504.
        case fp16
    }

    /// Build parameters, fixed for the life of the index.
    public struct Parameters: Sendable, Equatable {
        public var metric: Metric
        public var M: Int
        public var efConstruction: Int
        public var quantization: Quantization
        /// Seed for the random layer assignment.
        public var seed: UInt64

        public init(metric: Metric = .l2, M: Int = 16, efConstruction: Int = 200,
                    quantization: Quantization = .none, seed: UInt64 = 42) {
            self.metric = metric
            self.M = M
            self.efConstruction = efConstruction
            self.quantization = quantization
            self.seed = seed
        }
    }

    public let dimension: Int
    public let parameters: Parameters
    /// Links per node on layer 0 (2M) and above (M).
    let maxLinks0: Int
    let maxLinks: Int
    let levelMultiplier: Double

    // MARK: Storage (raw, shared across threads)

    /// Bytes of a layer-0 block: link count, 2M links, then the vector (floats or codes).
    let linkWords0: Int
    let vectorBytes: Int
    let codeBytes: Int
    let blockSize: Int
    let linkWords: Int

    var capacity = 0
    /// Slots in use, including deleted ones.
    var slotCount = 0
    var level0: UnsafeMutableRawPointer
    var upperLinks: UnsafeMutablePointer<UnsafeMutablePointer<UInt32>?>
    var levels: UnsafeMutablePointer<Int32>
    var labels: UnsafeMutablePointer<UInt64>
    var deletedFlags: UnsafeMutablePointer<UInt8>
    var nodeLocks: UnsafeMutablePointer<UInt8>
    /// Float vectors when the graph stores codes (for rescoring); nil otherwise.
    var floats: UnsafeMutablePointer<Float>?
    var quantizer: ScalarQuantizer?
    /// The entry point, packed as (top level << 32 | node), or `UInt64.max` when empty.
    let entry: UnsafeMutablePointer<UInt64>
    /// Keeps a memory-mapped file alive for read-only indexes.
    var mappedOwner: AnyObject?
    /// Float vectors outside the index that re-score fp16 searches (`rescore(with:)`).
    var rescoreSource: RescoreSource?

    // MARK: Bookkeeping (under `bookkeeping`)

    var labelToNode: [UInt64: UInt32] = [:]
    var freeSlots: [UInt32] = []
    /// Deleted slots, read without locks by searches (atomic), written under `bookkeeping`.
    let deletedCounter: UnsafeMutablePointer<UInt64>
    var deletedCount: Int {
        get { Int(fk_load_acquire_u64(deletedCounter)) }
        set { fk_store_release_u64(deletedCounter, UInt64(newValue)) }
    }
    var insertSequence: UInt64 = 0
    let bookkeeping = NSLock()
    /// Held by whoever may raise the top level.
    let entryLock = NSLock()
    var rwlock = pthread_rwlock_t()
    /// Shared by every insert and delete, exclusive while saving: a save streams the live
    /// storage to its file, which nothing may change meanwhile, while searches go on.
    /// Taken before `rwlock` and `bookkeeping`, never while holding them.
    var mutationLock = pthread_rwlock_t()
    let scratchPool = ScratchPool()

    /// Creates an empty index for `dimension`-d vectors.
    public init(dimension: Int, parameters: Parameters = Parameters()) throws {
        guard dimension > 0 else { throw HNSWError.invalidParameter("dimension must be positive, got \(dimension)") }
        guard parameters.M >= 2, parameters.M <= 512 else {
            throw HNSWError.invalidParameter("M must be in 2...512, got \(parameters.M)")
        }
        guard parameters.efConstruction >= 1 else {
            throw HNSWError.invalidParameter("efConstruction must be at least 1, got \(parameters.efConstruction)")
        }
        self.dimension = dimension
        self.parameters = parameters
        maxLinks = parameters.M
        maxLinks0 = 2 * parameters.M
        levelMultiplier = 1 / log(Double(parameters.M))
        linkWords0 = 1 + maxLinks0
        linkWords = 1 + maxLinks
        // int8: the codes, padded to 4 bytes, then the node's dot-product term (a Float), so
        // that one walk over the block's cache lines has everything a distance needs.
        codeBytes = (dimension + 3) & ~3
        switch parameters.quantization {
        case .none: vectorBytes = dimension * 4
        case .int8: vectorBytes = codeBytes + 4
        case .fp16: vectorBytes = (dimension * 2 + 3) & ~3
        }
        blockSize = linkWords0 * 4 + vectorBytes
        level0 = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
        upperLinks = .allocate(capacity: 1)
        levels = .allocate(capacity: 1)
        labels = .allocate(capacity: 1)
        deletedFlags = .allocate(capacity: 1)
        nodeLocks = .allocate(capacity: 1)
        entry = .allocate(capacity: 1)
        entry.initialize(to: .max)
        deletedCounter = .allocate(capacity: 1)
        deletedCounter.initialize(to: 0)
        var attr = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attr)
        pthread_rwlockattr_setkind_np(&attr, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        pthread_rwlock_init(&rwlock, &attr)
        pthread_rwlock_init(&mutationLock, &attr)
        pthread_rwlockattr_destroy(&attr)
    }

    deinit {
        if mappedOwner == nil { level0.deallocate() }
        for i in 0..<slotCount { upperLinks[i]?.deallocate() }
        upperLinks.deallocate()
        levels.deallocate()
        labels.deallocate()
        deletedFlags.deallocate()
        nodeLocks.deallocate()
        floats?.deallocate()
        entry.deallocate()
        deletedCounter.deallocate()
        pthread_rwlock_destroy(&rwlock)
        pthread_rwlock_destroy(&mutationLock)
    }

    // MARK: - Public state

    /// Live (not deleted) items.
    public var count: Int {
        bookkeeping.lock()
        defer { bookkeeping.unlock() }
        return slotCount - deletedCount
    }

    /// Whether an item with this id is live in the index.
    public func contains(_ label: UInt64) -> Bool {
        bookkeeping.lock()
        defer { bookkeeping.unlock() }
        guard let n = labelToNode[label] else { return false }
        return fk_load_u8(deletedFlags + Int(n)) == 0
    }

    /// Resident bytes per stored item: graph blocks, upper links, labels, flags, and
    /// the float copy kept for rescoring when quantized.
    public var bytesPerVector: Double {
        readLocked {
            guard slotCount > 0 else { return Double(blockSize) }
            var total = slotCount * (blockSize + 8 + 4 + 1 + 1 + MemoryLayout<UnsafeMutablePointer<UInt32>?>.size)
            for i in 0..<slotCount where levels[i] > 0 { total += Int(levels[i]) * linkWords * 4 }
            if floats != nil { total += slotCount * dimension * 4 }
            return Double(total) / Double(slotCount)
        }
    }

    // MARK: - Locks

    @inline(__always)
    func readLocked<R>(_ body: () throws -> R) rethrows -> R {
        pthread_rwlock_rdlock(&rwlock)
        defer { pthread_rwlock_unlock(&rwlock) }
        return try body()
    }

    /// Runs an insert or delete: any number at once, none during a save.
    func mutating<R>(_ body: () throws -> R) rethrows -> R {
        pthread_rwlock_rdlock(&mutationLock)
        defer { pthread_rwlock_unlock(&mutationLock) }
        return try body()
    }

    /// Runs `body` with every insert and delete held off (searches continue).
    func mutationsPaused<R>(_ body: () throws -> R) rethrows -> R {
        pthread_rwlock_wrlock(&mutationLock)
        defer { pthread_rwlock_unlock(&mutationLock) }
        return try body()
    }

    @inline(__always)
    func writeLocked<R>(_ body: () throws -> R) rethrows -> R {
        pthread_rwlock_wrlock(&rwlock)
        defer { pthread_rwlock_unlock(&rwlock) }
        return try body()
    }

    // MARK: - Raw accessors

    @inline(__always)
    func links0(_ node: Int) -> UnsafeMutablePointer<UInt32> {
        (level0 + node * blockSize).assumingMemoryBound(to: UInt32.self)
    }

    /// The link list of `node` on `level` (count word first).
    @inline(__always)
    func links(_ node: Int, level: Int) -> UnsafeMutablePointer<UInt32> {
        level == 0 ? links0(node) : upperLinks[node]! + (level - 1) * linkWords
    }

    @inline(__always)
    func vectorBytesPointer(_ node: Int) -> UnsafeMutableRawPointer {
        level0 + node * blockSize + linkWords0 * 4
    }

    /// A node's half-precision vector (fp16 storage only).
    @inline(__always)
    func halfVector(_ node: Int) -> UnsafeMutablePointer<UInt16> {
        vectorBytesPointer(node).assumingMemoryBound(to: UInt16.self)
    }

    /// A node's float vector: the float copy (int8) or the block itself (no quantization).
    /// Not for fp16 storage, which keeps no floats (`fk_from_half` on `halfVector`).
    @inline(__always)
    func floatVector(_ node: Int) -> UnsafeMutablePointer<Float> {
        if let floats { return floats + node * dimension }
        return vectorBytesPointer(node).assumingMemoryBound(to: Float.self)
    }

    /// The int8 node term stored after a node's codes: |x^|^2 of its decoded vector.
    @inline(__always)
    func codeBias(_ node: Int) -> UnsafeMutablePointer<Float> {
        (vectorBytesPointer(node) + codeBytes).assumingMemoryBound(to: Float.self)
    }

    @inline(__always)
    func isDeleted(_ node: Int) -> Bool { fk_load_u8(deletedFlags + node) != 0 }

    @inline(__always)
    func loadEntry() -> (node: Int, level: Int)? {
        let e = fk_load_acquire_u64(entry)
        if e == .max { return nil }
        return (Int(e & 0xFFFF_FFFF), Int(e >> 32))
    }

    func storeEntry(node: Int, level: Int) {
        fk_store_release_u64(entry, UInt64(level) << 32 | UInt64(node))
    }

    // MARK: - Capacity

    /// Grows storage to hold at least `needed` slots. Call under the write lock.
    /// - Parameter graph: false leaves the layer-0 blocks alone (a loader about to map them).
    func grow(to needed: Int, graph: Bool = true) {
        guard needed > capacity else { return }
        let newCap = max(needed, capacity + capacity / 2, 1024)
        if graph {
            let newLevel0 = UnsafeMutableRawPointer.allocate(byteCount: newCap * blockSize, alignment: 64)
            newLevel0.copyMemory(from: level0, byteCount: slotCount * blockSize)
            if mappedOwner == nil { level0.deallocate() }
            level0 = newLevel0
        }
        func regrow<T>(_ p: inout UnsafeMutablePointer<T>, zero: T) {
            let q = UnsafeMutablePointer<T>.allocate(capacity: newCap)
            q.update(from: p, count: slotCount)
            (q + slotCount).initialize(repeating: zero, count: newCap - slotCount)
            p.deallocate()
            p = q
        }
        regrow(&upperLinks, zero: nil)
        regrow(&levels, zero: 0)
        regrow(&labels, zero: 0)
        regrow(&deletedFlags, zero: 0)
        regrow(&nodeLocks, zero: 0)
        if parameters.quantization == .int8 {
            let f = UnsafeMutablePointer<Float>.allocate(capacity: newCap * dimension)
            if let old = floats {
                f.update(from: old, count: slotCount * dimension)
                old.deallocate()
            }
            floats = f
        }
        mappedOwner = nil
        capacity = newCap
    }

    /// Reserves storage for `n` items in total, so that inserts up to it never grow.
    public func reserve(_ n: Int) {
        mutating { writeLocked { grow(to: n) } }
    }

    /// A random level: floor(-ln(U) * mL), from a stream fixed by the insert sequence number.
    func randomLevel(sequence: UInt64) -> Int {
        var g = SeededGenerator(seed: parameters.seed, stream: sequence)
        let u = max(g.nextUnitDouble(), 1e-12)
        return min(Int(-log(u) * levelMultiplier), 30)
    }
}
