import Logging
import ServiceLifecycle
import Tracing
import TributaryCore

/// What a binary's tracing exporter hands `tributary serve` when `tracing:` (or `OTEL_TRACES_EXPORTER`)
/// turns tracing on: the tracer the engine starts its spans with, the service that batches and
/// exports them (run first in the process's service group, so it stops last and flushes the spans of
/// the runs the worker drained), and the logging metadata provider that puts the current span's
/// `trace_id` and `span_id` on every log line written inside it.
///
/// The stock `tributary` binary gets one from the `TributaryTracing` module (OpenTelemetry, OTLP/HTTP);
/// a user package passes `tracing: OTelTracing.backend` to `TributaryCLI.main` to get the same.
public struct TracingBackend: Sendable {
    public var tracer: any Tracer
    public var service: any Service
    public var metadataProvider: Logger.MetadataProvider?

    public init(tracer: any Tracer, service: any Service, metadataProvider: Logger.MetadataProvider?) {
        self.tracer = tracer
        self.service = service
        self.metadataProvider = metadataProvider
    }
}

/// Builds a ``TracingBackend`` from the resolved settings (the `tracing:` section with the `OTEL_*`
/// variables applied, checked); its own diagnostics (a collector that cannot be reached) go to
/// `diagnostics`. Throws when the settings cannot be used.
public typealias TracingBootstrap = @Sendable (_ settings: TracingSettings, _ diagnostics: Logger) throws -> TracingBackend
