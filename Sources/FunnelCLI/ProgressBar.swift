import Foundation
import Funnel
#if canImport(Glibc)
import Glibc
#endif

/// A one-line training progress bar on standard error: drawn only when standard error is a
/// terminal (logs and pipes stay clean), at most five times a second; `finish` clears it.
final class ProgressBar {
    let enabled = isatty(STDERR_FILENO) == 1
    private var last = 0.0

    func update(_ p: TrainingProgress) {
        guard enabled else { return }
        let t = now()
        if t - last < 0.2 && p.examplesDone < p.examplesTotal { return }
        last = t
        let width = 30
        let filled = min(width, Int(Double(width) * Double(p.examplesDone) / Double(max(1, p.examplesTotal))))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let line = "epoch \(p.epoch)/\(p.epochs) [\(bar)] \(p.examplesDone)/\(p.examplesTotal)  loss \(fmt(Double(p.loss), 4))  "
            + "\(fmt(p.examplesPerSecond, 0)) examples/s  lr x\(fmt(Double(p.rateFactor), 2))"
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
    }

    /// A named stage's progress ("index 5000/10000").
    func stage(_ name: String, done: Int, total: Int) {
        guard enabled else { return }
        if done >= total { finish(); return }
        FileHandle.standardError.write(Data("\r\u{1B}[K\(name) \(done)/\(total)".utf8))
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}
