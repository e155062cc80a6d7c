import Foundation
import Testing
import TributaryCore
import TributaryDemo
import TributaryStore
import TributaryTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Scale-out on PostgreSQL: one `--role api` process and three `--role worker` processes share one
/// database and sync 200 variants (20 connections × 10) from the demo shop API, served by a fifth
/// process. One worker is SIGKILLed while it runs syncs; its runs expire when their leases run out
/// and the other workers finish them from their checkpoints.
@Suite("Scale-out: API and worker processes on PostgreSQL (child processes)", .enabled(if: StoreKind.postgresURL != nil))
struct ScaleOutProcessTests {
    static let key = "dev-secret-key-0000000001"
    static let frozenAt = "2026-11-01T00:00:00Z"

    static func config(providerPort: Int) -> String {
        """
        environments:
          dev: { secret_key: \(key) }
        scheduler:
          tick_seconds: 0.1
          lease_seconds: 2
          max_concurrent_runs: 6
          max_runs_per_connection: 3
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
                pagination: { type: cursor, cursor_path: next_cursor, cursor_param: cursor, limit_param: limit, limit: 20 }
                records_path: orders
        """
    }

    func call(_ port: Int, _ path: String, method: String = "GET", body: String? = nil) async throws -> (status: Int, json: JSONValue) {
        let response = try #require(await ServeProcessTests.get("http://127.0.0.1:\(port)\(path)", key: Self.key, method: method, body: body))
        return (response.0, try JSONParser.parse(response.1))
    }

    func waitUntilUp(_ port: Int) async throws {
        for _ in 0..<400 {
            if await ServeProcessTests.get("http://127.0.0.1:\(port)/health")?.0 == 200 { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("nothing answered on port \(port)")
        throw CancellationError()
    }

    @Test func threeWorkersShareTheRunsAndFinishWhatAKilledOneLeft() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: ServeProcessTests.binary.path), "build the tributary product first")
        let database = try await TestStore(.postgres)
        let store = database.store
        let directory = database.directory
        let ports = try childProcessPorts(2)
        let (providerPort, apiPort) = (ports[0], ports[1])
        try Self.config(providerPort: providerPort).write(to: directory.appendingPathComponent("tributary.yaml"), atomically: true, encoding: .utf8)

        func serve(_ role: String) throws -> Process {
            try ServeProcessTests.launch(
                [
                    "serve", "--role", role, "--config", directory.appendingPathComponent("tributary.yaml").path, "--database", database.location,
                    "--port", "\(apiPort)", "--insecure-dev-key", "--log-level", "error",
                ], in: directory)
        }
        let provider = try ServeProcessTests.launch(
            ["demo-provider", "--port", "\(providerPort)", "--rate-limit-every", "0", "--page-delay-ms", "80", "--frozen-at", Self.frozenAt],
            in: directory)
        var processes = [provider, try serve("api")]
        defer { for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        try await waitUntilUp(providerPort)
        try await waitUntilUp(apiPort)

        // 20 connections, each with its base variant and 9 more: 200 variants, each reading its own store.
        var variants: [VariantRef] = []
        for c in 0..<20 {
            let connection = ConnectionRef(environment: "dev", providerConfigKey: "demo-shop", connectionId: "customer-\(c)")
            let created = try await call(
                apiPort, "/connections", method: "POST",
                body: #"{"provider_config_key":"demo-shop","connection_id":"\#(connection.connectionId)","credentials":{"type":"API_KEY","api_key":"demo-shop-key"}}"#)
            #expect(created.status == 201)
            variants.append(VariantRef(connection: connection, syncName: "orders"))
            for v in 1...9 {
                let name = "store-\(c)-\(v)"
                let made = try await call(
                    apiPort, "/sync/orders/variant/\(name)", method: "POST",
                    body: #"{"provider_config_key":"demo-shop","connection_id":"\#(connection.connectionId)"}"#)
                #expect(made.status == 200 || made.status == 201, "variant \(name): \(made.json)")
                variants.append(VariantRef(connection: connection, syncName: "orders", variant: name))
            }
        }
        #expect(variants.count == 200)

        // Three workers start; their schedulers find all 200 variants due.
        let workers = try (0..<3).map { _ in try serve("worker") }
        processes += workers

        // Once a few runs have finished, kill the worker that is running the most syncs right now.
        var victim: Process? = nil
        for _ in 0..<600 where victim == nil {
            try await Task.sleep(for: .milliseconds(50))
            let active = try await activeRuns(of: variants, in: store)
            let succeeded = try await succeededCount(of: variants, in: store)
            guard succeeded >= 20 else { continue }
            let byWorker = Dictionary(grouping: active.filter { $0.status == .running }, by: { $0.worker ?? "" })
            if let (name, runs) = byWorker.max(by: { $0.value.count < $1.value.count }), runs.count >= 2,
                let process = workers.first(where: { name.hasSuffix("/\($0.processIdentifier)") })
            {
                kill(process.processIdentifier, SIGKILL)
                victim = process
            }
        }
        let killed = try #require(victim, "a worker was seen running several syncs")
        let killedName = "\(ProcessInfo.processInfo.hostName)/\(killed.processIdentifier)"
        // What the dead worker left running (read after its death, so nothing of it can still finish).
        let running = try await activeRuns(of: variants, in: store).filter { $0.status == .running && $0.worker == killedName }
        #expect(!running.isEmpty, "the killed worker died in the middle of runs")

        // Every variant ends with a successful run.
        var finished = 0
        for _ in 0..<240 {
            finished = try await succeededCount(of: variants, in: store)
            if finished == variants.count { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        #expect(finished == variants.count, "every variant synced")

        var workersSeen: Set<String> = []
        for ref in variants {
            let runs = try await store.runs(of: ref, limit: 20).sorted { $0.id < $1.id }
            workersSeen.formUnion(runs.compactMap(\.worker))
            // No run overlaps itself: each starts after the previous one of its variant ended.
            for (earlier, later) in zip(runs, runs.dropFirst()) {
                let end = try #require(earlier.finishedAt, "run \(earlier.id) of \(ref.variant) is finished")
                #expect(later.startedAt >= end, "runs \(earlier.id) and \(later.id) of \(ref.variant) overlap")
            }
            #expect(runs.filter { $0.status == .succeeded }.count == 1, "\(ref.variant) ran to success once")

            // Every order of the variant's store is in its change feed exactly once, added once and never
            // rewritten or deleted — the resumed runs re-saved nothing as a change.
            let expected = Set(DemoShop.orders(store: ref.variant, at: Timestamp(iso8601: Self.frozenAt)!.date).compactMap { $0["id"]?.stringValue })
            var feed: [StoredRecord] = []
            var cursor: FeedCursor? = nil
            repeat {
                let page = try await store.changes(try ChangeQuery(dataset: ref.dataset("Order"), cursor: cursor, limit: 1000))
                feed += page.records
                cursor = page.nextCursor
            } while cursor != nil
            #expect(feed.count == expected.count && Set(feed.map(\.id)) == expected, "\(ref.variant): \(feed.count) of \(expected.count) records")
            #expect(feed.allSatisfy { $0.deletedAt == nil && $0.firstSeenAt == $0.lastModifiedAt }, "\(ref.variant): records added once")
        }
        // The work spread over all three workers, and the killed worker's runs were finished by the others.
        #expect(workersSeen.count == 3, "runs were claimed by \(workersSeen.sorted())")
        for run in running {
            // The same run, resumed as its next attempt by another worker (it keeps its first start).
            let resumed = try #require(try await store.run(run.id))
            #expect(resumed.status == .succeeded && resumed.attempts >= 2, "the killed worker's run \(run.id) was resumed")
            #expect(resumed.worker != killedName && resumed.startedAt == run.startedAt, "another worker finished \(run.variant.variant)")
        }
        #expect(!killed.isRunning)

        for process in processes where process.isRunning { process.terminate() }
        for process in processes where process !== killed {
            for _ in 0..<200 where process.isRunning { try await Task.sleep(for: .milliseconds(25)) }
            #expect(process.terminationStatus == 0, "\(process.arguments?.first ?? "") \(process.arguments?.dropFirst().first ?? "") exits cleanly")
        }
    }

    func activeRuns(of variants: [VariantRef], in store: any Store) async throws -> [RunRecord] {
        var active: [RunRecord] = []
        for ref in variants { if let run = try await store.activeRun(of: ref) { active.append(run) } }
        return active
    }

    func succeededCount(of variants: [VariantRef], in store: any Store) async throws -> Int {
        var count = 0
        for ref in variants where try await store.runs(of: ref, limit: 20).contains(where: { $0.status == .succeeded }) { count += 1 }
        return count
    }
}
