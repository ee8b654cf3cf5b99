import _FunnelKernels
import LinearAlgebra
import Persistence

extension HNSWIndex {
    static let magic = "FNLHNSW\u{1}"
    /// 2: int8 quantizers have a scale per dimension and items keep |x^|^2 after their codes
    /// (version 1: one scale, and sum offset * code there; still read).
    static let formatVersion: UInt32 = 2

    /// Saves the index to `path` atomically (temp file, fsync, rename) in Funnel's
    /// versioned, checksummed container.
    ///
    /// The graph is streamed from memory to the file, never copied: saving a 4 GB index
    /// needs no second 4 GB. Inserts and deletes wait until the file is written; searches
    /// go on meanwhile.
    /// - Complexity: O(file size).
    public func save(to path: String) throws {
        try mutationsPaused {
            var head = PayloadWriter()
            var upperBytes = 0
            let quantizerBytes: Int
            bookkeeping.lock()
            head.write(UInt64(dimension))
            head.write(string: parameters.metric.rawValue)
            head.write(UInt64(parameters.M))
            head.write(UInt64(parameters.efConstruction))
            head.write(string: parameters.quantization.rawValue)
            head.write(parameters.seed)
            head.write(UInt64(slotCount))
            head.write(UInt64(deletedCount))
            head.write(insertSequence)
            head.write(fk_load_acquire_u64(entry))
            bookkeeping.unlock()
            for node in 0..<slotCount where levels[node] > 0 { upperBytes += Int(levels[node]) * linkWords * 4 }
            quantizerBytes = quantizer != nil && floats != nil ? dimension * 8 + slotCount * dimension * 4 : 0
            // Pad so the graph starts 64-byte aligned in the file (the container header is
            // 20 bytes): a memory-mapped load then reads aligned links and vectors.
            let before = head.bytes.count + slotCount * (4 + 8 + 1)
            let pad = (64 - (20 + before + 8) % 64) % 64
            let length = before + 8 + pad + slotCount * blockSize + upperBytes + quantizerBytes
            try FunnelFile.write(to: path, magic: Self.magic, version: Self.formatVersion, payloadLength: length) { w in
                try w.write(head)
                try w.write(raw: UnsafeRawBufferPointer(start: levels, count: slotCount * 4))
                try w.write(raw: UnsafeRawBufferPointer(start: labels, count: slotCount * 8))
                try w.write(raw: UnsafeRawBufferPointer(start: deletedFlags, count: slotCount))
                try w.write(UInt64(pad))
                try [UInt8](repeating: 0, count: pad).withUnsafeBytes { try w.write(raw: $0) }
                try w.write(raw: UnsafeRawBufferPointer(start: level0, count: slotCount * blockSize))
                for node in 0..<slotCount where levels[node] > 0 {
                    try w.write(raw: UnsafeRawBufferPointer(start: upperLinks[node]!, count: Int(levels[node]) * linkWords * 4))
                }
                if let quantizer, let floats {
                    for o in quantizer.offsets { try w.write(o) }
                    for sc in quantizer.scales { try w.write(sc) }
                    try w.write(raw: UnsafeRawBufferPointer(start: floats, count: slotCount * dimension * 4))
                }
            }
        }
    }

    /// Loads an index saved by `save(to:)`.
    ///
    /// The checksum, every count, every level and every link are checked before the
    /// index is returned, so a truncated, corrupted or foreign file gives an error.
    /// - Parameter mmap: keep the layer-0 graph in the mapped file instead of copying
    ///   it (less resident memory for large indexes); such an index is read-only.
    /// - Complexity: O(file size).
    public static func load(from path: String, mmap: Bool = false) throws -> HNSWIndex {
        func bad(_ why: String) -> HNSWError { .corruptFile(path: path, reason: why) }
        do {
            let file = try MappedFile(path: path)
            var (version, r) = try FunnelFile.open(file, magic: magic, versions: 1...formatVersion)
            let dimension = try r.readCount("dimension", max: 1 << 20)
            guard dimension > 0 else { throw bad("dimension is 0") }
            guard let metric = Metric(rawValue: try r.readString("metric", maxLength: 32)) else { throw bad("unknown metric") }
            let M = try r.readCount("M", max: 512)
            let efc = try r.readCount("efConstruction", max: 1 << 20)
            guard let quant = Quantization(rawValue: try r.readString("quantization", maxLength: 32)) else {
                throw bad("unknown quantization")
            }
            let seed = try r.read(UInt64.self, "seed")
            let params = Parameters(metric: metric, M: M, efConstruction: max(1, efc), quantization: quant, seed: seed)
            let index = try HNSWIndex(dimension: dimension, parameters: params)
            let n = try r.readCount("item count", max: r.remaining / max(1, index.blockSize))
            let deleted = try r.readCount("deleted count", max: n)
            let sequence = try r.read(UInt64.self, "insert sequence")
            let entry = try r.read(UInt64.self, "entry point")

            let levelBytes = try r.view(n * 4, "levels")
            let labelBytes = try r.view(n * 8, "labels")
            let flagBytes = try r.view(n, "deleted flags")
            let pad = try r.readCount("graph alignment padding", max: 63)
            _ = try r.view(pad, "graph alignment padding")
            let blocks = try r.view(n * index.blockSize, "layer-0 graph")

            index.grow(to: n, graph: !mmap)
            index.slotCount = n
            var upperTotal = 0
            for i in 0..<n {
                let level = Int32(littleEndian: levelBytes.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))
                guard (0...30).contains(level) else { throw bad("item \(i) has level \(level)") }
                index.levels[i] = level
                index.labels[i] = UInt64(littleEndian: labelBytes.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
                let f = flagBytes[i]
                guard f <= 1 else { throw bad("item \(i) has deleted flag \(f)") }
                index.deletedFlags[i] = f
                upperTotal += Int(level)
            }
            // A version-1 int8 file stores another per-item term: the blocks are rewritten
            // below, so they are copied even when a mapping was asked for.
            let rewriteTerms = quant == .int8 && version < 2
            if mmap && !blocks.isEmpty && !rewriteTerms {
                index.level0.deallocate()
                index.level0 = UnsafeMutableRawPointer(mutating: blocks.baseAddress!)
                index.mappedOwner = file
            } else if mmap {
                // Nothing to map (empty), or blocks rewritten below: a private copy after all.
                index.level0.deallocate()
                index.level0 = UnsafeMutableRawPointer.allocate(byteCount: max(64, n * index.blockSize), alignment: 64)
                if !blocks.isEmpty { index.level0.copyMemory(from: blocks.baseAddress!, byteCount: blocks.count) }
            } else if !blocks.isEmpty {
                index.level0.copyMemory(from: blocks.baseAddress!, byteCount: blocks.count)
            }
            let upper = try r.view(upperTotal * index.linkWords * 4, "upper-layer links")
            var off = 0
            for i in 0..<n where index.levels[i] > 0 {
                let words = Int(index.levels[i]) * index.linkWords
                let p = UnsafeMutablePointer<UInt32>.allocate(capacity: words)
                UnsafeMutableRawPointer(p).copyMemory(from: upper.baseAddress! + off, byteCount: words * 4)
                index.upperLinks[i] = p
                off += words * 4
            }
            if quant == .int8 {
                var offsets = [Float](), scales = [Float]()
                for _ in 0..<dimension { offsets.append(try r.readFloat("quantizer offsets")) }
                if version < 2 {
                    scales = [Float](repeating: try r.readFloat("quantizer scale"), count: dimension)
                } else {
                    for _ in 0..<dimension { scales.append(try r.readFloat("quantizer scales")) }
                }
                guard scales.allSatisfy({ $0 >= 0 && $0.isFinite }), offsets.allSatisfy(\.isFinite) else {
                    throw bad("quantizer parameters are not finite, or a scale is negative")
                }
                let quantizer = ScalarQuantizer(offsets: offsets, scales: scales)
                index.quantizer = quantizer
                let fl = try r.view(n * dimension * 4, "float vectors")
                if !fl.isEmpty { UnsafeMutableRawPointer(index.floats!).copyMemory(from: fl.baseAddress!, byteCount: fl.count) }
                if rewriteTerms {
                    for i in 0..<n {
                        let codes = index.vectorBytesPointer(i).assumingMemoryBound(to: UInt8.self)
                        index.codeBias(i).pointee = quantizer.decode(codes, dimension: dimension).reduce(0) { $0 + $1 * $1 }
                    }
                }
            }
            guard r.remaining == 0 else { throw bad("\(r.remaining) unexpected bytes after the index") }

            // Every link must name an existing item, and counts must fit their lists.
            for i in 0..<n {
                for level in 0...Int(index.levels[i]) {
                    let l = index.links(i, level: level)
                    let c = Int(l[0])
                    guard c <= (level == 0 ? index.maxLinks0 : index.maxLinks) else {
                        throw bad("item \(i) has \(c) links on level \(level)")
                    }
                    for j in 1..<(c + 1) {
                        let t = Int(l[j])
                        guard t < n, index.levels[t] >= Int32(level) else {
                            throw bad("item \(i) links to \(t) on level \(level), which does not exist there")
                        }
                    }
                }
            }
            if n > 0 {
                guard entry != .max else { throw bad("a non-empty index has no entry point") }
                let node = Int(entry & 0xFFFF_FFFF), level = Int(entry >> 32)
                guard node < n, level == Int(index.levels[node]) else { throw bad("entry point \(node) at level \(level) is not an item of that level") }
                index.storeEntry(node: node, level: level)
            }
            if let floats = index.floats {
                for i in 0..<(n * dimension) where !floats[i].isFinite { throw bad("vector \(i / dimension) is not finite") }
            } else if quant == .fp16 {
                for i in 0..<n {
                    let v = index.halfVector(i)
                    // Exponent bits all ones: infinity or NaN.
                    for j in 0..<dimension where v[j] & 0x7C00 == 0x7C00 { throw bad("vector \(i) is not finite") }
                }
            } else {
                for i in 0..<n {
                    let v = index.floatVector(i)
                    for j in 0..<dimension where !v[j].isFinite { throw bad("vector \(i) is not finite") }
                }
            }
            var live = 0
            for i in 0..<n {
                if index.deletedFlags[i] == 0 {
                    guard index.labelToNode.updateValue(UInt32(i), forKey: index.labels[i]) == nil else {
                        throw bad("id \(index.labels[i]) appears twice")
                    }
                    live += 1
                } else {
                    index.freeSlots.append(UInt32(i))
                }
            }
            guard n - live == deleted else { throw bad("the header counts \(deleted) deleted items, the flags \(n - live)") }
            index.deletedCount = deleted
            index.insertSequence = sequence
            return index
        } catch let e as PersistenceError {
            if case .corrupt(_, let reason) = e { throw HNSWError.corruptFile(path: path, reason: reason) }
            throw HNSWError.corruptFile(path: path, reason: e.description)
        }
    }
}
