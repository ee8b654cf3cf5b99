import Engine
import Foundation
import FunnelServer
import Testing
import _TestSupport

@Suite("Server config") struct ServerConfigTests {
    @Test("the file, then the environment; unknown keys and bad values are named")
    func precedence() throws {
        let dir = TempDir("funnel-config")
        defer { dir.cleanup() }
        let file = dir.write("serve.json", #"{"port": 9000, "max_k": 50, "cache_entries": 0, "serving": {"candidates": 321, "deadline_ms": 90}}"#)
        let c = try ServerConfig.load(file: file, environment: ["FUNNEL_PORT": "9100", "FUNNEL_SERVING_EF": "77", "FUNNEL_API_KEY": "k"])
        #expect(c.settings.port == 9100 && c.settings.maxK == 50 && c.settings.cacheEntries == 0 && c.settings.apiKey == "k")
        let serving = try ServingSettings().overlaid(with: try #require(c.serving))
        #expect(serving.candidates == 321 && serving.ef == 77 && serving.deadlineMs == 90)
        #expect(serving.mmrPool == ServingSettings().mmrPool)  // untouched keys keep the bundle's value
        #expect(c.settings.faultDelay == nil)
        let slow = try ServerConfig.load(file: nil, environment: ["FUNNEL_FAULT_DELAY_MS": "250", "FUNNEL_FAULT_DELAY_FRACTION": "0.1"])
        #expect(slow.settings.faultDelay == FaultDelay(seconds: 0.25, fraction: 0.1))
        #expect(try ServerConfig.load(file: nil, environment: ["FUNNEL_FAULT_DELAY_MS": "40"]).settings.faultDelay == FaultDelay(seconds: 0.04, fraction: 1))
        for (text, env, named) in [(#"{"prot": 1}"#, [String: String](), "prot"), (#"{"serving": {"candidate": 3}}"#, [:], "candidate"),
                                   (#"{"port": "x"}"#, [:], "port"), ("{}", ["FUNNEL_SERVING_EF": "wide"], "FUNNEL_SERVING_EF"),
                                   (#"{"serving": {"mmr_lambda": 3}}"#, [:], "mmr_lambda"), (#"{"port": 70000}"#, [:], "port"),
                                   (#"{"fault_delay_fraction": 0.5}"#, [:], "fault_delay_ms"), (#"{"fault_delay_ms": 0}"#, [:], "fault_delay_ms"),
                                   (#"{"fault_delay_ms": 10, "fault_delay_fraction": 1.5}"#, [:], "fault_delay_fraction"),
                                   ("{}", ["FUNNEL_FAULT_DELAY_MS": "slow"], "fault_delay_ms")] {
            let f = dir.write("bad.json", text)
            do {
                _ = try ServerConfig.load(file: f, environment: env)
                Issue.record("\(text) \(env) was accepted")
            } catch {
                #expect("\(error)".contains(named), "\(error)")
            }
        }
    }

    @Test("serving settings from the config reach the engine's pipeline")
    func reachesTheEngine() throws {
        let w = try TrainedWorld()
        defer { w.cat.remove() }
        let e = try Engine(folder: w.folder, serving: Data(#"{"candidates": 123, "mmr_pool": 40}"#.utf8))
        #expect(e.pipeline.config.candidates == 123 && e.pipeline.config.mmrPool == 40)
        #expect(e.pipeline.recommender.candidates == 123)
    }
}
