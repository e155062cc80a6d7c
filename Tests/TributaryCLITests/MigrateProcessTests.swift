import Foundation
import Testing
import TributaryCore
import TributarySQLite
import TributaryStore
import TributaryTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Growing out of SQLite: `serve` fills a SQLite store through the API (variants, a full refresh that
/// deletes, a paused variant, webhooks to the app still waiting), stops, `tributary migrate` copies
/// it into a new PostgreSQL database (`--verify` compares every table), and `serve` on PostgreSQL
/// carries on: an app's old feed cursor continues exactly, counts match, the paused variant stays
/// paused, the waiting webhooks are still waiting, and the schedule runs the next slot.
@Suite("tributary migrate: SQLite to PostgreSQL (child processes)", .enabled(if: StoreKind.postgresURL != nil))
struct MigrateProcessTests {
    static let key = "dev-secret-key-0000000001"

    static func config(providerPort: Int) -> String {
        """
        environments:
          dev:
            secret_key: \(key)
            webhooks:
              urls: [http://127.0.0.1:9/unreachable]
              signing_key: migrate-signing-key-0123456789
              on_sync_completion_always: true
        scheduler:
          tick_seconds: 0.2
          lease_seconds: 2
        integrations:
          demo-shop:
            base_url: http://127.0.0.1:\(providerPort)
            auth: { type: api_key, header: X-Api-Key }
            syncs:
              orders:
                models: [Order]
                frequency: every hour
                sync_type: full
                track_deletes: true
                endpoint: /stores/{variant}/orders
                pagination: { type: cursor, cursor_path: next_cursor, cursor_param: cursor, limit_param: limit, limit: 40 }
                records_path: orders
        """
    }

    func call(_ port: Int, _ path: String, method: String = "GET", body: String? = nil) async throws -> (status: Int, json: JSONValue) {
        let response = try #require(await ServeProcessTests.get("http://127.0.0.1:\(port)\(path)", key: Self.key, method: method, body: body))
        return (response.0, try JSONParser.parse(response.1))
    }

    func eventually(_ what: String, seconds: Double = 30, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("timed out waiting for \(what)")
        throw CancellationError()
    }

    func stop(_ process: Process) async throws {
        process.terminate()
        for _ in 0..<400 where process.isRunning { try await Task.sleep(for: .milliseconds(25)) }
        #expect(!process.isRunning && process.terminationStatus == 0)
    }

    /// `tributary migrate …` run to its end: its exit status and what it printed.
    func migrate(_ arguments: [String], in directory: URL) async throws -> (status: Int32, output: String) {
        let log = directory.appendingPathComponent("migrate-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        process.executableURL = ServeProcessTests.binary
        process.currentDirectoryURL = directory
        process.arguments = ["migrate"] + arguments
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        for _ in 0..<2400 where process.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        if process.isRunning { process.terminate() }
        return (process.terminationStatus, (try? String(contentsOf: log, encoding: .utf8)) ?? "")
    }

    func status(_ port: Int, variant: String) async throws -> JSONValue? {
        try await call(port, "/sync/status?syncs=\(variant == "base" ? "orders" : "orders::\(variant)")&provider_config_key=demo-shop&connection_id=acme").json["syncs"]?.arrayValue?
            .first { $0["variant"]?.stringValue == variant }
    }

    @Test func aSQLiteStoreMovesToPostgreSQLAndCarriesOn() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: ServeProcessTests.binary.path), "build the tributary product first")
        let target = try await TestStore(.postgres)
        let directory = target.directory
        let sqlite = directory.appendingPathComponent("grown.sqlite").path
        let ports = try childProcessPorts(2)
        let (providerPort, port) = (ports[0], ports[1])
        let configPath = directory.appendingPathComponent("tributary.yaml").path
        try Self.config(providerPort: providerPort).write(toFile: configPath, atomically: true, encoding: .utf8)
        func serve(_ database: String) throws -> Process {
            try ServeProcessTests.launch(
                ["serve", "--config", configPath, "--database", database, "--port", "\(port)", "--insecure-dev-key", "--log-level", "error"], in: directory)
        }
        func provider(frozenAt: String, pageDelay: Int = 0) throws -> Process {
            try ServeProcessTests.launch(
                ["demo-provider", "--port", "\(providerPort)", "--rate-limit-every", "0", "--frozen-at", frozenAt, "--page-delay-ms", "\(pageDelay)"],
                in: directory)
        }
        func stopProvider() async throws {
            for process in processes where process.arguments?.first == "demo-provider" && process.isRunning {
                process.terminate()
                for _ in 0..<200 where process.isRunning { try await Task.sleep(for: .milliseconds(25)) }
            }
        }
        var processes: [Process] = []
        defer { for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) } }

        // 1. On SQLite: a connection whose base variant syncs, a second variant that is then paused.
        processes.append(try provider(frozenAt: "2026-06-01T00:00:00Z"))
        var server = try serve(sqlite)
        processes.append(server)
        try await eventually("serve on SQLite") { await ServeProcessTests.get("http://127.0.0.1:\(port)/health")?.0 == 200 }
        #expect(
            try await call(
                port, "/connections", method: "POST",
                body: #"{"provider_config_key":"demo-shop","connection_id":"acme","credentials":{"type":"API_KEY","api_key":"demo-shop-key"}}"#
            ).status == 201)
        try await eventually("the base variant synced") { try await status(port, variant: "base")?["latestExecutionStatus"] == "SUCCESS" }
        let made = try await call(port, "/sync/orders/variant/store-eu", method: "POST", body: #"{"provider_config_key":"demo-shop","connection_id":"acme"}"#)
        #expect(made.status == 200 || made.status == 201)
        try await eventually("store-eu synced") { try await status(port, variant: "store-eu")?["latestExecutionStatus"] == "SUCCESS" }
        _ = try await call(port, "/sync/pause", method: "POST", body: #"{"provider_config_key":"demo-shop","connection_id":"acme","syncs":["orders::store-eu"]}"#)

        // The app reads one page of the base feed and keeps the cursor.
        let page = try #require(
            await ServeProcessTests.get(
                "http://127.0.0.1:\(port)/records?model=Order&limit=50", key: Self.key, headers: ["Connection-Id": "acme", "Provider-Config-Key": "demo-shop"]))
        let baseNow = JSONWriter.string(try await status(port, variant: "base") ?? .null)
        let cursor = try #require(try JSONParser.parse(page.1)["next_cursor"]?.stringValue, "\(page.1.prefix(300)) \(baseNow)")

        // 2. The shop moves on (orders drop out of its listing): a full refresh marks them deleted.
        try await stopProvider()
        processes.append(try provider(frozenAt: "2026-06-01T00:10:00Z"))
        let runsBefore = try await call(port, "/sync/runs?provider_config_key=demo-shop&connection_id=acme&sync=orders").json["runs"]?.arrayValue?.count ?? 0
        _ = try await call(port, "/sync/trigger", method: "POST", body: #"{"provider_config_key":"demo-shop","connection_id":"acme","syncs":["orders"]}"#)
        try await eventually("the refresh that deletes") {
            let runs = try await call(port, "/sync/runs?provider_config_key=demo-shop&connection_id=acme&sync=orders").json["runs"]?.arrayValue ?? []
            return runs.count > runsBefore && runs.first?["status"] == "succeeded"
        }
        // The next slot comes soon: the schedule must carry over.
        _ = try await call(
            port, "/sync/update-connection-frequency", method: "PUT",
            body: #"{"provider_config_key":"demo-shop","connection_id":"acme","sync_name":"orders","frequency":"every 30 seconds"}"#)
        let before = try #require(try await status(port, variant: "base"))
        let pausedBefore = try #require(try await status(port, variant: "store-eu"))
        let pending = try await call(port, "/webhooks/deliveries?status=pending").json["deliveries"]?.arrayValue?.compactMap { $0["id"]?.int64Value } ?? []
        #expect(!pending.isEmpty, "webhooks to the unreachable app are still waiting")
        try await stop(server)

        // What the SQLite store answers the app's cursor with: the continuation PostgreSQL must give.
        let local = try SQLiteStore(path: sqlite)
        let dataset = DatasetRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "demo-shop", connectionId: "acme"), model: "Order", variant: "base")
        var expected: [StoredRecord] = []
        var next: FeedCursor? = try FeedCursor(encoded: cursor)
        while let position = next {
            let result = try await local.changes(try ChangeQuery(dataset: dataset, cursor: position, limit: 1000))
            expected += result.records
            next = result.nextCursor
        }
        try local.close()
        #expect(expected.contains { $0.deletedAt != nil }, "the continuation holds the deletions")

        // 3. A serve holding the file (a run under a live lease) is refused; once the lease ran out, the
        // copy goes through and every table verifies.
        try await stopProvider()
        processes.append(try provider(frozenAt: "2026-06-01T00:10:00Z", pageDelay: 500))
        server = try serve(sqlite)
        processes.append(server)
        try await eventually("serve on SQLite again") { await ServeProcessTests.get("http://127.0.0.1:\(port)/health")?.0 == 200 }
        _ = try await call(port, "/sync/trigger", method: "POST", body: #"{"provider_config_key":"demo-shop","connection_id":"acme","syncs":["orders"]}"#)
        try await eventually("a run under a lease") { (try await status(port, variant: "base"))?["status"] == "RUNNING" }
        try await Task.sleep(for: .milliseconds(700))
        kill(server.processIdentifier, SIGKILL)
        let refused = try await migrate(["--from", sqlite, "--to", target.location], in: directory)
        #expect(refused.status != 0 && refused.output.contains("live lease"), "\(refused.output)")
        let copiedNothing = try await !target.store.connectionExists(dataset.connection)
        #expect(copiedNothing, "nothing was copied")
        try await Task.sleep(for: .seconds(3))
        let copied = try await migrate(["--from", sqlite, "--to", target.location, "--verify"], in: directory)
        #expect(copied.status == 0, "\(copied.output)")
        #expect(copied.output.contains("records:") && copied.output.contains("verified: every table has the same rows on both sides"), "\(copied.output)")
        let again = try await migrate(["--from", sqlite, "--to", target.location], in: directory)
        #expect(again.status != 0 && again.output.contains("already holds a finished copy"), "\(again.output)")

        // 4. serve on PostgreSQL carries on.
        try await stopProvider()
        processes.append(try provider(frozenAt: "2026-06-01T00:10:00Z"))
        server = try serve(target.location)
        processes.append(server)
        try await eventually("serve on PostgreSQL") { await ServeProcessTests.get("http://127.0.0.1:\(port)/health")?.0 == 200 }
        // The app's old cursor continues exactly where it was: the same records, changes and cursors.
        var continued: [JSONValue] = []
        var position: String? = cursor
        while let current = position {
            let answer = try #require(
                await ServeProcessTests.get(
                    "http://127.0.0.1:\(port)/records?model=Order&limit=40&cursor=\(current)", key: Self.key,
                    headers: ["Connection-Id": "acme", "Provider-Config-Key": "demo-shop"]))
            #expect(answer.0 == 200)
            let json = try JSONParser.parse(answer.1)
            continued += json["records"]?.arrayValue ?? []
            position = json["next_cursor"]?.stringValue
        }
        #expect(continued.count == expected.count)
        #expect(continued.map { $0["id"]?.stringValue } == expected.map { $0.id }, "the same records in the same order")
        #expect(continued.map { $0["_nango_metadata"]?["cursor"]?.stringValue } == expected.map { $0.cursor.encoded }, "the same cursors")
        #expect(continued.map { $0["_nango_metadata"]?["deleted_at"]?.stringValue } == expected.map { $0.deletedAt?.iso8601 }, "the same deletions")
        // Counts, the paused variant and the waiting webhooks came along.
        let after = try #require(try await status(port, variant: "base"))
        #expect(after["recordCount"] == before["recordCount"])
        #expect(after["frequency"] == "every 30 seconds")
        #expect((try await status(port, variant: "store-eu"))?["status"] == "PAUSED")
        #expect((try await status(port, variant: "store-eu"))?["recordCount"] == pausedBefore["recordCount"])
        let stillPending = try await call(port, "/webhooks/deliveries?status=pending").json["deliveries"]?.arrayValue?.compactMap { $0["id"]?.int64Value } ?? []
        #expect(Set(pending).isSubset(of: Set(stillPending)), "waiting webhooks still wait: \(pending) in \(stillPending)")
        // Scheduling resumes: the run the killed serve left is resumed, and the 30-second schedule runs again.
        let lastBefore = try await call(port, "/sync/runs?provider_config_key=demo-shop&connection_id=acme&sync=orders").json["runs"]?.arrayValue?
            .compactMap { $0["id"]?.int64Value }.max() ?? 0
        try await eventually("a scheduled run on PostgreSQL", seconds: 60) {
            let runs = try await call(port, "/sync/runs?provider_config_key=demo-shop&connection_id=acme&sync=orders").json["runs"]?.arrayValue ?? []
            return runs.contains { ($0["id"]?.int64Value ?? 0) > lastBefore && $0["status"] == "succeeded" }
                && runs.allSatisfy { $0["status"] != "running" || ($0["id"]?.int64Value ?? 0) > lastBefore }
        }
        try await stop(server)
        try await stopProvider()
    }
}
