import Tracing
import TributaryCore
import TributaryStore

/// The spans the engine starts through the swift-distributed-tracing API: one per run
/// (`tributary.run`), and inside it one per provider request attempt (`HTTP GET`, kind client) and one
/// per store write (`tributary.store.save_records`, …). Spans nest through the task-local
/// `ServiceContext`, so a run's provider calls and writes share its trace id, and a log line written
/// inside a span carries it when the process's logger has the tracer's metadata provider.
///
/// The tracer is handed in (the binary's OpenTelemetry exporter, an in-memory tracer in tests), never
/// read from the process-global `InstrumentationSystem`. ``disabled`` (the default everywhere) starts
/// no span at all: the traced code runs directly, at the cost of one branch.
///
/// Attributes carry what identifies the work — environment, integration, connection id, sync,
/// variant, run id, the request's method, host and path — never credentials, query strings, headers
/// or record contents.
public struct TributaryTracer: Sendable {
    let tracer: (any Tracer)?

    /// Starts no spans.
    public static let disabled = TributaryTracer(nil)

    /// Starts spans with `tracer`; nil starts none.
    public init(_ tracer: (any Tracer)?) {
        self.tracer = tracer
    }

    /// Whether spans are started.
    public var isEnabled: Bool { tracer != nil }

    /// Span names, for dashboards and tests.
    public enum Name {
        /// One attempt of a sync run or of a provider webhook's handler.
        public static let run = "tributary.run"
        /// A store write inside a run: `tributary.store.` + save_records, update_records,
        /// delete_records, checkpoint or complete_run.
        public static func storeWrite(_ operation: String) -> String { "tributary.store.\(operation)" }
        /// One HTTP request to a provider (each retry is a span of its own): `HTTP` + the method, as
        /// OpenTelemetry's HTTP conventions name client spans.
        public static func providerRequest(_ method: String) -> String { "HTTP \(method)" }
    }

    /// Runs `body` inside a span named `name` (a child of the current span, if any), or directly when
    /// tracing is off (`name` is not even built). An error thrown by `body` fails the span with a
    /// message that cannot carry outside text (``failed(_:by:)``); a cancellation does not fail it.
    func span<T>(
        _ name: @autoclosure () -> String, kind: SpanKind = .internal, isolation: isolated (any Actor)? = #isolation,
        _ body: (_ span: (any Span)?) async throws -> T
    ) async rethrows -> T {
        guard let tracer else { return try await body(nil) }
        let span = tracer.startAnySpan(name(), context: ServiceContext.current ?? .topLevel, ofKind: kind)
        defer { span.end() }
        do {
            return try await ServiceContext.withValue(span.context, isolation: isolation) { try await body(span) }
        } catch {
            Self.failed(span, by: error)
            throw error
        }
    }

    /// Marks `span` failed by `error`: a Tributary error by its code, any other by its type — never by
    /// its text, which may quote a URL with a key or a database value. Cancellation is not a failure.
    static func failed(_ span: any Span, by error: any Error) {
        if error is CancellationError { return }
        let kind = (error as? TributaryError)?.code.rawValue ?? String(describing: type(of: error))
        span.attributes["error.type"] = kind
        span.setStatus(SpanStatus(code: .error, message: kind))
    }

    /// Runs `body` as a store write of `operation`: timed in `metrics`, inside a
    /// `tributary.store.<operation>` span that names the model and how many records it carries.
    func storeWrite<T>(
        _ operation: String, model: String? = nil, records: Int? = nil, metrics: TributaryMetrics, isolation: isolated (any Actor)? = #isolation,
        _ body: () async throws -> T
    ) async rethrows -> T {
        try await span(Name.storeWrite(operation), isolation: isolation) { span in
            if let span {
                if let model { span.attributes["tributary.model"] = model }
                if let records { span.attributes["tributary.records.count"] = records }
            }
            return try await metrics.timingStoreWrite(operation, body)
        }
    }

    /// The attributes naming a variant (and so its connection).
    static func annotate(_ span: (any Span)?, variant: VariantRef) {
        guard let span else { return }
        annotate(span, connection: variant.connection)
        span.attributes["tributary.sync"] = variant.syncName
        span.attributes["tributary.variant"] = variant.variant
    }

    /// The attributes naming a connection.
    static func annotate(_ span: (any Span)?, connection: ConnectionRef) {
        guard let span else { return }
        span.attributes["tributary.environment"] = connection.environment
        span.attributes["tributary.integration"] = connection.providerConfigKey
        span.attributes["tributary.connection_id"] = connection.connectionId
    }

    /// Marks a span failed with `message` (a run's failure, a provider's 5xx), cleaned by
    /// ``statusText(_:)``; `message` is built only when there is a span.
    static func fail(_ span: (any Span)?, _ message: @autoclosure () -> String) {
        guard let span else { return }
        span.setStatus(SpanStatus(code: .error, message: statusText(message())))
    }

    /// Text that leaves the process in a span: every URL in it without its query, fragment and user
    /// info (where a key or password would be), and at most 256 characters.
    static func statusText(_ text: String) -> String {
        let cleaned = text.replacing(#/[A-Za-z][A-Za-z0-9+.\-]*://[^\s"'<>]+/#) { match in
            let url = String(match.output)
            return URLText.removingUserInfo(from: String(url.prefix { $0 != "?" && $0 != "#" }))
        }
        return String(cleaned.prefix(256))
    }
}
