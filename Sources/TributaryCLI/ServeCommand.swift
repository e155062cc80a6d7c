#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ArgumentParser
import Logging
import ServiceLifecycle
import TributaryCore
import TributaryEngine
import TributaryServer

/// `tributary serve`: the HTTP API, the scheduler and a worker — all in one process, or split by
/// `--role` into API processes and worker processes sharing one database.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Serve the Nango-compatible HTTP API and run the scheduled syncs.")

    /// What this process does.
    enum Role: String, ExpressibleByArgument, CaseIterable, Sendable {
        /// The HTTP API only: triggers are queued in the store for the workers.
        case api
        /// The scheduler and a worker running queued runs; no HTTP.
        case worker
        /// Both (the default).
        case all
    }

    @OptionGroup var options: ConfigOptions

    @Option(name: .long, help: "api: the HTTP API only (runs are queued for workers); worker: the scheduler and the runs, no HTTP; all: both.")
    var role: Role = .all

    @Option(name: .long, help: "Listen on this port (default: server.port from the configuration, 3003).")
    var port: Int?

    @Option(name: .long, help: "Listen on this address (default: server.host from the configuration, 127.0.0.1).")
    var host: String?

    @Flag(name: .long, help: "Encrypt credentials with a fixed, public development key when TRIBUTARY_ENCRYPTION_KEY is not set. Never in production.")
    var insecureDevKey = false

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    /// How log lines are written to standard error.
    enum LogFormat: String, ExpressibleByArgument, CaseIterable {
        /// swift-log's line for people.
        case text
        /// One JSON object a line for log shippers (``JSONLogHandler``).
        case json
    }

    @Option(name: .long, help: "Log lines as text (for people) or json (one object a line, for machines).")
    var logFormat: LogFormat = .text

    func run() async throws {
        let context = CLIContext.current
        let output = context.output
        var (config, usesDemo) = try options.load(output: output)
        if let port { config.server.port = port }
        if let host { config.server.host = host }
        let tracing = try Self.tracing(
            config.tracing, environment: ProcessInfo.processInfo.environment, bootstrap: context.tracing, diagnostics: makeLogger(metadataProvider: nil))
        let logger = makeLogger(metadataProvider: tracing?.backend.metadataProvider)

        for integration in config.integrations where integration.webhooks?.unsigned == true {
            logger.warning(
                "integration accepts unsigned provider webhooks (webhooks.unsigned: true): anyone who can reach its webhook URL can feed records to its syncs",
                metadata: ["integration": "\(integration.providerConfigKey)"])
        }
        if config.metrics.enabled, config.metrics.port == nil, config.metrics.token == nil, role != .worker {
            logger.notice(
                "GET /metrics is open on the API port: set metrics.token (or metrics.port) before exposing it, or metrics.enabled: false")
        }
        if config.server.publicURL == nil, config.integrations.contains(where: \.isConnectable) {
            logger.notice("Connect is off: set server.public_url to let end users connect their accounts (POST /connect/sessions answers connect_not_configured)")
        }
        for environment in config.environments where environment.webhooks.signsWithSecretKey {
            logger.warning(
                "environment signs its webhooks with its secret key (webhooks.sign_with_secret_key: true): every receiver can check guesses of the API key; prefer a separate signing_key",
                metadata: ["environment": "\(environment.name)"])
        }
        let cipher: CredentialCipher
        if let fromEnvironment = try EncryptionKey.cipherFromEnvironment() {
            cipher = fromEnvironment
        } else if insecureDevKey || usesDemo {
            logger.warning("TRIBUTARY_ENCRYPTION_KEY is not set: credentials are encrypted with a public development key. Never do this in production.")
            cipher = .insecureDevelopment
        } else {
            throw CLIError(
                "TRIBUTARY_ENCRYPTION_KEY is not set. It encrypts connection credentials at rest: set it to 32 random bytes, base64-encoded (`openssl rand -base64 32`). For local development only, pass --insecure-dev-key.")
        }

        let selection = try await StoreSelection.open(options.database, config: config.database, logger: logger)
        defer { selection.close() }
        let process = try ProcessServices(
            role: role, config: config, store: selection.store, cipher: cipher, functions: context.functions,
            tracer: TributaryTracer(tracing?.backend.tracer), logger: logger)
        if role != .worker {
            output.line(
                "Tributary \(role == .all ? "API and worker" : "API") on http://\(config.server.host):\(config.server.port) — database \(selection.location), environments: \(config.environments.map(\.name).joined(separator: ", "))")
        } else {
            output.line("Tributary worker — database \(selection.location), up to \(config.scheduler.maxConcurrentRuns) runs at once")
        }
        // The span exporter and the PostgreSQL pool start first and, as the group stops services in
        // reverse order, stop last: the exporter flushes the spans of the runs the worker drained.
        var groupConfiguration = ServiceGroupConfiguration(
            services: (tracing.map { [$0.backend.service] } ?? []) + (selection.service.map { [$0] } ?? []) + process.services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // A shutdown never hangs (a service stuck on an unreachable database, say): past its budget the
        // group cancels every service, and past a few more seconds it ends the process.
        // With tracing, the exporter's last export (bounded by its export timeout) comes after the drain.
        groupConfiguration.maximumGracefulShutdownDuration =
            process.shutdownBudget + (tracing.map { .milliseconds($0.settings.exportTimeoutMilliseconds) + .seconds(5) } ?? .zero)
        groupConfiguration.maximumCancellationDuration = .seconds(10)
        let group = ServiceGroup(configuration: groupConfiguration)
        if role == .worker {
            try await group.run()
        } else {
            try await group.runExplainingPorts([(config.server.port, "--port or server.port")])
        }
    }

    /// The process's logger: `--log-format` and `--log-level`, with `metadataProvider`'s metadata
    /// (the current span's ids) on every line.
    func makeLogger(metadataProvider provider: Logger.MetadataProvider?) -> Logger {
        var logger: Logger
        switch logFormat {
        case .json: logger = Logger(label: "tributary", factory: { JSONLogHandler(label: $0, metadataProvider: provider) })
        case .text: logger = provider.map { Logger(label: "tributary", metadataProvider: $0) } ?? Logger(label: "tributary")
        }
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        return logger
    }

    /// The span exporter and its settings when tracing is on (``TracingConfig/isOn(environment:)``). A
    /// binary without an exporter, or settings that cannot be used, refuse to start rather than
    /// silently export nothing.
    static func tracing(
        _ config: TracingConfig, environment: [String: String], bootstrap: TracingBootstrap?, diagnostics: Logger
    ) throws -> (backend: TracingBackend, settings: TracingSettings)? {
        guard config.isOn(environment: environment) else { return nil }
        guard let bootstrap else {
            throw CLIError(
                "Tracing is on (tracing.enabled or OTEL_TRACES_EXPORTER=otlp) but this binary has no span exporter: pass `tracing: OTelTracing.backend` (product TributaryTracing) to TributaryCLI.main, or turn tracing off.")
        }
        do {
            let settings = try TracingSettings.resolve(config, environment: environment)
            return (try bootstrap(settings, diagnostics), settings)
        } catch {
            throw CLIError("Cannot start tracing: \(error)")
        }
    }
}
