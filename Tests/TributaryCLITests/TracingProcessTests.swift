import Foundation
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing
import TributaryTestSupport
import TributaryDemo

/// An OpenTelemetry collector's OTLP/HTTP traces endpoint over loopback: it keeps every request body
/// (`http/json`) and answers 200, as a collector does.
final class FakeCollector: Sendable {
    let bodies = Mutex<[Data]>([])
    let contentTypes = Mutex<Set<String>>([])

    /// Every span received: its name, ids, parent, attributes (as text) and the service that sent it.
    struct ReceivedSpan {
        var name: String
        var traceId: String
        var spanId: String
        var parentSpanId: String
        var attributes: [String: String]
        var service: String
        var statusCode: Int
    }

    var spans: [ReceivedSpan] {
        bodies.withLock { $0 }.flatMap { body -> [ReceivedSpan] in
            guard let root = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else { return [] }
            return (root["resourceSpans"] as? [[String: Any]] ?? []).flatMap { resourceSpans -> [ReceivedSpan] in
                let resource = Self.attributes((resourceSpans["resource"] as? [String: Any])?["attributes"])
                return (resourceSpans["scopeSpans"] as? [[String: Any]] ?? []).flatMap { scope in
                    (scope["spans"] as? [[String: Any]] ?? []).map { span in
                        ReceivedSpan(
                            name: span["name"] as? String ?? "", traceId: Self.hex(span["traceId"]), spanId: Self.hex(span["spanId"]),
                            parentSpanId: Self.hex(span["parentSpanId"]), attributes: Self.attributes(span["attributes"]),
                            service: resource["service.name"] ?? "", statusCode: (span["status"] as? [String: Any])?["code"] as? Int ?? 0)
                    }
                }
            }
        }
    }

    /// OTLP/JSON key-value lists as `[key: value-as-text]`.
    static func attributes(_ list: Any?) -> [String: String] {
        var result: [String: String] = [:]
        for entry in list as? [[String: Any]] ?? [] {
            guard let key = entry["key"] as? String, let value = entry["value"] as? [String: Any], let first = value.first else { continue }
            result[key] = "\(first.value)"
        }
        return result
    }

    /// Ids as lower-case hex, whether the exporter wrote hex (the OTLP/JSON rule) or base64 (protobuf's JSON mapping of bytes).
    static func hex(_ value: Any?) -> String {
        guard let text = value as? String, !text.isEmpty else { return "" }
        if text.count % 2 == 0, text.allSatisfy(\.isHexDigit), text.count == 32 || text.count == 16 { return text.lowercased() }
        guard let bytes = Data(base64Encoded: text) else { return text }
        return bytes.map { String(format: "%02x", $0) }.joined()
    }

    func serve(_ body: @escaping @Sendable (_ endpoint: String) async throws -> Void) async throws {
        let router = Router()
        router.post("/v1/traces") { request, _ in
            let buffer = try await request.body.collect(upTo: 16 << 20)
            self.bodies.withLock { $0.append(Data(buffer: buffer)) }
            self.contentTypes.withLock { _ = $0.insert(request.headers[.contentType] ?? "") }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: "{}")))
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            try await body("http://127.0.0.1:\(client.port!)/v1/traces")
        }
    }
}

/// `tributary serve` exporting its spans to an OpenTelemetry collector (swift-otel, OTLP/HTTP JSON),
/// as a real child process.
@Suite("Tracing export (child process)")
struct TracingProcessTests {
    /// The scheduler runs a new connection's variants; each run reaches the collector as one trace: the
    /// `tributary.run` span, the demo shop requests and the store writes as its children, named by the
    /// `tracing:` section's service name. The run's JSON log lines carry the same trace id. The API key
    /// appears in no span. SIGTERM flushes what is left and the process exits 0.
    @Test func runsReachTheCollectorAsTracesThatTheLogsName() async throws {
        let binary = ServeProcessTests.binary
        try #require(FileManager.default.isExecutableFile(atPath: binary.path), "build the tributary product first (swift build)")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-tracing-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let collector = FakeCollector()
        try await collector.serve { endpoint in
            let port = try childProcessPorts(2)[0]
            let shop = try ServeProcessTests.launch(["demo-provider", "--port", "\(port + 1)"], in: directory)
            defer { if shop.isRunning { shop.terminate() } }
            let config = directory.appendingPathComponent("tributary.yaml")
            try ("tracing:\n  enabled: true\n  endpoint: \(endpoint)\n  protocol: http/json\n  service_name: tributary-under-test\n" + DemoConfiguration.yaml)
                .write(to: config, atomically: true, encoding: .utf8)
            let log = directory.appendingPathComponent("serve.log")
            let process = try ServeProcessTests.launch(
                ["serve", "--port", "\(port)", "--database", directory.appendingPathComponent("t.sqlite").path, "--log-format", "json", "--insecure-dev-key"],
                in: directory,
                // A batch delay longer than the test: spans reach the collector only through the flush
                // SIGTERM triggers. The OTEL_* switches are set so the runner's own environment cannot change them.
                environment: [
                    "TRIBUTARY_DEMO_PROVIDER_URL": "http://127.0.0.1:\(port + 1)", "OTEL_BSP_SCHEDULE_DELAY": "600000", "OTEL_SDK_DISABLED": "false",
                    "OTEL_TRACES_EXPORTER": "", "OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "", "OTEL_SERVICE_NAME": "",
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "", "OTEL_TRACES_SAMPLER": "",
                    // Not read (would stop swift-otel if it read the environment itself).
                    "OTEL_PROPAGATORS": "tracecontext,baggage",
                ], standardError: log)
            defer { if process.isRunning { process.terminate() } }

            var health: (Int, String)? = nil
            for _ in 0..<200 where health == nil {
                try await Task.sleep(for: .milliseconds(50))
                health = await ServeProcessTests.get("http://127.0.0.1:\(port)/health")
            }
            try #require(health?.0 == 200, "serve did not start: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
            let created = await ServeProcessTests.get(
                "http://127.0.0.1:\(port)/connections", key: "dev-secret-key-change-me", method: "POST",
                body: #"{"provider_config_key":"demo-shop","connection_id":"acme","credentials":{"type":"API_KEY","api_key":"demo-shop-key"}}"#)
            #expect(created?.0 == 201)

            // The scheduler starts the base variants at once; both finish. Their spans wait in the batch.
            var synced = false
            for _ in 0..<300 where !synced {
                try await Task.sleep(for: .milliseconds(50))
                let status = await ServeProcessTests.get(
                    "http://127.0.0.1:\(port)/sync/status?syncs=*&provider_config_key=demo-shop&connection_id=acme", key: "dev-secret-key-change-me")
                synced = status?.1.components(separatedBy: #""latestExecutionStatus":"SUCCESS""#).count == 3
            }
            #expect(synced, "both base variants ran")
            #expect(collector.spans.isEmpty, "nothing exported before the batch delay or a flush")

            process.terminate()  // SIGTERM: the worker drains, then the exporter flushes and the process exits cleanly.
            for _ in 0..<400 where process.isRunning { try await Task.sleep(for: .milliseconds(25)) }
            #expect(!process.isRunning && process.terminationStatus == 0, "serve stops on SIGTERM with tracing on")
            let runs = collector.spans.filter { $0.name == "tributary.run" }
            try #require(runs.count >= 2, "the runs (orders and order-changes) were flushed at shutdown; got \(collector.spans.map(\.name)); log: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
            #expect(collector.contentTypes.withLock { $0 } == ["application/json"])
            let spans = collector.spans
            for run in runs {
                #expect(run.parentSpanId.isEmpty, "a run is the root of its trace")
                #expect(run.service == "tributary-under-test")
                #expect(run.attributes["tributary.connection_id"] == "acme")
                #expect(run.attributes["tributary.integration"] == "demo-shop")
                #expect(run.attributes["tributary.run.status"] == "succeeded")
                let children = spans.filter { $0.traceId == run.traceId && $0.parentSpanId == run.spanId }
                #expect(children.contains { $0.name == "HTTP GET" && $0.attributes["http.response.status_code"] == "200" }, "the provider calls")
                #expect(children.contains { $0.name == "tributary.store.complete_run" }, "the store writes")
            }
            let orders = try #require(runs.first { $0.attributes["tributary.sync"] == "orders" })
            let ordersChildren = spans.filter { $0.traceId == orders.traceId && $0.parentSpanId == orders.spanId }
            #expect(ordersChildren.contains { $0.name == "tributary.store.save_records" && $0.attributes["tributary.model"] == "Order" })
            #expect(ordersChildren.contains { $0.attributes["url.path"]?.hasPrefix("/stores/base/orders") == true })
            #expect(Set(runs.map(\.traceId)).count == runs.count, "each run is a trace of its own")
            let everything = collector.bodies.withLock { $0 }.map { String(decoding: $0, as: UTF8.self) }.joined()
            #expect(!everything.contains("demo-shop-key"), "the connection's API key is in no span")
            #expect(!everything.contains("dev-secret-key-change-me"))


            // The run's own log lines carry its trace id (hex, as OpenTelemetry writes it).
            let lines = try String(contentsOf: log, encoding: .utf8).split(separator: "\n")
            let objects = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            #expect(objects.count == lines.count, "every line on standard error is JSON, the exporter's too: \(lines.prefix(3))")
            let finished = objects.filter { $0["message"] as? String == "run finished" }
            #expect(!finished.isEmpty)
            for line in finished {
                let traceId = line["trace_id"] as? String
                #expect(traceId.map { id in runs.contains { $0.traceId == id } } == true, "run finished names an exported run's trace: \(line)")
            }
            #expect(
                objects.contains { $0["message"] as? String == "run started" && ($0["trace_id"] as? String).map { id in runs.contains { $0.traceId == id } } == true })
            let traced = objects.compactMap { $0["trace_id"] as? String }
            #expect(traced.allSatisfy { id in runs.contains { $0.traceId == id } }, "every trace id in the log is an exported run's")
            #expect(objects.filter { $0["run"] == nil && $0["connection"] == nil && $0["trace_id"] != nil }.isEmpty, "lines outside a run carry no trace id")
        }
    }
}
