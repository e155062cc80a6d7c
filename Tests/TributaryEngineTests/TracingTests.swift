import InMemoryTracing
import Logging
import Synchronization
import Testing
import Tracing
import TributaryCore
@testable import TributaryEngine
import TributaryStore
import TributaryTestSupport

/// Log lines with the metadata a logging metadata provider adds, as a process's handler writes them.
final class TracedLogCapture: Sendable {
    let lines = Mutex<[(message: String, metadata: Logger.Metadata)]>([])

    struct Handler: LogHandler {
        let capture: TracedLogCapture
        var metadata: Logger.Metadata = [:]
        var metadataProvider: Logger.MetadataProvider?
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            var all = metadata
            all.merge(metadataProvider?.get() ?? [:]) { $1 }
            all.merge(event.metadata ?? [:]) { $1 }
            capture.lines.withLock { $0.append((event.message.description, all)) }
        }
    }

    /// A logger whose lines carry the in-memory tracer's trace id as `trace_id`, as `serve`'s carry
    /// OpenTelemetry's.
    var logger: Logger {
        let provider = Logger.MetadataProvider {
            guard let span = ServiceContext.current?.inMemorySpanContext else { return [:] }
            return ["trace_id": .string(span.traceID)]
        }
        return Logger(label: "traced") { _ in Handler(capture: self, metadataProvider: provider) }
    }
}

/// The spans called `name`, in the order they ended.
func named(_ name: String, in spans: [FinishedInMemorySpan]) -> [FinishedInMemorySpan] {
    spans.filter { $0.operationName == name }
}

/// Every attribute of a span as `key=value` text, to look for what must never be in one.
func rendered(_ attributes: SpanAttributes) -> String {
    var text: [String] = []
    attributes.forEach { key, value in text.append("\(key)=\(value)") }
    return text.sorted().joined(separator: " ")
}

@Suite("Tracing: a span per run, provider request and store write")
struct TracingTests {
    /// A run that calls its provider (twice refused with 503, then answered; the integration puts its API
    /// key in the query string) and saves records: one `tributary.run` span with the run's identity and
    /// results, a client span per request attempt and a span per store write as its children, all in
    /// one trace — which the executor's log lines carry too. No attribute holds the key.
    @Test func aRunIsOneTraceFromItsProviderCallsToItsWrites() async throws {
        let server = FakeProviderServer()
        try await server.serve { baseURL in
            let fixture = try await ProviderFixture(baseURL: baseURL)
            defer { Task { try? await fixture.http.shutdown() } }
            let tracer = InMemoryTracer()
            let traced = TributaryTracer(tracer)
            let logs = TracedLogCapture()
            let access = ProviderAccess(
                config: fixture.config, store: fixture.engine.store, cipher: fixture.cipher, http: fixture.http, policy: fixture.policy, tracer: traced,
                logger: logs.logger)
            let seenInFunction = Mutex<InMemorySpanContext?>(nil)
            let function = ClosureSyncFunction(name: "traced") { nango in
                seenInFunction.withLock { $0 = ServiceContext.current?.inMemorySpanContext }
                let answer = try await nango.send(ProviderRequest(.GET, "/flaky"))
                #expect(answer.status == 200)
                // This integration sends its key as a query parameter: the header route refuses it.
                #expect(try await nango.send(ProviderRequest(.GET, "/key-header")).status == 401)
                try await nango.batchSave([["id": "a"], ["id": "b"], ["id": "c"]], model: "Order")
                try await nango.batchDelete([["id": "c"]], model: "Order")
            }
            let executor = SyncExecutor(
                store: fixture.engine.store, functions: try SyncFunctionRegistry([function]), providers: access, logger: logs.logger, tracer: traced)
            let variant = VariantRef(connection: ProviderFixture.connection("key-query"), syncName: "orders", variant: "eu")
            let sync = SyncConfig(name: "orders", function: "traced", models: ["Order"], frequency: try Frequency("1h"))
            let run = try await executor.run(variant, sync: sync)
            #expect(run.status == .succeeded)

            let spans = tracer.finishedSpans
            let runSpan = try #require(spans.first { $0.operationName == TributaryTracer.Name.run })
            #expect(spans.filter { $0.operationName == TributaryTracer.Name.run }.count == 1)
            #expect(runSpan.parentSpanID == nil, "the run is the root of its trace")
            #expect(runSpan.attributes["tributary.run_id"]?.toSpanAttribute() == .int64(run.id))
            #expect(runSpan.attributes["tributary.variant"]?.toSpanAttribute() == "eu")
            #expect(runSpan.attributes["tributary.sync"]?.toSpanAttribute() == "orders")
            #expect(runSpan.attributes["tributary.integration"]?.toSpanAttribute() == "key-query")
            #expect(runSpan.attributes["tributary.connection_id"]?.toSpanAttribute() == "c1")
            #expect(runSpan.attributes["tributary.run.status"]?.toSpanAttribute() == "succeeded")
            #expect(runSpan.attributes["tributary.records.added"]?.toSpanAttribute() == .int64(3))
            #expect(runSpan.attributes["tributary.records.deleted"]?.toSpanAttribute() == .int64(1))
            #expect(runSpan.status == nil)
            #expect(seenInFunction.withLock { $0 }?.spanID == runSpan.spanID, "the function runs inside the run's span")

            // Three attempts at /flaky, each a client span under the run; the retries say so.
            let all = named("HTTP GET", in: spans)
            #expect(all.count == 4)
            let refused = try #require(all.last)
            #expect(refused.attributes["http.response.status_code"]?.toSpanAttribute() == .int64(401))
            #expect(refused.status?.code == .error, "a 4xx fails a client span")
            let attempts = Array(all.prefix(3))
            #expect(attempts.allSatisfy { $0.kind == .client && $0.traceID == runSpan.traceID && $0.parentSpanID == runSpan.spanID })
            #expect(attempts.map { $0.attributes["http.response.status_code"]?.toSpanAttribute() } == [.int64(503), .int64(503), .int64(200)])
            #expect(attempts.map { $0.attributes["http.request.resend_count"]?.toSpanAttribute() } == [nil, .int64(1), .int64(2)])
            #expect(attempts.map { $0.status?.code } == [.error, .error, nil], "a 5xx fails its span")
            #expect(attempts.allSatisfy { $0.attributes["url.path"]?.toSpanAttribute() == "/flaky" })
            for span in spans {
                #expect(!rendered(span.attributes).contains(FakeProviderServer.apiKey), "no span holds the API key: \(span.operationName)")
                #expect(!rendered(span.attributes).contains("api_key"), "no span holds the query: \(span.operationName)")
            }

            // The store writes, in order, each a child of the run.
            let writes = spans.filter { $0.operationName.hasPrefix("tributary.store.") }
            #expect(writes.map(\.operationName) == ["tributary.store.save_records", "tributary.store.delete_records", "tributary.store.complete_run"])
            #expect(writes.allSatisfy { $0.traceID == runSpan.traceID && $0.parentSpanID == runSpan.spanID })
            #expect(writes.first?.attributes["tributary.records.count"]?.toSpanAttribute() == .int64(3))
            #expect(writes.first?.attributes["tributary.model"]?.toSpanAttribute() == "Order")

            // The executor's and provider access's log lines inside the run carry its trace id.
            let lines = logs.lines.withLock { $0 }
            let started = try #require(lines.first { $0.message == "run started" })
            let retrying = try #require(lines.first { $0.message.hasPrefix("provider answered 503") })
            let finished = try #require(lines.first { $0.message == "run finished" })
            for line in [started, retrying, finished] {
                #expect(line.metadata["trace_id"] == .string(runSpan.traceID), "\(line.message)")
            }
        }
    }

    /// A failed run fails its span with the run's error — its URLs without query or user info, so a
    /// key a function's error quotes stays home; a run after it starts a trace of its own.
    @Test func aFailedRunFailsItsSpanWithoutTheSecretsItsErrorQuotes() async throws {
        struct Refused: Error, CustomStringConvertible {
            var description: String { "refused at https://user:pw@api.example.com/teapot?api_key=SECRET-KEY-1 (HTTP 418)" }
        }
        let tracer = InMemoryTracer()
        let fixture = try await EngineFixture([])
        let function = ClosureSyncFunction(name: "broken") { nango in
            try await nango.batchSave([["id": "a"]], model: "Order")
            throw Refused()
        }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let executor = SyncExecutor(store: fixture.store, functions: try SyncFunctionRegistry([function]), logger: logger, tracer: TributaryTracer(tracer))
        let sync = SyncConfig(name: "orders", function: "broken", models: ["Order"], frequency: try Frequency("1h"))
        let failed = try await executor.run(base, sync: sync)
        #expect(failed.status == .failed && failed.error?.contains("SECRET-KEY-1") == true, "the run's own error is the function's, as before")
        #expect(try await executor.run(base, sync: sync).status == .failed)
        let runs = named(TributaryTracer.Name.run, in: tracer.finishedSpans)
        #expect(runs.count == 2)
        for run in runs {
            #expect(run.status?.code == .error)
            let message = run.status?.message ?? ""
            #expect(message.contains("https://api.example.com/teapot") && message.contains("(HTTP 418)"), "\(message)")
            #expect(!message.contains("SECRET-KEY-1") && !message.contains("pw"), "\(message)")
            #expect(run.attributes["tributary.run.status"]?.toSpanAttribute() == "failed")
        }
        #expect(Set(runs.map(\.traceID)).count == 2, "each run is a trace of its own")
        for span in tracer.finishedSpans {
            #expect(!"\(span.errors.map(\.error)) \(span.events) \(rendered(span.attributes))".contains("SECRET-KEY-1"), "\(span.operationName)")
        }
    }

    /// A store write that fails is marked by its error's code or type — not its text — and a provider's
    /// 4xx fails its client span too.
    @Test func failuresAreNamedByCodeNotByText() async throws {
        let tracer = InMemoryTracer()
        let fixture = try await EngineFixture([])
        let function = ClosureSyncFunction(name: "bad-record") { nango in
            try await nango.batchSave([["id": "a"]], model: "Order")
            try await nango.batchSave([["id": "b"]], model: "NotDeclared")
        }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let executor = SyncExecutor(store: fixture.store, functions: try SyncFunctionRegistry([function]), logger: logger, tracer: TributaryTracer(tracer))
        let sync = SyncConfig(name: "orders", function: "bad-record", models: ["Order"], frequency: try Frequency("1h"))
        #expect(try await executor.run(base, sync: sync).status == .failed)
        let run = try #require(named(TributaryTracer.Name.run, in: tracer.finishedSpans).first)
        #expect(run.status?.message?.contains("NotDeclared") == true, "the run's message says what failed")
        #expect(named("tributary.store.save_records", in: tracer.finishedSpans).count == 1, "the refused batch never reached the store")

        // A span whose body throws: the code, not the message.
        let traced = TributaryTracer(tracer)
        await #expect(throws: TributaryError.self) {
            try await traced.span("probe") { _ in throw TributaryError(.providerError, "answer quoted api_key=SECRET-KEY-2") }
        }
        let probe = try #require(named("probe", in: tracer.finishedSpans).first)
        #expect(probe.status == SpanStatus(code: .error, message: "provider_error"))
        #expect(probe.attributes["error.type"]?.toSpanAttribute() == "provider_error")
        #expect(!"\(probe.errors.map(\.error)) \(probe.events)".contains("SECRET-KEY-2"))
        // Cancellation is not a failure.
        await #expect(throws: CancellationError.self) { try await traced.span("stopped") { _ in throw CancellationError() } }
        #expect(named("stopped", in: tracer.finishedSpans).first?.status == nil)
    }

    /// Off (the default): no span exists, the function sees no span context, and nothing changes.
    @Test func offStartsNoSpan() async throws {
        let seen = Mutex<[Bool]>([])
        let function = ClosureSyncFunction(name: "plain") { nango in
            seen.withLock { $0.append(ServiceContext.current != nil) }
            try await nango.batchSave([["id": "a"]], model: "Order")
        }
        let fixture = try await EngineFixture([function])
        #expect(!fixture.executor.tracer.isEnabled)
        let sync = SyncConfig(name: "orders", function: "plain", models: ["Order"], frequency: try Frequency("1h"))
        #expect(try await fixture.executor.run(base, sync: sync).results == ["Order": ModelResult(added: 1)])
        #expect(seen.withLock { $0 } == [false])
    }
}
