import ArgumentParser
import Foundation
import Funnel

/// Refuses a thread count no machine runs with (0, negative, or past 1024), naming the flag.
func checkThreads(_ threads: Int?, flag: String = "--threads") throws {
    if let threads, !(1...1_024).contains(threads) { throw ValidationError("\(flag) must be in 1...1024, got \(threads)") }
}

/// Refuses where a command would write, before it does any work: an `--out` folder that
/// exists or cannot be created, a model name the registry would refuse, a registry root
/// that cannot be written (read-only, not a folder). The probe file is named as a
/// temporary of this process, so a kill leaves nothing the next command does not sweep.
func checkDestination(out: String?, registry: String, name: String?) throws {
    let fm = FileManager.default
    func writable(_ folder: String, for what: String) throws {
        do { try fm.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
            throw ValidationError("cannot create \(folder) for \(what): \(error.localizedDescription)")
        }
        let probe = "\(folder)/.probe.tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard fm.createFile(atPath: probe, contents: nil) else {
            throw ValidationError("cannot write in \(folder) for \(what): \(String(cString: strerror(errno)))")
        }
        try? fm.removeItem(atPath: probe)
    }
    if let out {
        guard !fm.fileExists(atPath: out) else { throw ValidationError("--out \(out) exists already; a bundle is written to a new folder") }
        try writable(URL(fileURLWithPath: out).deletingLastPathComponent().path, for: "--out")
    } else {
        if let name { do { try ModelRegistry.checkName(name) } catch { throw ValidationError("--name: \(error)") } }
        try writable(registry, for: "the registry")
    }
}
