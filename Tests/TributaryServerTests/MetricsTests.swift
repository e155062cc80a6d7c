import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Testing
import TributaryTestSupport
import TributaryCore
import TributaryEngine
import TributaryServer
import TributaryStore

/// One scrape in the Prometheus text format, parsed: series name → label sets with their values.
struct Scrape {
    struct Series: Hashable {
        var name: String
        var labels: [String: String]
    }
    var values: [Series: Double] = [:]
    var help: Set<String> = []

    init(_ text: String) {
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# HELP ") { help.insert(String(line.dropFirst(7).prefix { $0 != " " })) }
            guard !line.hasPrefix("#"), let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            let key = line[..<space]
            var series = Series(name: String(key.prefix { $0 != "{" }), labels: [:])
            if let open = key.firstIndex(of: "{") {
                let body = key[key.index(after: open)..<key.index(before: key.endIndex)]
                for pair in body.split(separator: ",") {
                    let parts = pair.split(separator: "=", maxSplits: 1)
                    guard parts.count == 2 else { continue }
                    series.labels[String(parts[0])] = String(parts[1].dropFirst().dropLast())
                }
            }
            values[series] = value
        }
    }

    /// The sum over the series of `name` whose labels include `labels`.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double {
        values.filter { entry in entry.key.name == name && labels.allSatisfy { entry.key.labels[$0.key] == $0.value } }.map(\.value).reduce(0, +)
    }

    /// Every series (name and labels), without values: what the label cardinality is made of.
    var seriesSet: Set<Series> { Set(values.keys) }
}

@Suite("Metrics: GET /metrics")
struct MetricsTests {
    static let token = "metrics-token-0123456789"

    func scrape(_ api: APIClient) async throws -> Scrape {
        let response = try await api.send(.get, "/metrics", key: Self.token)
        #expect(response.status == .ok)
        #expect(response.contentType?.hasPrefix("text/plain; version=0.0.4") == true)
        return Scrape(response.json.stringValue ?? "")
    }

    @Test func runsRecordsAndActiveRunsMoveAsTheyHappen() async throws {
        let f = try await ServerFixture(extraYAML: "metrics:\n  token: \(Self.token)\n")
        try await f.withRouter { api in
            // The token guards it: none, or the API's own key, is refused.
            #expect(try await api.send(.get, "/metrics", key: nil).status == .unauthorized)
            let wrong = try await api.send(.get, "/metrics", key: devKey)
            #expect(wrong.status == .unauthorized)
            #expect(wrong.errorCode == "unauthorized")
            #expect(try await api.send(.post, "/metrics", key: Self.token).status == .methodNotAllowed)

            let before = try await scrape(api)
            #expect(before.value("tributary_runs_finished_total") == 0)
            #expect(before.value("tributary_store_up") == 1)
            #expect(before.value("process_resident_memory_bytes") > 1_000_000)
            #expect(before.help.contains("process_cpu_seconds_total"))

            try await api.connect("c1")
            _ = try await api.send(.post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items", "slow"]])
            let items = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1"), syncName: "items", variant: "base")
            _ = try await f.waitForRuns(items)
            let slowRef = VariantRef(connection: items.connection, syncName: "slow", variant: "base")
            try await eventually("the slow run holds its gate") { f.gate.entries > 0 }
            let busy = try await scrape(api)
            let labels = ["environment": "dev", "integration": "shop", "sync": "items"]
            #expect(busy.value("tributary_runs_started_total", labels) == 1)
            #expect(busy.value("tributary_runs_finished_total", labels.merging(["status": "succeeded"]) { a, _ in a }) == 1)
            #expect(busy.value("tributary_run_duration_seconds_count", labels) == 1)
            #expect(busy.value("tributary_run_queue_wait_seconds_count", labels) == 1)
            #expect(busy.value("tributary_records_total", labels.merging(["change": "added"]) { a, _ in a }) == 3)
            #expect(busy.value("tributary_store_write_duration_seconds_count", ["operation": "save_records"]) >= 1)
            #expect(busy.value("tributary_store_write_duration_seconds_count", ["operation": "complete_run"]) >= 1)
            #expect(busy.value("tributary_runs_active", ["sync": "slow", "state": "running"]) == 1, "the held run, read from the store")
            #expect(busy.help.contains("tributary_runs_active"))
            #expect(busy.values.keys.allSatisfy { $0.labels["connection_id"] == nil && $0.labels["variant"] == nil })

            // Another run of the same variant: the counters move on; unchanged records add nothing.
            _ = try await api.send(.post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items"]])
            _ = try await f.waitForRuns(items, count: 2)
            f.gate.release()
            _ = try await f.waitForRuns(slowRef)
            let after = try await scrape(api)
            #expect(after.value("tributary_runs_finished_total", labels) == 2)
            #expect(after.value("tributary_records_total", labels) == 3, "the second run changed nothing")
            #expect(after.value("tributary_runs_active", ["sync": "slow"]) == 0, "back to 0 once its run ended")
            #expect(after.value("tributary_runs_finished_total", ["sync": "slow", "status": "succeeded"]) == 1)
        }
    }

    @Test func aThousandVariantsExportNoMoreSeriesThanOne() async throws {
        let f = try await ServerFixture(extraYAML: "metrics:\n  token: \(Self.token)\n")
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let executor = SyncExecutor(store: f.store, functions: f.functions, logger: logger, metrics: f.metricsExport.metrics)
        let sync = try #require(f.config.integration("shop", in: "dev")?.sync(named: "items"))
        @Sendable func run(_ index: Int) async throws {
            let ref = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c\(index % 100)"), syncName: "items", variant: "v\(index)")
            _ = try await f.store.ensureConnection(ref.connection)
            let finished = try await executor.run(ref, sync: sync)
            #expect(finished.status == .succeeded)
        }
        try await f.withRouter { api in
            try await run(0)
            let one = try await scrape(api).seriesSet
            for index in 1..<1000 { try await run(index) }
            let thousand = try await scrape(api)
            #expect(thousand.seriesSet == one, "the same series, whatever the number of variants and connections")
            #expect(thousand.value("tributary_runs_finished_total", ["sync": "items"]) == 1000)
            #expect(thousand.value("tributary_records_total", ["change": "added"]) == 3000)
        }
    }

    @Test func metricsPortMovesTheEndpointOffTheAPIPort() async throws {
        let f = try await ServerFixture(extraYAML: "metrics:\n  port: 9464\n")
        try await f.withRouter { api in
            let onAPIPort = try await api.send(.get, "/metrics", key: nil)
            #expect(onAPIPort.status == .notFound, "not on the API port")
        }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let app = buildMetricsApplication(export: f.metricsExport, config: f.config, store: f.store, logger: logger, port: 0)
        try await app.test(.live) { client in
            let response = try await client.execute(uri: "/metrics", method: .get)
            #expect(response.status == .ok)
            let scrape = Scrape(String(buffer: response.body))
            #expect(scrape.value("tributary_store_up") == 1, "no token set: open on its own port")
            #expect(try await client.execute(uri: "/health", method: .get).status == .notFound, "nothing else is served there")
        }
    }
}
