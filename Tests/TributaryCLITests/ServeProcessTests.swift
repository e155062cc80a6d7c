import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
@testable import TributaryChaos
import TributaryTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `tributary serve` as a real child process: it answers over loopback and stops cleanly on SIGTERM.
@Suite("tributary serve (child process)")
struct ServeProcessTests {
    /// The `tributary` binary next to this test bundle (built by `swift test`).
    static var binary: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("tributary")
    }

    /// Starts the `tributary` binary with `arguments` in `directory`, its output discarded.
    static func launch(_ arguments: [String], in directory: URL, environment: [String: String] = [:], standardError: URL? = nil) throws -> Process {
        let process = Process()
        process.executableURL = binary
        process.currentDirectoryURL = directory
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
        process.standardOutput = FileHandle.nullDevice
        if let standardError {
            _ = FileManager.default.createFile(atPath: standardError.path, contents: nil)
            process.standardError = try FileHandle(forWritingTo: standardError)
        } else {
            process.standardError = FileHandle.nullDevice
        }
        try process.run()
        return process
    }

    static func get(_ url: String, key: String? = nil, method: String = "GET", body: String? = nil, headers: [String: String] = [:]) async -> (Int, String)? {
        var request = URLRequest(url: URL(string: url)!)
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        request.httpMethod = method
        request.httpBody = body.map { Data($0.utf8) }
        if let key { request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization") }
        guard let (data, response) = try? await URLSession.shared.data(for: request), let http = response as? HTTPURLResponse else { return nil }
        return (http.statusCode, String(decoding: data, as: UTF8.self))
    }

    @Test func servesOverLoopbackAndShutsDownOnSIGTERM() async throws {
        let binary = Self.binary
        try #require(FileManager.default.isExecutableFile(atPath: binary.path), "build the tributary product first (swift build)")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-serve-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let port = try childProcessPorts(2)[0]  // port + 1: the demo shop
        // The built-in demo configuration (no tributary.yaml here) calls the demo shop API, run as its own process.
        let shop = try Self.launch(["demo-provider", "--port", "\(port + 1)"], in: directory)
        defer { if shop.isRunning { shop.terminate() } }
        let process = try Self.launch(
            [
                "serve", "--port", "\(port)", "--database", directory.appendingPathComponent("t.sqlite").path, "--log-level", "info", "--log-format", "json",
            ], in: directory,
            environment: ["TRIBUTARY_DEMO_PROVIDER_URL": "http://127.0.0.1:\(port + 1)"], standardError: directory.appendingPathComponent("serve.log"))
        defer { if process.isRunning { process.terminate() } }

        var health: (Int, String)? = nil
        for _ in 0..<200 where health == nil {
            try await Task.sleep(for: .milliseconds(50))
            health = await Self.get("http://127.0.0.1:\(port)/health")
        }
        #expect(health?.0 == 200)
        #expect(health?.1 == #"{"result":"ok"}"#)
        let integrations = await Self.get("http://127.0.0.1:\(port)/integrations", key: "dev-secret-key-change-me")
        #expect(integrations?.0 == 200)
        #expect(integrations?.1.contains("demo-shop") == true)
        #expect(await Self.get("http://127.0.0.1:\(port)/integrations")?.0 == 401)

        // A new connection's base variants are scheduled at once: records arrive with no trigger.
        let created = await Self.get(
            "http://127.0.0.1:\(port)/connections", key: "dev-secret-key-change-me", method: "POST",
            body: #"{"provider_config_key":"demo-shop","connection_id":"acme","credentials":{"type":"API_KEY","api_key":"demo-shop-key"}}"#)
        #expect(created?.0 == 201)
        var synced = false
        for _ in 0..<200 where !synced {
            try await Task.sleep(for: .milliseconds(50))
            let status = await Self.get(
                "http://127.0.0.1:\(port)/sync/status?syncs=orders&provider_config_key=demo-shop&connection_id=acme", key: "dev-secret-key-change-me")
            synced = status?.1.contains(#""status":"SUCCESS""#) == true && status?.1.contains(#""recordCount":{"Order":12"#) == true
        }
        #expect(synced, "the scheduler ran the base variant on its own, reading the demo shop over HTTP")
        // The runs show in /metrics (open on the API port: the demo configuration sets no metrics.token).
        let metrics = await Self.get("http://127.0.0.1:\(port)/metrics")
        #expect(metrics?.0 == 200)
        #expect(
            metrics?.1.split(separator: "\n").contains {
                $0.hasPrefix("tributary_runs_finished_total{") && $0.contains(#"sync="orders""#) && $0.contains(#"status="succeeded""#)
            } == true)
        // The proxy reaches the same shop with the connection's key.
        let proxied = await Self.get(
            "http://127.0.0.1:\(port)/proxy/stores/base/orders?limit=1", key: "dev-secret-key-change-me",
            headers: ["Connection-Id": "acme", "Provider-Config-Key": "demo-shop"])
        #expect(proxied?.0 == 200 || proxied?.0 == 429, "\(proxied?.1 ?? "no answer")")
        if proxied?.0 == 200 { #expect(proxied?.1.contains(#""id":"base-"#) == true) }

        process.terminate()  // SIGTERM
        for _ in 0..<200 where process.isRunning { try await Task.sleep(for: .milliseconds(25)) }
        #expect(!process.isRunning, "serve stops on SIGTERM")
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
        // --log-format json: every line is one JSON object with the time, level and message.
        let lines = try String(contentsOf: directory.appendingPathComponent("serve.log"), encoding: .utf8).split(separator: "\n")
        let objects = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(!lines.isEmpty && objects.count == lines.count, "\(lines.prefix(3))")
        #expect(objects.allSatisfy { $0["time"] is String && $0["level"] is String && $0["message"] is String })
        #expect(objects.contains { $0["message"] as? String == "run finished" && $0["status"] as? String == "succeeded" && $0["run"] != nil })
        shop.terminate()
        for _ in 0..<200 where shop.isRunning { try await Task.sleep(for: .milliseconds(25)) }
        #expect(!shop.isRunning && shop.terminationStatus == 0, "demo-provider stops on SIGTERM")
    }

    /// The ports child servers are told to use: outside the ephemeral range, free when handed out,
    /// never twice, and never one that a socket holds (an outgoing connection's local port made a
    /// child's bind fail).
    @Test func childPortsAvoidTheEphemeralRangeAndHeldPorts() throws {
        let ephemeral = ephemeralRange()
        var seen = Set<Int>()
        for _ in 0..<50 {
            let ports = try childProcessPorts(2)
            #expect(ports.count == 2 && ports[1] == ports[0] + 1)
            #expect(ports.allSatisfy { $0 >= 20_000 && !ephemeral.contains($0) && canBind($0) })
            #expect(seen.isDisjoint(with: ports), "never handed out twice in one process")
            seen.formUnion(ports)
        }
        // A port a live socket holds is refused, and free again once the socket is closed.
        let port = try childProcessPorts()[0]
        let holder = try #require(loopbackSocket(boundTo: port))
        #expect(!canBind(port))
        close(holder)
        #expect(canBind(port))
    }

    /// A chaos run's API processes listen on its seed's port, in 20000–29999, unless another
    /// process holds it or this one handed it out (another run's): then on a free one there.
    @Test(.timeLimit(.minutes(1))) func theChaosAPIPortPassesOverHeldAndHandedOutPorts() throws {
        func port(of seed: UInt64) -> Int { 20_000 + Int((seed >> 16) % 10_000) }
        /// A seed after `seed` whose port is free now and not handed out.
        func freeSeed(after seed: UInt64) throws -> UInt64 {
            var candidate = seed
            repeat { candidate += 37 << 16 } while !canBind(port(of: candidate)) || handedOutPorts.withLock({ $0.contains(port(of: candidate)) })
            return candidate
        }
        let ephemeral = ephemeralRange()
        func expectElsewhere(_ chosen: Int, than own: Int) {
            #expect(chosen != own && (20_000..<30_000).contains(chosen) && !ephemeral.contains(chosen) && canBind(chosen))
        }
        // Free: the seed's own port; asked again (a second run with the seed), another.
        let seed = try freeSeed(after: 7 << 16)
        #expect(try Harness.apiPort(seed: seed) == port(of: seed))
        expectElsewhere(try Harness.apiPort(seed: seed), than: port(of: seed))
        // Held by a socket (another process's server): another.
        let held = try freeSeed(after: seed)
        let holder = try #require(loopbackSocket(boundTo: port(of: held)))
        defer { close(holder) }
        expectElsewhere(try Harness.apiPort(seed: held), than: port(of: held))
        #expect(!handedOutPorts.withLock { $0.contains(port(of: held)) }, "a held port is not kept as handed out")
    }
}
