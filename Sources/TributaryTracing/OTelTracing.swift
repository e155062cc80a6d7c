import Logging
import OTel
import Tracing
import TributaryCore
import TributaryEngine

/// OpenTelemetry export of the engine's spans through swift-otel: OTLP/HTTP (protobuf or JSON) to a
/// collector, batched in the background. The `tributary` binary passes ``backend`` to
/// `TributaryCLI.main`; a user package adds the `TributaryTracing` product and does the same.
///
/// swift-otel is handed only ``TracingSettings`` — resolved and checked by Tributary from the
/// `tracing:` section and the `OTEL_*` variables — and an empty environment: a variable it cannot
/// honour (a gRPC protocol in this OTLP/HTTP-only build, an unsupported propagator or sampler) would
/// stop the process inside it, and it logs the values it reads (a collector's key among them).
/// Only tracing is set up — swift-otel's metrics and logs stay off — and its diagnostics go to
/// `serve`'s logger at warning level.
///
/// swift-otel registers its tracer with the process-wide `InstrumentationSystem` (its public API
/// without environment reading does so), so this runs once per process: `serve` calls it once.
public enum OTelTracing {
    @Sendable public static func backend(_ settings: TracingSettings, diagnostics: Logger) throws -> TracingBackend {
        let service = try OTel.bootstrap(configuration: configuration(settings, diagnostics: diagnostics), environment: [:])
        return TracingBackend(tracer: InstrumentationSystem.tracer, service: service, metadataProvider: OTel.makeLoggingMetadataProvider())
    }

    /// swift-otel's configuration for `settings`: traces only, to the OTLP/HTTP endpoint.
    static func configuration(_ settings: TracingSettings, diagnostics: Logger) -> OTel.Configuration {
        var configuration = OTel.Configuration.default
        configuration.serviceName = settings.serviceName
        configuration.diagnosticLogger = .custom(diagnostics)
        configuration.diagnosticLogLevel = .warning
        configuration.propagators = [.traceContext]
        configuration.metrics.enabled = false
        configuration.logs.enabled = false
        configuration.traces.enabled = true
        configuration.traces.exporter = .otlp
        // Parent-based: a run's spans are kept or dropped together. The ratio was checked to be in 0…1.
        configuration.traces.sampler = .parentBasedTraceIDRatio(ratio: settings.sampleRatio) ?? .parentBasedAlwaysOn
        configuration.traces.batchSpanProcessor.scheduleDelay = .milliseconds(settings.scheduleDelayMilliseconds)
        configuration.traces.batchSpanProcessor.exportTimeout = .milliseconds(settings.exportTimeoutMilliseconds)
        configuration.traces.batchSpanProcessor.maxQueueSize = settings.maxQueueSize
        configuration.traces.batchSpanProcessor.maxExportBatchSize = settings.maxExportBatchSize
        var exporter = configuration.traces.otlpExporter
        exporter.endpoint = settings.endpoint
        exporter.protocol = settings.wireProtocol == .httpJSON ? .httpJSON : .httpProtobuf
        exporter.headers = settings.headers.map { ($0.name, $0.value.value) }
        exporter.timeout = .milliseconds(settings.timeoutMilliseconds)
        exporter.certificateFilePath = settings.certificatePath
        exporter.clientKeyFilePath = settings.clientKeyPath
        exporter.clientCertificateFilePath = settings.clientCertificatePath
        configuration.traces.otlpExporter = exporter
        return configuration
    }
}
