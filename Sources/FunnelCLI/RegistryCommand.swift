import ArgumentParser
import Foundation
import Funnel

/// `funnel registry`: the named, versioned models under the registry root.
struct RegistryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registry",
        abstract: "List, promote, canary, roll back and route the models under indexes/.",
        subcommands: [List.self, Promote.self, Shadow.self, Rollback.self, Route.self])

    struct Options: ParsableArguments {
        @Option(help: "Registry root.") var registry: String = "indexes"
        @Option(name: .customLong("root"), help: .hidden) var rootAlias: String?
        var root: String { rootAlias ?? registry }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every model and version with its state and metrics.")
        @OptionGroup var options: Options

        func run() throws {
            try FunnelCLI.run {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: options.root, isDirectory: &isDirectory), isDirectory.boolValue else {
                    throw ValidationError("no registry at \(options.root) (not a folder); give --registry ROOT")
                }
                let registry = ModelRegistry(root: options.root)
                for path in (try? registry.sweepLeftovers()) ?? [] { FileHandle.standardError.write(Data("removed \(path), left by a killed writer\n".utf8)) }
                let m = try registry.manifest()
                if m.models.isEmpty { print("no models under \(options.root)/ (funnel train registers one)"); return }
                var rows = [[String]]()
                for (name, versions) in m.models.sorted(by: { $0.key < $1.key }) {
                    for v in versions {
                        let state = v.state.rawValue + (v.canaryFraction.map { " \(fmt($0 * 100, 0))%" } ?? "")
                        let created = Date(timeIntervalSince1970: TimeInterval(v.created)).formatted(.iso8601)
                        let metrics = v.metrics.sorted { $0.key < $1.key }.map { "\($0.key) \(fmt($0.value, 4))" }.joined(separator: " ")
                        rows.append([name, "v\(v.version)", state, created, v.dataFingerprint, metrics])
                    }
                }
                printAligned(header: ["model", "version", "state", "created", "data", "metrics"], rows: rows)
            }
        }
    }

    struct Promote: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a version production (the old one is archived), or a canary for a fraction of users.")
        @OptionGroup var options: Options
        @Argument var model: String
        @Argument(help: "Version number (as in `registry list`, without the v).") var version: Int
        @Option(help: "Serve this version to this fraction of users (0..1) instead of everyone.") var canary: Double?

        func run() throws {
            try FunnelCLI.run {
                let r = ModelRegistry(root: options.root)
                try r.promote(model, version: version, canaryFraction: canary)
                print(canary.map { "\(model) v\(version) is the canary for \(fmt($0 * 100, 1))% of users" } ?? "\(model) v\(version) is production")
            }
        }
    }

    struct Rollback: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Production goes back to the version promoted before it.")
        @OptionGroup var options: Options
        @Argument var model: String

        func run() throws {
            try FunnelCLI.run {
                let v = try ModelRegistry(root: options.root).rollback(model)
                print("\(model) v\(v.version) is production again")
            }
        }
    }

    struct Shadow: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Give a version a copy of the requests: funnel serve runs it after each answer and counts how much of the served list it would have returned (funnel_shadow_*), never serving it.")
        @OptionGroup var options: Options
        @Argument var model: String
        @Argument var version: Int

        func run() throws {
            try FunnelCLI.run {
                try ModelRegistry(root: options.root).shadow(model, version: version)
                print("\(model) v\(version) is the shadow")
            }
        }
    }

    struct Route: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Which version serves a user (canary or production).")
        @OptionGroup var options: Options
        @Argument var model: String
        @Option var user: String

        func run() throws {
            try FunnelCLI.run {
                let (v, canary) = try ModelRegistry(root: options.root).route(model, userID: user)
                print("user \(user) -> \(model) v\(v.version) (\(canary ? "canary" : v.state.rawValue))")
            }
        }
    }
}
