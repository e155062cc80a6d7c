import Foundation
import Testing
import TributaryTestSupport
import TributaryCore

/// `tributary serve --role api` and two `--role worker` processes on one database: a trigger accepted
/// by the API process waits in the store until a worker claims it, and a pause sent to the API
/// process stops a run executing in a worker process.
@Suite("API and worker processes (child processes)")
struct RoleSplitProcessTests {
    static let key = "dev-secret-key-0000000001"
    static let config = """
        environments:
          dev: { secret_key: \(key) }
        scheduler:
          tick_seconds: 0.1
        integrations:
          demo-shop:
            syncs:
              orders:
                function: demo-orders
                models: [Order]
                frequency: every hour
                track_deletes: true
        """

    func start(_ role: String, directory: URL, port: Int) throws -> Process {
        try ServeProcessTests.launch(
            [
                "serve", "--role", role, "--config", directory.appendingPathComponent("tributary.yaml").path,
                "--database", directory.appendingPathComponent("split.sqlite").path, "--port", "\(port)", "--insecure-dev-key", "--log-level", "error",
            ], in: directory)
    }

    func call(_ port: Int, _ path: String, method: String = "GET", body: String? = nil, headers: [String: String] = [:]) async throws
        -> (status: Int, json: JSONValue)
    {
        let response = try #require(
            await ServeProcessTests.get("http://127.0.0.1:\(port)\(path)", key: Self.key, method: method, body: body, headers: headers))
        return (response.0, try JSONParser.parse(response.1))
    }

    func latestRun(_ port: Int) async throws -> JSONValue? {
        try await call(port, "/sync/runs?provider_config_key=demo-shop&connection_id=acme&sync=orders").json["runs"]?.arrayValue?.first
    }

    @Test func anAPIProcessQueuesAndWorkerProcessesRunAndStop() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: ServeProcessTests.binary.path), "build the tributary product first")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-split-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try Self.config.write(to: directory.appendingPathComponent("tributary.yaml"), atomically: true, encoding: .utf8)
        let port = try childProcessPorts()[0]

        let api = try start("api", directory: directory, port: port)
        var processes = [api]
        defer { for process in processes where process.isRunning { process.terminate() } }
        var up = false
        for _ in 0..<200 where !up {
            try await Task.sleep(for: .milliseconds(50))
            up = await ServeProcessTests.get("http://127.0.0.1:\(port)/health")?.0 == 200
        }
        try #require(up)

        // With only the API process, a triggered run is queued and stays queued.
        let created = try await call(
            port, "/connections", method: "POST",
            body: #"{"provider_config_key":"demo-shop","connection_id":"acme","credentials":{"type":"NONE"},"metadata":{"base.page_size":10,"base.frozen_at":"2026-11-01T00:00:00Z"}}"#)
        #expect(created.status == 201)
        let trigger = #"{"provider_config_key":"demo-shop","connection_id":"acme","syncs":["orders"]}"#
        #expect(try await call(port, "/sync/trigger", method: "POST", body: trigger).status == 200)
        #expect(try await call(port, "/sync/trigger", method: "POST", body: trigger).status == 409, "already queued")
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await latestRun(port)?["status"]?.stringValue == "queued")

        // Two workers start; one of them claims the queued run and finishes it.
        for _ in 0..<2 { processes.append(try start("worker", directory: directory, port: port)) }
        var latest: JSONValue? = nil
        for _ in 0..<300 {
            try await Task.sleep(for: .milliseconds(50))
            latest = try await latestRun(port)
            if latest?["status"]?.stringValue == "succeeded" { break }
        }
        #expect(latest?["status"]?.stringValue == "succeeded")
        #expect(latest?["results"]?["Order"]?["added"]?.int64Value == 120)
        let runs = try await call(port, "/sync/runs?provider_config_key=demo-shop&connection_id=acme&sync=orders").json["runs"]?.arrayValue ?? []
        #expect(runs.count == 1, "the queued run was run once, by one worker; the schedulers did not add another")
        let records = try await call(port, "/records?model=Order&limit=500", headers: ["Connection-Id": "acme", "Provider-Config-Key": "demo-shop"])
        #expect(records.json["records"]?.arrayValue?.count == 120)

        // A slow run in a worker process is stopped by a pause sent to the API process.
        #expect(
            try await call(
                port, "/connections/metadata", method: "PATCH",
                body: #"{"provider_config_key":"demo-shop","connection_id":"acme","metadata":{"base.page_size":5,"base.page_delay_ms":300}}"#
            ).status == 200)
        #expect(
            try await call(
                port, "/sync/trigger", method: "POST",
                body: #"{"provider_config_key":"demo-shop","connection_id":"acme","syncs":["orders"],"opts":{"reset":true}}"#
            ).status == 200)
        var page: Int64 = 0
        for _ in 0..<200 where page < 2 {
            try await Task.sleep(for: .milliseconds(50))
            let status = try await call(port, "/sync/status?syncs=orders&provider_config_key=demo-shop&connection_id=acme")
            page = status.json["syncs"]?[0]?["checkpoint"]?["page"]?.int64Value ?? 0
        }
        try #require(page >= 2, "the second run is under way in a worker")
        #expect(try await call(port, "/sync/pause", method: "POST", body: #"{"provider_config_key":"demo-shop","connection_id":"acme","syncs":["orders"]}"#).status == 200)
        // The pause ended the run in the store, in its transaction; the worker process loses the lease.
        let stopped = try await latestRun(port)
        #expect(stopped?["status"]?.stringValue == "cancelled")
        #expect(stopped?["error"]?.stringValue == "Cancelled: the variant was paused.")
        // Whatever the worker still tries to write for the ended run is refused: the checkpoint stands still.
        let statusPath = "/sync/status?syncs=orders&provider_config_key=demo-shop&connection_id=acme"
        let checkpointAfterPause = try await call(port, statusPath).json["syncs"]?[0]?["checkpoint"]
        try await Task.sleep(for: .milliseconds(1500))
        #expect(try await call(port, statusPath).json["syncs"]?[0]?["checkpoint"] == checkpointAfterPause, "no late checkpoint of the paused run")
        let status = try await call(port, "/sync/status?syncs=orders&provider_config_key=demo-shop&connection_id=acme")
        #expect(status.json["syncs"]?[0]?["status"]?.stringValue == "PAUSED")

        for process in processes { process.terminate() }
        for process in processes {
            for _ in 0..<200 where process.isRunning { try await Task.sleep(for: .milliseconds(25)) }
            #expect(!process.isRunning)
            #expect(process.terminationStatus == 0)
        }
    }
}
