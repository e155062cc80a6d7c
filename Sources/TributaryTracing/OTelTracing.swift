import Logging
import OTel
import Tracing
import TributaryCore
import TributaryEngine

/// OpenTelemetry export of the engine's spans through swift-otel: OTLP/HTTP (protobuf or JSON) to a
/// collector, batched in the background. The `tributary` binary passes ``backend`` to
/// `TributaryCLI.main`; a user package adds the `TributaryTracing` product and does the same.
///
/// Only tracing is set up here — swift-otel's metrics and logs stay off (metrics are Prometheus'
/// `GET /metrics`, logs go to standard error) — and nothing is bootstrapped process-wide: the tracer
/// is handed to the engine, and the logging metadata provider to `serve`'s logger.
public enum OTelTracing {
    /// Builds the exporter from `settings`. The standard `OTEL_*` environment variables
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`,
    /// `OTEL_TRACES_SAMPLER`, `OTEL_BSP_SCHEDULE_DELAY`, …) override them, as OpenTelemetry specifies.
    @Sendable public static func backend(_ settings: TracingConfig) throws -> TracingBackend {
        let backend = try OTel.makeTracingBackend(configuration: configuration(settings))
        return TracingBackend(tracer: backend.factory, service: backend.service, metadataProvider: OTel.makeLoggingMetadataProvider())
    }

    /// swift-otel's configuration for `settings`: traces only, to the OTLP/HTTP endpoint.
    static func configuration(_ settings: TracingConfig) -> OTel.Configuration {
        var configuration = OTel.Configuration.default
        configuration.serviceName = settings.serviceName
        configuration.metrics.enabled = false
        configuration.logs.enabled = false
        configuration.traces.enabled = true
        configuration.traces.exporter = .otlp
        // Parent-based: a run's spans are all kept or all dropped.
        configuration.traces.sampler = .parentBasedTraceIDRatio(ratio: settings.sampleRatio) ?? .parentBasedAlwaysOn
        configuration.traces.otlpExporter.protocol = settings.wireProtocol == .httpJSON ? .httpJSON : .httpProtobuf
        if let endpoint = settings.endpoint { configuration.traces.otlpExporter.endpoint = endpoint }
        return configuration
    }
}
