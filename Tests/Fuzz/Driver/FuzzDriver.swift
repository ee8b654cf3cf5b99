import _FuzzTargets
import Foundation

#if FUZZING
// Built by tools/fuzz with -sanitize=fuzzer,address -DFUZZING: libFuzzer owns main and
// calls this for every input; FUNNEL_FUZZ_TARGET names the target.
let chosen: FuzzTargets.Target = {
    let name = ProcessInfo.processInfo.environment["FUNNEL_FUZZ_TARGET"] ?? ""
    guard let t = FuzzTargets.target(named: name) else {
        fatalError("FUNNEL_FUZZ_TARGET='\(name)' is not a target; targets: \(FuzzTargets.all.map(\.name).joined(separator: " "))")
    }
    return t
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzTargets.run(chosen, size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
#else
/// Without libFuzzer: replays files through a target (a crash found by the fuzzer, a
/// corpus), lists the targets, or writes the seed corpora.
///
///     funnel-fuzz list
///     funnel-fuzz run TARGET FILE...
///     funnel-fuzz seeds DIR
@main struct FuzzDriver {
    static func main() throws {
        let args = Array(CommandLine.arguments.dropFirst())
        switch args.first {
        case "list":
            for t in FuzzTargets.all { print("\(t.name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(t.about)") }
        case "run" where args.count >= 3:
            guard let target = FuzzTargets.target(named: args[1]) else { fail("no target '\(args[1])'") }
            for file in args[2...] {
                var reason = ""
                let accepted = FuzzTargets.run(target, Array(try Data(contentsOf: URL(fileURLWithPath: file)))) { reason = ": \($0)" }
                print("\(file): \(accepted ? "accepted" : "refused")\(reason)")
            }
        case "seeds" where args.count == 2:
            let written = try FuzzSeeds.write(to: args[1])
            print("wrote \(written) seeds under \(args[1])")
        default:
            fail("usage: funnel-fuzz list | run TARGET FILE... | seeds DIR")
        }
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(2)
    }
}
#endif
