import ArgumentParser
import Foundation
import Funnel

/// `funnel doctor`: what this machine gives Funnel: the CPU and its features, the SIMD level
/// of Funnel's kernels, OpenBLAS's core and threads, and one second each of sgemm and of
/// the distance kernel.
struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The CPU, Funnel's kernels, OpenBLAS's core and a one-second sgemm and distance throughput.")

    @Flag(help: "Print only the OpenBLAS core this CPU should use when OpenBLAS chose a weaker one (nothing otherwise); for scripts.")
    var recommendedCore = false
    @Option(help: "Seconds for each throughput measurement.") var seconds: Double = 1

    func run() throws {
        if recommendedCore {
            if let core = BLASCore.recommended() { print(core) }
            return
        }
        let model = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("model name") }?.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "unknown"
        let env = ProcessInfo.processInfo.environment
        print("cpu: \(model), \(Parallel.availableCores) cores")
        print("cpu features: \(CPUFeatures.current)")
        print("funnel kernels: \(Kernels.simdLevel)")
        var blas = "openblas core: \(BLASCore.current)"
        if let before = env["FUNNEL_BLAS_RELAUNCHED"] { blas += " (OpenBLAS chose \(before); funnel set OPENBLAS_CORETYPE=\(BLASCore.current))" }
        else if let set = env["OPENBLAS_CORETYPE"] { blas += " (OPENBLAS_CORETYPE=\(set) from the environment)" }
        print(blas + ", \(BLAS.threads) threads; \(BLASCore.configuration)")
        if let better = BLASCore.recommended() { print("note: this CPU runs OpenBLAS's \(better) kernels; set OPENBLAS_CORETYPE=\(better)") }
        guard seconds > 0, seconds <= 60 else { throw ValidationError("--seconds must be in (0, 60]") }

        // sgemm, one thread, 1024^3.
        let n = 1024
        var g = SeededGenerator(seed: 1)
        var a = Matrix(rows: n, columns: n), b = Matrix(rows: n, columns: n)
        for i in 0..<a.storage.count { a.storage[i] = Float.random(in: -1..<1, using: &g); b.storage[i] = Float.random(in: -1..<1, using: &g) }
        var calls = 0
        let t0 = now()
        try BLAS.withThreads(1) {
            while now() - t0 < seconds || calls == 0 {
                _ = try Matrix.multiply(a, b)
                calls += 1
            }
        }
        let gflops = 2 * Double(n * n * n) * Double(calls) / (now() - t0) / 1e9
        print("sgemm \(n)^3, 1 thread: \(fmt(gflops, 1)) GFLOP/s")

        // Squared L2 of 128-d vectors against a block of 100,000 (the exact-search inner loop's kernel).
        let d = 128, rows = 100_000
        var base = [Float](repeating: 0, count: rows * d)
        for i in base.indices { base[i] = Float.random(in: -1..<1, using: &g) }
        let q = (0..<d).map { _ in Float.random(in: -1..<1, using: &g) }
        var distances = 0, sink: Float = 0
        let t1 = now()
        base.withUnsafeBufferPointer { bp in
            q.withUnsafeBufferPointer { qp in
                while now() - t1 < seconds || distances == 0 {
                    for r in 0..<rows { sink += Distance.squaredL2(qp.baseAddress!, bp.baseAddress! + r * d, d) }
                    distances += rows
                }
            }
        }
        let rate = Double(distances) / (now() - t1)
        print("L2 distance, \(d)-d, 1 thread: \(fmt(rate / 1e6, 1)) M/s (\(fmt(rate * Double(d * 4) / 1e9, 1)) GB/s of vectors)" + (sink.isNaN ? " " : ""))
    }
}
